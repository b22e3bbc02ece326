/** `npm run start:cluster`'s entry with two workers on one port: Engine.IO polling keeps its worker, SSE works. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { parseExposition } from '../helpers/prometheus.js';
import { startRedisServer } from '../standins/redis-server.js';
import { client, closeAllClients, type AiClient } from '../socket/socket-harness.js';

describe('start:cluster (two workers, one port)', () => {
  let child: ChildProcess;
  let redis: Awaited<ReturnType<typeof startRedisServer>>;
  let url: string;

  beforeAll(async () => {
    redis = await startRedisServer();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ['--import', 'tsx', 'src/node/cluster-main.ts'], {
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: tempDataDir(), CLUSTER_WORKERS: '2', REDIS_URL: `redis://127.0.0.1:${redis.port}`, JWT_SECRET: 'cluster-test-secret-cluster-test-secret-01', MEMORY_ENABLED: 'false', LOG_LEVEL: 'error', RATE_LIMIT_ANON: '1000', REQUEST_TIMEOUT_MS: '2000' },
      stdio: 'ignore',
    });
    await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok, 60_000, 200);
  }, 90_000);

  afterAll(async () => {
    closeAllClients();
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await redis?.close();
  });

  it('/metrics is every worker\'s, summed: successive scrapes agree, and each request is counted once', async () => {
    const healthz = async () => {
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('connection')).toBe('close');
      return parseExposition(await res.text()).value('gateway_http_requests_total', { method: 'GET', route: '/healthz', status: '200' });
    };
    const before = await healthz();
    for (let i = 0; i < 10; i++) await (await fetch(`${url}/healthz`)).arrayBuffer();
    const scrapes = [await healthz(), await healthz(), await healthz(), await healthz()];
    // Round-robin over two workers: one worker's registry would read differently on every other scrape.
    expect(scrapes).toEqual(Array(4).fill(before + 10));
  });

  it('a connection that sends nothing is closed after REQUEST_TIMEOUT_MS, as one process closes it (the primary holds no descriptor for ever)', async () => {
    const started = performance.now();
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    socket.resume();
    await once(socket, 'close');
    const ms = performance.now() - started;
    expect(ms).toBeGreaterThan(1_500);
    expect(ms).toBeLessThan(6_000);
  });

  it('polling-only Socket.IO clients complete turns (every poll reaches the worker holding the session)', async () => {
    const sockets = Array.from({ length: 4 }, () => client<AiClient>(`${url}/ai`, { transports: ['polling'] }));
    const ends = await Promise.all(
      sockets.map(
        (s, i) =>
          new Promise<{ finishReason: string }>((resolve, reject) => {
            s.on('connect_error', reject);
            s.on('chat:error', (e) => reject(new Error(e.message)));
            s.on('chat:end', resolve);
            s.emit('chat:start', { message: `polling ${i}`, maxTokens: 20 });
          }),
      ),
    );
    expect(ends.every((e) => e.finishReason === 'stop' || e.finishReason === 'length')).toBe(true);
    expect(sockets.every((s) => s.connected)).toBe(true);
  });

  it('every response closes its connection: a worker was chosen by the connection\'s first request, and a later one (a poll of another worker\'s session) must not reach it', async () => {
    for (const path of ['/healthz', '/openapi.json', '/socket.io/?EIO=4&transport=polling']) {
      const res = await fetch(`${url}${path}`);
      expect(res.headers.get('connection'), path).toBe('close');
      await res.arrayBuffer();
    }
  });

  it('while a killed worker restarts, every connection goes to the one that is up: none is left unanswered', async () => {
    const workerPids = () => execFileSync('pgrep', ['-P', String(child.pid)]).toString().trim().split('\n').map(Number);
    const [victim] = workerPids();
    process.kill(victim!, 'SIGKILL');
    // A scrape as the worker dies: answered at once from the workers that are up (or 503, scrape
    // again), never left waiting on the dead one.
    const scrapeStarted = performance.now();
    const scrape = await fetch(`${url}/metrics`);
    await scrape.arrayBuffer();
    expect([200, 503]).toContain(scrape.status);
    expect(performance.now() - scrapeStarted).toBeLessThan(3_000);
    await waitFor(() => !workerPids().includes(victim!), 5000, 20);
    // Its replacement is forked (half a second on) and starting: a second or so before it serves.
    await waitFor(() => workerPids().length === 2, 5000, 10);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, (err: Error) => err.name)),
    );
    expect(answers).toEqual(Array(10).fill(200));
    // Its replacement comes up (and takes connections again) before the tests after this one.
    await new Promise((r) => setTimeout(r, 3000));
  }, 30_000);

  it('SSE turns and /readyz with Redis', async () => {
    const events = await readSse(await postChat(url, { message: 'hello cluster', maxTokens: 10 }));
    expect(events.at(-1)).toMatchObject({ done: true });
    const ready = (await (await fetch(`${url}/readyz`)).json()) as { checks: Record<string, { status: string }> };
    expect(ready.checks.redis?.status).toBe('ok');
  });

  it('a handed-over connection streams without Nagle stalls: a short streamed turn takes milliseconds, not the ~40 ms of a delayed ACK', async () => {
    // Unmeasured first: a worker's first turns (cold code, lazy imports) take longer whatever the socket does.
    for (let i = 0; i < 6; i++) await readSse(await postChat(url, { message: `warm ${i}`, maxTokens: 12 }));
    const durations: number[] = [];
    for (let i = 0; i < 11; i++) {
      const started = performance.now();
      const events = await readSse(await postChat(url, { message: `quick ${i}`, maxTokens: 12 }));
      durations.push(performance.now() - started);
      expect(events.at(-1)).toMatchObject({ done: true });
    }
    durations.sort((a, b) => a - b);
    // Every frame is its own small write; with Nagle on, each after the first waits for the client's delayed ACK.
    expect(durations[5]).toBeLessThan(30);
  });
});
