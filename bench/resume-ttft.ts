/**
 * What resumability costs the first token: TTFT p50/p90 of sequential SSE turns (local model,
 * no delay) on one in-process gateway with resuming off (STREAM_RESUME_TTL_S=0), the in-process
 * buffer, and Redis Streams (REDIS_URL, a real redis-server). Goal: ≤ 0.5 ms p50 more than off.
 *
 *   npx tsx bench/resume-ttft.ts [--turns 400]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/logger.js';
import { createNodeServer } from '../src/node/server.js';

const at = process.argv.indexOf('--turns');
const TURNS = at > 0 ? Number(process.argv[at + 1]) : 400;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function ttft(port: number, agent: Agent, i: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ message: `ttft ${i}`, maxTokens: 16, sessionId: `ttft-${i}` });
    const started = performance.now();
    let first = 0;
    const req = request({ host: '127.0.0.1', port, path: '/api/v2/ai/chat/stream', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.on('data', (chunk: Buffer) => {
        if (!first && chunk.includes('"content"')) first = performance.now() - started;
      });
      res.on('end', () => resolve(first));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;

async function measure(env: Record<string, string>): Promise<{ p50: number; p90: number }> {
  const dataDir = mkdtempSync(join(os.tmpdir(), 'bench-ttft-'));
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', DATA_DIR: dataDir, RATE_LIMIT_ANON: '1000000', MEMORY_ENABLED: 'false', LOG_LEVEL: 'silent', ...env });
  const server = await createNodeServer(config, { logger: silentLogger });
  const { port } = await server.listen();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 50; i++) await ttft(port, agent, -i - 1);
    const xs: number[] = [];
    for (let i = 0; i < TURNS; i++) xs.push(await ttft(port, agent, i));
    return { p50: +pct(xs, 0.5).toFixed(3), p90: +pct(xs, 0.9).toFixed(3) };
  } finally {
    agent.destroy();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const redisPort = await freePort();
const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 300));
try {
  const off = await measure({ STREAM_RESUME_TTL_S: '0' });
  const memory = await measure({ STREAM_RESUME_TTL_S: '300' });
  const redisOn = await measure({ STREAM_RESUME_TTL_S: '300', REDIS_URL: `redis://127.0.0.1:${redisPort}`, REDIS_KEY_PREFIX: `ttft${Date.now()}` });
  const off2 = await measure({ STREAM_RESUME_TTL_S: '0' });
  console.log(JSON.stringify({ turns: TURNS, ttftMs: { off, memory, redis: redisOn, offAgain: off2 }, costP50Ms: { memory: +(memory.p50 - Math.min(off.p50, off2.p50)).toFixed(3), redis: +(redisOn.p50 - Math.min(off.p50, off2.p50)).toFixed(3) }, goalMs: 0.5 }));
} finally {
  redis.kill('SIGKILL');
}
