/**
 * The hardening scenarios of issue 7, measured on the real gateway entry in a child process:
 *
 *   npx tsx bench/hardening.ts [login-burst] [login-burst-spread] [slow-readers] [tokenizer]   (default: all)
 *
 * - login-burst: 120 concurrent wrong-password logins from four client IPs (127.0.0.2-5, each
 *   within its own sign-in quota) while /healthz is polled from 127.0.0.1: peak RSS and
 *   /healthz latency during the burst (`login-burst-spread`: at 120 different emails, so only
 *   the bounded hash queue, not the per-account throttle, stands in the way).
 * - slow-readers: five Socket.IO clients start long replies on `/ai` and stop reading their
 *   WebSocket; gateway RSS over 20 s.
 * - tokenizer: chat turns whose message is 32,000 "é" (the worst case for BPE), three turns in
 *   one conversation, while /healthz is polled: how long the event loop is blocked per turn.
 *
 * Results go to stdout and bench/results/hardening.json.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io, type Socket } from 'socket.io-client';
import { readProcStats, startGatewayProcess, startStandinProcess, runBench } from './processes.js';
import { percentile } from './stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Response {
  status: number;
  body: string;
  ms: number;
}

function request(url: string, options: { method?: string; body?: unknown; localAddress?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = http.request(
      url,
      {
        method: options.method ?? 'GET',
        localAddress: options.localAddress,
        agent: false,
        headers: { ...(body ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}), ...options.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, ms: performance.now() - started }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Polls /healthz from a separate process (bench/healthz-prober.ts), so the latency measured is
 * the gateway's and not this process's own load (it also runs the clients).
 */
function pollHealth(url: string, intervalMs: number): { stop(): Promise<number[]> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/healthz-prober.ts', `${url}/healthz`, String(intervalMs)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    stop: async () => {
      child.stdin.end();
      await exited;
      return (JSON.parse(out.trim() || '{"latencies":[]}') as { latencies: number[] }).latencies;
    },
  };
}

function sampleRss(pid: number, intervalMs: number): { stop(): number[] } {
  const samples: number[] = [];
  const timer = setInterval(() => {
    const s = readProcStats(pid);
    if (s) samples.push(s.rssMb);
  }, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      return samples;
    },
  };
}

const round = (n: number) => Math.round(n * 10) / 10;
const latencySummary = (ms: number[]) => {
  const ok = ms.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { samples: ms.length, failed: ms.length - ok.length, p50: round(percentile(ok, 50)), p99: round(percentile(ok, 99)), max: round(Math.max(...ok)) };
};

/**
 * 120 concurrent wrong-password logins from four IPs. `spread`: each at a different (unknown)
 * email, so the per-account throttle never engages and only the bounded hash queue protects.
 */
