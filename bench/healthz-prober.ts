/**
 * Polls a URL back to back (one request at a time, a pause between) from its own process, so
 * the latency it sees is the server's and not the benchmark client's own load.
 *
 *   node --import tsx bench/healthz-prober.ts <url> <intervalMs>
 *
 * Runs until stdin closes or SIGTERM, then prints one JSON line with every latency (ms).
 */
import http from 'node:http';

const [url, interval] = [process.argv[2]!, Number(process.argv[3] ?? 20)];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const latencies: number[] = [];
let running = true;

function probe(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - started));
    });
    req.on('error', () => resolve(Number.NaN));
  });
}

const stop = () => {
  running = false;
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();

while (running) {
  latencies.push(await probe());
  await new Promise((r) => setTimeout(r, interval));
}
process.stdout.write(`${JSON.stringify({ latencies })}\n`);
process.exit(0);
