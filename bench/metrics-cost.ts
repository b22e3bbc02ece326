/**
 * What Prometheus metrics cost in chat turns per second. Three measures:
 *
 * 1. In-process: the metrics work of one SSE turn (the HTTP request counter, a turn's start,
 *    first token and end, the limiter's refusal counting), timed in a loop: the direct cost,
 *    free of machine noise, to set against the CPU a whole turn takes. Also one scrape's render.
 * 2. Alternating (the issue's method): the compiled gateway entry (`dist/node/main.js`, as
 *    `npm start` runs it) on the local development model with no token delay, so the gateway is
 *    CPU-bound on its own work, started once with METRICS_ENABLED=true and once with false per
 *    round, the order alternating (on/off, off/on, ...). Each run: `--concurrency` keep-alive
 *    clients loop new SSE chat turns for `--seconds` after a warm-up; with metrics on, /metrics
 *    is scraped every 5 s as a Prometheus server would (that cost counts too; with metrics off
 *    the same GET is answered 404). Turns/s, and the gateway's CPU per turn from /proc.
 * 3. Paired (`--paired`): both gateways at once, each with its own clients, so whatever else
 *    the machine runs slows both alike (on a shared machine run 2's turns/s swing by 2-4x); which
 *    starts first alternates by round. `--paired --control` runs both with metrics off: the
 *    difference two identical gateways show, i.e. the noise floor of the paired figure. `--pin`
 *    puts both gateways on core 0 and the clients on core 1 (Linux `taskset`).
 *
 *   npm run build && npx tsx bench/metrics-cost.ts [--seconds 15] [--warmup 3] [--concurrency 16] [--rounds 3] [--out FILE] [--paired [--control] [--pin]]
 *
 * Results: stdout and bench/results/metrics-cost.json. The issue's bound: metrics cost <= 3 %.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PromMetrics } from '../src/node/prom-metrics.js';
import { MemoryRateLimiter } from '../src/ratelimit/memory-rate-limiter.js';
import { countingRefusals } from '../src/ratelimit/counting-refusals.js';
import type { RateLimiter } from '../src/ratelimit/rate-limiter.js';
import { readProcStats, startGatewayProcess, stopAllChildren, type ChildHandle } from './processes.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npm run build && npx tsx bench/metrics-cost.ts [--seconds 15] [--warmup 3] [--concurrency 16] [--rounds 3] [--out FILE] [--paired [--control] [--pin]]';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const values = scriptArgs(USAGE, { seconds: 15, warmup: 3, concurrency: 16, rounds: 3, out: 'bench/results/metrics-cost.json', paired: false, control: false, pin: false });
const { seconds: SECONDS, warmup: WARMUP_SECONDS, concurrency: CONCURRENCY, rounds: ROUNDS } = values;
const SCRAPE_EVERY_MS = 5_000;

interface Run {
  metrics: boolean;
  turns: number;
  failed: number;
  turnsPerSecond: number;
  /** Gateway CPU (user + system) per completed turn, from /proc. */
  cpuUsPerTurn: number;
  scrapes: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
const BODY = JSON.stringify({ message: 'How much do metrics cost per turn?' });

/** One SSE chat turn in a new conversation; resolves true when the stream ended with the done event. */
function turn(url: URL): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: '/api/v2/ai/chat/stream', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) } },
      (res) => {
        let tail = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (tail = (tail + chunk).slice(-200)));
        res.on('end', () => resolve(res.statusCode === 200 && tail.includes('"done":true')));
        res.on('error', () => resolve(false));
      },
    );
    req.on('error', () => resolve(false));
    req.end(BODY);
  });
}

/** GET /metrics: a scrape where metrics are on, a 404 where they are off. */
async function scrape(url: URL, metrics: boolean): Promise<void> {
  const res = await fetch(new URL('/metrics', url));
  if (res.status !== (metrics ? 200 : 404)) throw new Error(`/metrics answered ${res.status}`);
  await res.text();
}

/** Clients loop turns until `until`; counts what completed. */
async function load(url: URL, until: number): Promise<{ ok: number; failed: number }> {
  let ok = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        if (await turn(url)) ok++;
        else failed++;
      }
    }),
  );
  return { ok, failed };
}

interface Gateway {
  metrics: boolean;
  child: ChildHandle;
  url: URL;
  dataDir: string;
}

/** `metrics` is the side it stands for; `enabled` what it runs with (both off in a --control run). */
async function startGateway(metrics: boolean, enabled = metrics): Promise<Gateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'metrics-cost-'));
  const { child, url } = await startGatewayProcess(ROOT, '', dataDir, [], {
    // The local model, not the stand-in: no upstream process to share the CPU with.
    OPENAI_BASE_URL: '',
    OPENAI_API_KEY: '',
    DEFAULT_MODEL: 'local',
    LOCAL_MODEL_TOKEN_DELAY_MS: '0',
    METRICS_ENABLED: String(enabled),
  });
  return { metrics, child, url: new URL(url), dataDir };
}

