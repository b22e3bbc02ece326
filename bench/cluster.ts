/**
 * Turns per second with `start:cluster` (the compiled entry, as `npm run start:cluster` runs it)
 * at 1 and 2 worker processes on one machine, with REDIS_URL (a real redis-server) so every
 * shared rule is on: BUSY leases, turn logs in Redis Streams, rate limits counted in Redis, the
 * Socket.IO adapter. Each turn is a POST /api/v2/ai/chat/stream on the local model (no delay,
 * 32 tokens) read to its end over keep-alive connections.
 *
 * The load generator has to stay cheap, or it takes the second core the second process needs:
 * it writes one prebuilt request per turn on a raw socket and only looks for the end of the
 * chunked body (the SSE data itself never contains a CR). Runs alternate 1, 2, 1, 2 ... so the
 * machine's noise falls on both; the medians are compared. CPU used by the gateway processes,
 * Redis and the load generator is reported per turn: on two cores the best possible speed-up is
 * 2 cores / (everything's CPU per turn) against 1 / (the gateway's).
 *
 *   npx tsx bench/cluster.ts [--concurrency 32] [--seconds 8] [--rounds 2] [--profile] [--env NAME=value,...]
 *
 * `--profile` writes a .cpuprofile per process to bench/results/profiles/cluster/.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { CLUSTER_NODE_FLAGS, buildGateway, experimentEnv, experimentNodeArgs, freePort, parseEnvList, readProcStats, runBench, startRedisProcess, waitForPort } from './processes.js';

export interface ClusterOptions {
  root: string;
  concurrency: number;
  seconds: number;
  /** Runs per worker count (alternating). */
  rounds: number;
  /** Node flags for the gateway processes (e.g. `--cpu-prof --cpu-prof-dir=...`; the workers inherit them). */
  nodeArgs?: string[];
  /** More environment for the gateway (`--env NAME=value,...`; an empty value removes the variable). */
  env?: Record<string, string | undefined>;
  stopSignal?: AbortSignal;
  log?: (line: string) => void;
}

export interface ClusterRun {
  workers: number;
  turnsPerSecond: number;
  turns: number;
  failures: number;
  /** CPU ms per turn: the gateway's processes (primary and workers), redis-server, the load generator. */
  cpuMsPerTurn: { gateway: number; redis: number; client: number };
  /** Share of one core each gateway process used during the run (the primary first). */
  busy: number[];
}

export interface ClusterResult {
  cores: number;
  concurrency: number;
  seconds: number;
  runs: ClusterRun[];
  median: { one: number; two: number };
  speedup: number;
  /** What two cores allow at most, from the CPU measured per turn (everything on the box counted). */
  ceiling: number;
  /**
   * The machine's own answer for two processes: a fixed piece of CPU-bound work run twice at
   * once, against once alone (work done per second; 2.0 on two free, independent cores).
   */
  machineSpeedup: number;
}

/** The same CPU-bound JavaScript, in one process: ~0.5 s alone on a free core. */
const FIXED_WORK = `let x = 0; const a = new Float64Array(1 << 16);
for (let r = 0; r < 3000; r++) for (let i = 0; i < a.length; i++) { a[i] = a[i] * 1.0000001 + (i ^ r); x += a[i] & 7; }
if (x < 0) console.log(x);`;

async function fixedWork(copies: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: copies }, () => new Promise((done) => spawn(process.execPath, ['-e', FIXED_WORK], { stdio: 'ignore' }).once('exit', done))),
  );
  return performance.now() - t0;
}

/** Work per second with two copies at once over one alone; the median of `rounds` alternating pairs. */
async function machineSpeedup(rounds: number): Promise<number> {
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const one = await fixedWork(1);
    const two = await fixedWork(2);
    ratios.push((2 * one) / two);
  }
  return +median(ratios).toFixed(2);
}

/** The primary and every process below it (the workers). */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  walk(root);
  return out;
}

const cpuOf = (pids: number[]) => pids.reduce((s, p) => s + (readProcStats(p)?.cpuMs ?? 0), 0);

const END = Buffer.from('\r\n0\r\n\r\n');

/**
 * `concurrency` keep-alive connections, each sending the same request again as soon as the
 * last response ended, until `endAt`. Counts completed 200 turns and failures.
 */
