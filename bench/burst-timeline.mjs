// @ts-check
/**
 * Where a burst of chat requests spends its time inside the gateway: preloaded into the gateway
 * process, it records for every `POST …/chat/stream` when its request was read (the server's
 * `request` event), when a model request was made (`http.request`, given to the oldest request
 * without one: the gateway starts turns in arrival order), when the response head and the first
 * body bytes were written. Rows go to /tmp/burst-timeline.json once a second (another file:
 * `BENCH_GATEWAY_ENV=BURST_TIMELINE_FILE=/path`). Nothing in src/ knows of it.
 *
 *   BENCH_GATEWAY_NODE_ARGS="--import ./bench/burst-timeline.mjs" \
 *     npx tsx bench/ttft.ts --modes relay,gateway --concurrency 200 --rounds 3
 *   node bench/burst-timeline.mjs [/tmp/burst-timeline.json]   # per burst: p50 / max of each step
 *
 * Run as a script it reads such a file and prints, for each burst (requests read within 150 ms
 * of each other) of more than one request, the times from the burst's first request.
 */
import console from 'node:console';
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { setInterval } from 'node:timers';
import { pathToFileURL } from 'node:url';

const isScript = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;

if (isScript) report(process.argv[2] ?? '/tmp/burst-timeline.json');
else record(process.env.BURST_TIMELINE_FILE ?? '/tmp/burst-timeline.json');

function record(file) {
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
}

function report(file) {
  const rows = JSON.parse(readFileSync(file, 'utf8'));
  const bursts = [];
  for (const row of rows) {
    const last = bursts.at(-1);
    if (last && row.read - last.at(-1).read <= 150) last.push(row);
    else bursts.push([row]);
  }
  const pct = (values, p) => {
    const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
  };
  const f = (v) => v.toFixed(1).padStart(6);
  console.log('burst    n   read p50/max   model p50/max   read->model p50/p90   model->first p50/p90   first p50/p99 (ms from the burst\'s first request)');
  bursts.forEach((burst, i) => {
    if (burst.length < 2) return;
    const t0 = burst[0].read;
    const at = (k) => burst.map((r) => (r[k] ? r[k] - t0 : NaN));
    const gap = (a, b) => burst.map((r) => (r[a] && r[b] ? r[b] - r[a] : NaN));
    console.log(
      `${String(i).padStart(5)} ${String(burst.length).padStart(4)} ${f(pct(at('read'), 0.5))}/${f(pct(at('read'), 1))} ${f(pct(at('model'), 0.5))}/${f(pct(at('model'), 1))}` +
        `   ${f(pct(gap('read', 'model'), 0.5))}/${f(pct(gap('read', 'model'), 0.9))}        ${f(pct(gap('model', 'first'), 0.5))}/${f(pct(gap('model', 'first'), 0.9))}` +
        `          ${f(pct(at('first'), 0.5))}/${f(pct(at('first'), 0.99))}`,
    );
  });
}
