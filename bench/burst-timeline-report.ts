/**
 * Reads what bench/burst-timeline.mjs recorded in a gateway and prints, for each burst (requests
 * read within 150 ms of each other) of more than one request, milliseconds from the burst's first
 * request: when requests were read, when their model requests left, and their first writes;
 * and the gaps read -> model request -> first write.
 *
 *   npx tsx bench/burst-timeline-report.ts [/tmp/burst-timeline.json]
 */
import { readFileSync } from 'node:fs';
import { summarize } from './stats.js';

interface Row {
  read: number;
  model: number;
  head: number;
  first: number;
}

const rows = JSON.parse(readFileSync(process.argv[2] ?? '/tmp/burst-timeline.json', 'utf8')) as Row[];
const bursts: Row[][] = [];
for (const row of rows) {
  const last = bursts.at(-1);
  if (last && row.read - last.at(-1)!.read <= 150) last.push(row);
  else bursts.push([row]);
}

const f = (v: number) => v.toFixed(1).padStart(6);
console.log("burst    n   read p50/max   model p50/max   read->model p50/p90   model->first p50/p90   first p50/p99 (ms from the burst's first request)");
bursts.forEach((burst, i) => {
  if (burst.length < 2) return;
  const t0 = burst[0]!.read;
  // A step not reached (a request refused before its model request) is left out.
  const at = (k: keyof Row) => summarize(burst.filter((r) => r[k]).map((r) => r[k] - t0));
  const gap = (a: keyof Row, b: keyof Row) => summarize(burst.filter((r) => r[a] && r[b]).map((r) => r[b] - r[a]));
  const read = at('read');
  const model = at('model');
  const first = at('first');
  const toModel = gap('read', 'model');
  const toFirst = gap('model', 'first');
  console.log(
    `${String(i).padStart(5)} ${String(burst.length).padStart(4)} ${f(read.p50)}/${f(read.max)} ${f(model.p50)}/${f(model.max)}` +
      `   ${f(toModel.p50)}/${f(toModel.p90)}        ${f(toFirst.p50)}/${f(toFirst.p90)}          ${f(first.p50)}/${f(first.p99)}`,
  );
});
