/**
 * Turns per second with `start:cluster` at 1 and 2 worker processes, on one machine, with
 * REDIS_URL (a real redis-server) so every shared rule is on: BUSY locks, turn logs in Redis
 * Streams, the Socket.IO adapter. Each turn is a POST /api/v2/ai/chat/stream on the local model
 * (no delay, 32 tokens) read to its end; `--concurrency` loops for `--seconds`.
 *
 *   npx tsx bench/cluster.ts [--concurrency 32] [--seconds 10]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const CONCURRENCY = arg('concurrency', 32);
const SECONDS = arg('seconds', 10);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port: number, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

function turn(port: number, agent: Agent, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ message: `benchmark turn ${i}`, maxTokens: 32 });
    const req = request({ host: '127.0.0.1', port, path: '/api/v2/ai/chat/stream', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      res.on('data', () => undefined);
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function run(workers: number, redisPort: number): Promise<number> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(os.tmpdir(), 'bench-cluster-'));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/node/cluster-main.ts'], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      CLUSTER_WORKERS: String(workers),
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      REDIS_KEY_PREFIX: `bench${workers}`,
      JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
      RATE_LIMIT_ANON: '1000000',
      MEMORY_ENABLED: 'false',
      LOG_LEVEL: 'error',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitPort(port);
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    // Warm-up: every worker compiles its hot paths.
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => turn(port, agent, i)));
    let done = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, c) => {
        for (let i = 0; Date.now() < end; i++) {
          await turn(port, agent, c * 100_000 + i);
          done++;
        }
      }),
    );
    agent.destroy();
    return done / SECONDS;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const redisPort = await freePort();
const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
try {
  await waitPort(redisPort);
  const one = await run(1, redisPort);
  const two = await run(2, redisPort);
  console.log(JSON.stringify({ cores: os.availableParallelism(), concurrency: CONCURRENCY, seconds: SECONDS, turnsPerSecond: { oneProcess: +one.toFixed(1), twoProcesses: +two.toFixed(1) }, speedup: +(two / one).toFixed(2), goal: 1.7 }));
} finally {
  redis.kill('SIGKILL');
}
