// @ts-check
/**
 * Event-loop delay inside a process the bench does not own the code of (the compiled gateway),
 * without touching it: preloaded with `node --import ./bench/eld-probe.mjs dist/node/main.js`.
 * Plain JavaScript, because the compiled gateway runs without a TypeScript loader.
 *
 * It runs `perf_hooks.monitorEventLoopDelay({ resolution: 10 })` and answers one-line commands
 * on its stdin:
 *   reset   starts a new window (histogram and event-loop utilisation)
 *   read    prints the window so far as one stdout line
 *           {"eventLoopDelay":{"p50":…,"p90":…,"p99":…,"max":…,"mean":…,"count":…,"utilization":…,"windowMs":…}}
 *           (milliseconds; utilization = share of the window the loop was busy, 0-1)
 *   memory  prints {"memory":{"rss":…,"heapTotal":…,"heapUsed":…,"external":…,"arrayBuffers":…}}
 *           (MB, process.memoryUsage(); no GC is forced)
 * Anything else on stdin is ignored; the probe never keeps the process alive (stdin is unref'd).
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import process from 'node:process';
import { createInterface } from 'node:readline';

const histogram = monitorEventLoopDelay({ resolution: 10 });
histogram.enable();
let since = performance.now();
let eluStart = performance.eventLoopUtilization();

/** @param {number} ns */
const ms = (ns) => Math.round(ns / 1e4) / 100;

function read() {
  const elu = performance.eventLoopUtilization(eluStart);
  return {
    p50: ms(histogram.percentile(50)),
    p90: ms(histogram.percentile(90)),
    p99: ms(histogram.percentile(99)),
    max: ms(histogram.max),
    mean: ms(histogram.mean),
    count: histogram.count,
    utilization: Math.round(elu.utilization * 1000) / 1000,
    windowMs: Math.round(performance.now() - since),
  };
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = line.trim();
  if (command === 'reset') {
    histogram.reset();
    since = performance.now();
    eluStart = performance.eventLoopUtilization();
  } else if (command === 'read') {
    process.stdout.write(`${JSON.stringify({ eventLoopDelay: read() })}\n`);
  } else if (command === 'memory') {
    const mb = (/** @type {number} */ bytes) => Math.round(bytes / 10485.76) / 100;
    const m = process.memoryUsage();
    const memory = { rss: mb(m.rss), heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers) };
    process.stdout.write(`${JSON.stringify({ memory })}\n`);
  }
});
lines.on('error', () => {});
// The gateway decides when it exits, not its stdin.
if (typeof (/** @type {{ unref?: () => void }} */ (process.stdin)).unref === 'function') process.stdin.unref();
