// @ts-check
/**
 * Where a burst of chat requests spends its time inside the gateway: preloaded into the gateway
 * process, it records for every `POST …/chat/stream` when its request was read (the server's
 * `request` event), when a model request was made (`http.request`, given to the oldest request
 * without one: the gateway starts turns in arrival order), when the response head and the first
 * body bytes were written. Rows go to /tmp/burst-timeline.json once a second (another file:
 * `BENCH_GATEWAY_ENV=BURST_TIMELINE_FILE=/path`). Plain JavaScript, because the compiled gateway
 * runs without a TypeScript loader; nothing in src/ knows of it.
 *
 *   BENCH_GATEWAY_NODE_ARGS="--import ./bench/burst-timeline.mjs" \
 *     npx tsx bench/ttft.ts --modes relay,gateway --concurrency 200 --rounds 3
 *   npx tsx bench/burst-timeline-report.ts [/tmp/burst-timeline.json]
 */
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setInterval } from 'node:timers';

const file = process.env.BURST_TIMELINE_FILE ?? '/tmp/burst-timeline.json';
/** @type {{ read: number, model: number, head: number, first: number }[]} */
const rows = [];
let firstWithoutModel = 0;
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && req.method === 'POST' && req.url?.endsWith('/chat/stream')) {
    const row = { read: performance.now(), model: 0, head: 0, first: 0 };
    rows.push(row);
    const writeHead = res.writeHead;
    res.writeHead = function (...args) {
      row.head ||= performance.now();
      return writeHead.apply(this, args);
    };
    const write = res.write;
    res.write = function (...args) {
      row.first ||= performance.now();
      return write.apply(this, args);
    };
  }
  return emit.call(this, event, req, res);
};
const request = http.request;
http.request = function (...args) {
  while (firstWithoutModel < rows.length && rows[firstWithoutModel].model) firstWithoutModel++;
  if (firstWithoutModel < rows.length) rows[firstWithoutModel].model = performance.now();
  return request.apply(this, args);
};
setInterval(() => writeFileSync(file, JSON.stringify(rows)), 1000).unref();