async function loginBurst(spread = false): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-hardening-'));
  try {
    const { child, url } = await startGatewayProcess(ROOT, 'http://127.0.0.1:9/v1', dataDir, [], { RATE_LIMIT_AUTH: '30' });
    const reg = await request(`${url}/api/v2/auth/register`, { method: 'POST', body: { email: 'victim@example.com', password: 'correct horse battery' } });
    if (reg.status !== 201) throw new Error(`register: ${reg.status} ${reg.body}`);
    await sleep(1000);
    const rssBefore = readProcStats(child.pid)!.rssMb;
    const rss = sampleRss(child.pid, 100);
    const health = pollHealth(url, 50);
    await sleep(300);
    const started = performance.now();
    const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        request(`${url}/api/v2/auth/login`, {
          method: 'POST',
          localAddress: ips[i % ips.length],
          body: { email: spread ? `nobody-${i}@example.com` : 'victim@example.com', password: `wrong-guess-${i}` },
        }).catch(() => ({ status: 0, body: '', ms: Number.NaN })),
      ),
    );
    const burstMs = performance.now() - started;
    await sleep(300);
    const latencies = await health.stop();
    const samples = rss.stop();
    const statuses: Record<string, number> = {};
    for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    await child.stop();
    return {
      burstMs: Math.round(burstMs),
      statuses,
      rssBeforeMb: round(rssBefore),
      rssPeakMb: round(Math.max(...samples)),
      healthz: latencySummary(latencies),
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function slowReaders(): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-hardening-'));
  const sockets: Socket[] = [];
  try {
    const standin = await startStandinProcess(ROOT, 400_000, 0);
    const { child, url } = await startGatewayProcess(ROOT, standin.url, dataDir, process.env.HARDENING_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.HARDENING_PROF] : [], { MAX_OUTPUT_TOKENS: '1000000' });
    await sleep(1000);
    const rssBefore = readProcStats(child.pid)!.rssMb;
    const rss = sampleRss(child.pid, 250);
    const health = pollHealth(url, 100);
    let paused = 0;
    for (let i = 0; i < 5; i++) {
      const socket = io(`${url}/ai`, { transports: ['websocket'], reconnection: false });
      sockets.push(socket);
      socket.once('chat:message', () => {
        // Stop reading: the TCP receive window fills and the gateway's writes queue up.
        (socket.io.engine.transport as unknown as { ws: { pause(): void } }).ws.pause();
        paused++;
      });
      socket.on('connect', () => socket.emit('chat:start', { message: 'tell me everything', model: 'gpt-4o-mini', maxTokens: 1_000_000 }));
    }
    const rssAt: Record<string, number> = {};
    for (const at of [5, 10, 20]) {
      await sleep(at === 5 ? 5_000 : at === 10 ? 5_000 : 10_000);
      rssAt[`${at}s`] = round(readProcStats(child.pid)?.rssMb ?? Number.NaN);
    }
    const latencies = await health.stop();
    const samples = rss.stop();
    for (const s of sockets) s.disconnect();
    await sleep(1000);
    const rssAfter = readProcStats(child.pid)?.rssMb ?? Number.NaN;
    await child.stop();
    await standin.child.stop();
    // Every reply was cut when its client left: what was stored is what the gateway pulled from the model.
    const db = new Database(join(dataDir, 'gateway.sqlite'));
    const pulled = db.prepare("SELECT count(*) AS replies, coalesce(sum(length(content)), 0) AS chars FROM messages WHERE role = 'assistant'").get() as { replies: number; chars: number };
    db.close();
    return {
      pausedClients: paused,
      rssBeforeMb: round(rssBefore),
      rssAt,
      rssPeakMb: round(Math.max(...samples)),
      rssAfterDisconnectMb: round(rssAfter),
      // The stand-in's tokens are " w<i>": about 6 characters each.
      tokensPulledFromModel: Math.round(pulled.chars / 6),
      healthz: latencySummary(latencies),
    };
  } finally {
    for (const s of sockets) s.disconnect();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function tokenizer(): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-hardening-'));
  try {
    const { child, url } = await startGatewayProcess(ROOT, 'http://127.0.0.1:9/v1', dataDir, [], { DEFAULT_MODEL: 'local' });
    await sleep(500);
    const turns: Record<string, unknown>[] = [];
    // A different character each turn: the tokenizer caches what it has already seen.
    const letters = ['é', 'è', 'ê'];
    for (let i = 0; i < 3; i++) {
      const message = letters[i]!.repeat(32_000);
      const health = pollHealth(url, 5);
      await sleep(100);
      const res = await request(`${url}/api/v2/ai/chat/stream`, { method: 'POST', body: { message, sessionId: 'tokenizer-bench' } });
      await sleep(100);
      const latencies = await health.stop();
      turns.push({ turn: i + 1, status: res.status, turnMs: Math.round(res.ms), healthz: latencySummary(latencies) });
    }
    await child.stop();
    return { turns };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const scenarios: Record<string, () => Promise<Record<string, unknown>>> = {
  'login-burst': () => loginBurst(false),
  'login-burst-spread': () => loginBurst(true),
  'slow-readers': slowReaders,
  tokenizer,
};

async function main(): Promise<void> {
  const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = chosen.length ? chosen : Object.keys(scenarios);
  const out: Record<string, unknown> = { at: new Date().toISOString(), node: process.version };
  for (const name of names) {
    const run = scenarios[name];
    if (!run) throw new Error(`unknown scenario ${name}; choose from ${Object.keys(scenarios).join(', ')}`);
    process.stderr.write(`== ${name}\n`);
    out[name] = await run();
    console.log(JSON.stringify({ [name]: out[name] }, null, 2));
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/hardening.json'), `${JSON.stringify(out, null, 2)}\n`);
}

runBench(main);