async function stopGateway(g: Gateway): Promise<void> {
  await g.child.stop();
  rmSync(g.dataDir, { recursive: true, force: true });
}

/** Warm-up, then the measured window (scraping when metrics are on). */
async function drive(g: Gateway): Promise<Run> {
  await load(g.url, performance.now() + WARMUP_SECONDS * 1000);
  const cpuBefore = readProcStats(g.child.pid)?.cpuMs ?? NaN;
  const started = performance.now();
  let scrapes = 0;
  // Both sides get the same GET every 5 s, so both serve one kind of response besides SSE (as
  // any deployment does: health checks). A gateway that serves nothing else runs monomorphic
  // code that the first other response makes slower for good, which measured 2-4 % here.
  const enabled = g.metrics && !values.control;
  const scraper = setInterval(() => {
    if (enabled) scrapes++;
    scrape(g.url, enabled).catch((err: unknown) => console.error(`scrape failed: ${String(err)}`));
  }, SCRAPE_EVERY_MS);
  const { ok, failed } = await load(g.url, started + SECONDS * 1000);
  clearInterval(scraper);
  const elapsed = (performance.now() - started) / 1000;
  const cpuMs = (readProcStats(g.child.pid)?.cpuMs ?? NaN) - cpuBefore;
  return { metrics: g.metrics, turns: ok, failed, turnsPerSecond: ok / elapsed, cpuUsPerTurn: (cpuMs * 1000) / ok, scrapes };
}

async function measure(metrics: boolean): Promise<Run> {
  const g = await startGateway(metrics);
  try {
    return await drive(g);
  } finally {
    await stopGateway(g);
  }
}

/** Both at once: the same machine noise for each. Which one starts (and is driven) first alternates by round. */
async function measurePaired(onFirst: boolean): Promise<[Run, Run]> {
  const order = onFirst ? [true, false] : [false, true];
  const gateways = await Promise.all(order.map((metrics) => startGateway(metrics, metrics && !values.control)));
  if (values.pin) {
    // Both gateways share one core (the scheduler splits it evenly; whatever else runs there
    // slows both alike), the clients take the other.
    for (const g of gateways) execFileSync('taskset', ['-a', '-c', '-p', '0', String(g.child.pid)], { stdio: 'ignore' });
    execFileSync('taskset', ['-a', '-c', '-p', '1', String(process.pid)], { stdio: 'ignore' });
  }
  try {
    const runs = await Promise.all(gateways.map((g) => drive(g)));
    return onFirst ? [runs[0]!, runs[1]!] : [runs[1]!, runs[0]!];
  } finally {
    await Promise.all(gateways.map((g) => stopGateway(g)));
  }
}

/** CPU time (not wall time: other processes on the machine do not count) of `fn`, per call, best of `tries`. */
async function cpuNsPer(n: number, fn: (i: number) => unknown, tries = 5): Promise<number> {
  let best = Infinity;
  for (let t = 0; t < tries; t++) {
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const r = fn(i);
      if (r instanceof Promise) await r;
    }
    const used = process.cpuUsage(before);
    best = Math.min(best, ((used.user + used.system) * 1000) / n);
  }
  return best;
}

/**
 * The metrics work one SSE turn does, timed in a loop (after as many warm-up turns): what the
 * platform middleware, the pipeline and the limiter call, nothing else.
 */
async function inProcessCost(turns = 200_000): Promise<{ nsPerTurn: number; limiterNsPerTurn: number; renderMs: number; bytes: number }> {
  const metrics = new PromMetrics({ defaultMetrics: false });
  const usage = { inputTokens: 17, outputTokens: 56 };
  const oneTurn = () => {
    metrics.httpRequest('POST', '/api/v2/ai/chat/stream', 200);
    const turn = metrics.turnStarted('sse', 'local', 'local');
    turn.firstToken();
    turn.end({ finishReason: 'stop', usage });
  };
  const nsPerTurn = await cpuNsPer(turns, oneTurn);

  // The limiter: one consume per turn, with and without the refusal counting around it.
  const bare = new MemoryRateLimiter(60_000);
  const counted = countingRefusals(new MemoryRateLimiter(60_000), metrics);
  const consume = (limiter: RateLimiter) => (i: number) => limiter.consume(`chat:ip:10.0.${i % 250}.1`, 1e9);
  const bareNs = await cpuNsPer(turns, consume(bare));
  const countedNs = await cpuNsPer(turns, consume(counted));

  // A scrape of a registry holding a few models, protocols and routes, plus the default Node metrics.
  const full = new PromMetrics();
  for (const [p, m] of [['local', 'local'], ['openai', 'gpt-4o-mini'], ['openai', 'gpt-4o'], ['gemini', 'gemini-2.5-flash']] as const) {
    for (const protocol of ['sse', 'ai:chat', 'chat:start']) full.turnStarted(protocol, p, m).end({ finishReason: 'stop', usage });
  }
  for (const route of ['/api/v2/ai/chat/stream', '/api/v2/conversations', '/api/v2/conversations/:id', '/healthz', 'unmatched']) full.httpRequest('GET', route, 200);
  const renderMs = (await cpuNsPer(20, () => full.render())) / 1e6;
  return { nsPerTurn, limiterNsPerTurn: Math.max(0, countedNs - bareNs), renderMs, bytes: (await full.render()).length };
}

