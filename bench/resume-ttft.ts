/**
 * What resumability costs the first token: TTFT of sequential SSE turns (local model, no delay)
 * on in-process gateways that differ only in it: without Redis, resuming off
 * (STREAM_RESUME_TTL_S=0) against the in-process buffer; with REDIS_URL (a real redis-server),
 * resuming off against Redis Streams. The gateways take turns one request at a time (A B C D,
 * B C D A, ...), so the machine's noise falls on all of them alike. Goal: <= 0.5 ms p50.
 *
 *   npx tsx bench/resume-ttft.ts [--turns 400]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/logger.js';
import { createNodeServer, type NodeServer } from '../src/node/server.js';
import { experimentEnv, runBench, startRedisProcess } from './processes.js';

export interface ResumeOptions {
  turns: number;
  stopSignal?: AbortSignal;
  log?: (line: string) => void;
}

interface Percentiles {
  p50: number;
  p90: number;
}

export interface ResumeResult {
  turns: number;
  ttftMs: { off: Percentiles; memory: Percentiles; redisOff: Percentiles; redis: Percentiles };
  /** p50 with resuming on minus p50 with it off, same backend. */
  costP50Ms: { memory: number; redis: number };
}

function ttft(port: number, agent: Agent, i: number): Promise<number> {
  return new Promise((done, reject) => {
    const body = JSON.stringify({ message: `ttft ${i}`, maxTokens: 16, sessionId: `ttft-${i}` });
    const started = performance.now();
    let first = 0;
    const req = request({ host: '127.0.0.1', port, path: '/api/v2/ai/chat/stream', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      res.on('data', (chunk: Buffer) => {
        if (!first && chunk.includes('"content"')) first = performance.now() - started;
      });
      res.on('end', () => done(first));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs: number[], p: number) => +[...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!.toFixed(3);

export async function measureResume(opts: ResumeOptions): Promise<ResumeResult> {
  const log = opts.log ?? (() => undefined);
  const redis = await startRedisProcess();
  const redisPort = redis.port;
  const dirs: string[] = [];
  const servers: NodeServer[] = [];
  const agents: Agent[] = [];
  try {
    const redisEnv = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, REDIS_KEY_PREFIX: `ttft${Date.now()}` };
    const variants = {
      off: { STREAM_RESUME_TTL_S: '0' },
      memory: { STREAM_RESUME_TTL_S: '300' },
      redisOff: { STREAM_RESUME_TTL_S: '0', ...redisEnv, REDIS_KEY_PREFIX: `${redisEnv.REDIS_KEY_PREFIX}a` },
      redis: { STREAM_RESUME_TTL_S: '300', ...redisEnv, REDIS_KEY_PREFIX: `${redisEnv.REDIS_KEY_PREFIX}b` },
    };
    const names = Object.keys(variants) as (keyof typeof variants)[];
    const ports: number[] = [];
    for (const name of names) {
      const dataDir = mkdtempSync(join(os.tmpdir(), 'bench-ttft-'));
      dirs.push(dataDir);
      const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', DATA_DIR: dataDir, RATE_LIMIT_ANON: '1000000', MEMORY_ENABLED: 'false', LOG_LEVEL: 'silent', ...experimentEnv(), ...variants[name] });
      const server = await createNodeServer(config, { logger: silentLogger });
      servers.push(server);
      ports.push((await server.listen()).port);
      agents.push(new Agent({ keepAlive: true, maxSockets: 1 }));
    }
    const samples = names.map(() => [] as number[]);
    for (let i = -50; i < opts.turns; i++) {
      opts.stopSignal?.throwIfAborted();
      for (let k = 0; k < names.length; k++) {
        const m = (k + i + 50) % names.length;
        const t = await ttft(ports[m]!, agents[m]!, i * names.length + m);
        if (i >= 0) samples[m]!.push(t);
      }
      if (i > 0 && i % 200 === 0) log(`  resume: ${i} of ${opts.turns} turns per variant`);
    }
    const at = (name: keyof typeof variants) => samples[names.indexOf(name)]!;
    const p = (name: keyof typeof variants) => ({ p50: pct(at(name), 0.5), p90: pct(at(name), 0.9) });
    const ttftMs = { off: p('off'), memory: p('memory'), redisOff: p('redisOff'), redis: p('redis') };
    return {
      turns: opts.turns,
      ttftMs,
      costP50Ms: { memory: +(ttftMs.memory.p50 - ttftMs.off.p50).toFixed(3), redis: +(ttftMs.redis.p50 - ttftMs.redisOff.p50).toFixed(3) },
    };
  } finally {
    for (const a of agents) a.destroy();
    await Promise.all(servers.map((s) => s.close()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    redis.stop();
  }
}

async function main() {
  const at = process.argv.indexOf('--turns');
  const r = await measureResume({ turns: at > 0 ? Number(process.argv[at + 1]) : 400, log: (l) => process.stderr.write(`${l}\n`) });
  console.log(JSON.stringify({ ...r, goalMs: 0.5 }));
}

if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) runBench(main);