async function drive(port: number, concurrency: number, endAt: number, signal: AbortSignal): Promise<{ turns: number; failures: number }> {
  const body = JSON.stringify({ message: 'benchmark turn', maxTokens: 32 });
  const request = Buffer.from(
    `POST /api/v2/ai/chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  let turns = 0;
  let failures = 0;
  const one = () =>
    new Promise<void>((done) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
      let tail: Buffer = Buffer.alloc(0);
      let head = true;
      const next = () => {
        if (Date.now() >= endAt || signal.aborted) {
          socket.destroy();
          return done();
        }
        head = true;
        tail = Buffer.alloc(0);
        socket.write(request);
      };
      socket.on('connect', next);
      socket.on('data', (chunk: Buffer) => {
        if (head) {
          head = false;
          if (!chunk.subarray(0, 12).equals(Buffer.from('HTTP/1.1 200'))) failures++;
        }
        const view = tail.length ? Buffer.concat([tail, chunk]) : chunk;
        if (view.indexOf(END) !== -1) {
          turns++;
          next();
        } else tail = view.subarray(Math.max(0, view.length - END.length));
      });
      socket.on('error', () => {
        failures++;
        done();
      });
      socket.on('close', () => done());
    });
  await Promise.all(Array.from({ length: concurrency }, one));
  return { turns, failures };
}

async function runOnce(opts: ClusterOptions, workers: number, redis: { port: number; pid: number }, signal: AbortSignal): Promise<ClusterRun> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(os.tmpdir(), 'bench-cluster-'));
  const child = spawn(process.execPath, [...CLUSTER_NODE_FLAGS, ...(opts.nodeArgs ?? []), ...experimentNodeArgs(), 'dist/node/cluster-main.js'], {
    cwd: opts.root,
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      CLUSTER_WORKERS: String(workers),
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      REDIS_KEY_PREFIX: `bench${workers}-${Date.now()}`,
      JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
      RATE_LIMIT_ANON: '1000000',
      MEMORY_ENABLED: 'false',
      LOG_LEVEL: 'error',
      ...experimentEnv(),
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await waitForPort(port);
    // Warm-up: every worker compiles its hot paths.
    await drive(port, opts.concurrency, Date.now() + 2_000, signal);
    const gatewayPids = processTree(child.pid!);
    const before = { gateway: cpuOf(gatewayPids), redis: cpuOf([redis.pid]), client: process.cpuUsage(), each: gatewayPids.map((p) => cpuOf([p])) };
    const t0 = performance.now();
    const { turns, failures } = await drive(port, opts.concurrency, Date.now() + opts.seconds * 1000, signal);
    const seconds = (performance.now() - t0) / 1000;
    const client = process.cpuUsage(before.client);
    const busy = gatewayPids.map((p, i) => +((cpuOf([p]) - before.each[i]!) / (seconds * 1000)).toFixed(2));
    const per = (ms: number) => +(ms / Math.max(1, turns)).toFixed(3);
    return {
      workers,
      turnsPerSecond: +(turns / seconds).toFixed(1),
      turns,
      failures,
      busy,
      cpuMsPerTurn: { gateway: per(cpuOf(gatewayPids) - before.gateway), redis: per(cpuOf([redis.pid]) - before.redis), client: per((client.user + client.system) / 1000) },
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function measureCluster(opts: ClusterOptions): Promise<ClusterResult> {
  const log = opts.log ?? (() => undefined);
  const signal = opts.stopSignal ?? new AbortController().signal;
  buildGateway(opts.root);
  const redis = await startRedisProcess();
  try {
    const runs: ClusterRun[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      for (const workers of r % 2 ? [2, 1] : [1, 2]) {
        signal.throwIfAborted();
        const run = await runOnce(opts, workers, redis, signal);
        log(
          `  cluster: ${workers} process(es): ${run.turnsPerSecond} turns/s (${run.failures} failed); CPU ms/turn gateway ${run.cpuMsPerTurn.gateway}, redis ${run.cpuMsPerTurn.redis}, load generator ${run.cpuMsPerTurn.client}; busy share per process ${run.busy.join(', ')}`,
        );
        runs.push(run);
      }
    }
    const one = median(runs.filter((r) => r.workers === 1).map((r) => r.turnsPerSecond));
    const two = median(runs.filter((r) => r.workers === 2).map((r) => r.turnsPerSecond));
    const twoRuns = runs.filter((r) => r.workers === 2);
    const oneRuns = runs.filter((r) => r.workers === 1);
    const all = median(twoRuns.map((r) => r.cpuMsPerTurn.gateway + r.cpuMsPerTurn.redis + r.cpuMsPerTurn.client));
    const gatewayAlone = median(oneRuns.map((r) => r.cpuMsPerTurn.gateway));
    const cores = os.availableParallelism();
    const machine = await machineSpeedup(5);
    log(`  cluster: the machine alone: two copies of a fixed CPU-bound task do ${machine}x the work per second of one`);
    return { cores, concurrency: opts.concurrency, seconds: opts.seconds, runs, median: { one, two }, speedup: +(two / one).toFixed(2), ceiling: +(Math.min(cores, 2) / all / (1 / gatewayAlone)).toFixed(2), machineSpeedup: machine };
  } finally {
    redis.stop();
  }
}

async function main() {
  const arg = (name: string, fallback: number) => {
    const at = process.argv.indexOf(`--${name}`);
    return at > 0 ? Number(process.argv[at + 1]) : fallback;
  };
  const r = await measureCluster({
    root: fileURLToPath(new URL('..', import.meta.url)),
    concurrency: arg('concurrency', 32),
    seconds: arg('seconds', 8),
    rounds: arg('rounds', 2),
    env: process.argv.includes('--env') ? parseEnvList(process.argv[process.argv.indexOf('--env') + 1]) : {},
    nodeArgs: process.argv.includes('--profile') ? ['--cpu-prof', `--cpu-prof-dir=${resolve('bench/results/profiles/cluster')}`] : [],
    log: (l) => process.stderr.write(`${l}\n`),
  });
  console.log(JSON.stringify({ ...r, goal: 1.7 }));
}

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) runBench(main);