function show(round: number, run: Run): void {
  console.log(
    `round ${round} ${values.control ? `control ${run.metrics ? 'A' : 'B'}` : `metrics ${run.metrics ? 'on ' : 'off'}`}: ${run.turnsPerSecond.toFixed(1)} turns/s, ${run.cpuUsPerTurn.toFixed(0)} µs CPU/turn` +
      ` (${run.turns} turns, ${run.failed} failed${run.scrapes ? `, ${run.scrapes} scrapes` : ''})`,
  );
}

async function main(): Promise<void> {
  const direct = await inProcessCost();
  console.log(
    `in-process: ${(direct.nsPerTurn / 1000).toFixed(2)} µs of metrics work per turn, +${(direct.limiterNsPerTurn / 1000).toFixed(2)} µs for the limiter's refusal counting;` +
      ` one scrape renders ${direct.bytes} bytes in ${direct.renderMs.toFixed(2)} ms\n`,
  );
  const runs: Run[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (values.paired) {
      const pair = await measurePaired(round % 2 === 0);
      for (const run of pair) show(round + 1, run);
      runs.push(...pair);
      continue;
    }
    const order = round % 2 === 0 ? [true, false] : [false, true];
    for (const metrics of order) {
      const run = await measure(metrics);
      runs.push(run);
      show(round + 1, run);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const on = runs.filter((r) => r.metrics);
  const off = runs.filter((r) => !r.metrics);
  /** Each round's on/off turns/s: a round's two runs saw the most similar machine. */
  const roundRatios = on.map((r, i) => r.turnsPerSecond / off[i]!.turnsPerSecond);
  const ratio = mean(on.map((r) => r.turnsPerSecond)) / mean(off.map((r) => r.turnsPerSecond));
  const cpuRatio = mean(on.map((r) => r.cpuUsPerTurn)) / mean(off.map((r) => r.cpuUsPerTurn));
  const offCpu = mean(off.map((r) => r.cpuUsPerTurn));
  const summary = {
    date: new Date().toISOString(),
    node: process.version,
    mode: values.paired ? `paired${values.control ? ' control (both off)' : ''}${values.pin ? ', pinned' : ''}` : 'alternating',
    inProcess: { ...direct, shareOfTurnCpu: (direct.nsPerTurn + direct.limiterNsPerTurn) / 1000 / offCpu },
    seconds: SECONDS,
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    turnsPerSecond: { on: mean(on.map((r) => r.turnsPerSecond)), off: mean(off.map((r) => r.turnsPerSecond)), ratioOnOff: ratio, roundRatios, medianRoundRatio: median(roundRatios) },
    cpuUsPerTurn: { on: mean(on.map((r) => r.cpuUsPerTurn)), off: mean(off.map((r) => r.cpuUsPerTurn)), ratioOnOff: cpuRatio },
    runs,
  };
  console.log(
    `\nturns/s: on ${summary.turnsPerSecond.on.toFixed(1)}, off ${summary.turnsPerSecond.off.toFixed(1)}: on/off ${ratio.toFixed(3)} (${((1 - ratio) * 100).toFixed(1)} % cost)` +
      `; per round on/off ${roundRatios.map((r) => r.toFixed(3)).join(', ')}, median ${median(roundRatios).toFixed(3)}` +
      `\nCPU per turn: on ${summary.cpuUsPerTurn.on.toFixed(0)} µs, off ${summary.cpuUsPerTurn.off.toFixed(0)} µs: on/off ${cpuRatio.toFixed(3)}` +
      `\nin-process metrics work: ${((summary.inProcess.shareOfTurnCpu) * 100).toFixed(2)} % of the CPU a turn takes with metrics off`,
  );
  writeFileSync(join(ROOT, values.out), `${JSON.stringify(summary, null, 2)}\n`);
  if (runs.some((r) => r.failed > 0)) process.exitCode = 1;
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    agent.destroy();
    void stopAllChildren();
  });
