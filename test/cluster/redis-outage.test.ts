/**
 * Nodes that lose Redis, as real processes: two gateway processes (`src/node/main.ts`) and a
 * `start:cluster` worker set on a real redis-server that the test kills. While Redis is away
 * a node serves its own clients with bounded queues; when it is back, rooms and resumes work
 * again; and a node stopped while Redis is away exits 0 with nothing unhandled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { tempDataDir } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/ports.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';
import { client, closeAllClients, connected, type AiClient } from '../socket/socket-harness.js';

const QUEUE_MAX = 50;
/** What a process prints when a rejection or an error escapes: none may. */
const ESCAPED = /unhandled|uncaught|Disconnects client|DisconnectsClientError|ClientClosedError/i;

async function redisStatus(url: string): Promise<string | undefined> {
  const res = await fetch(`${url}/readyz`).catch(() => undefined);
  if (!res) return undefined;
  return ((await res.json()) as { checks: Record<string, { status: string }> }).checks.redis?.status;
}

/** Complete SSE frames only (what a client keeps of a cut stream). */
async function firstFrames(res: Response, frames: number, cut: AbortController): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (text.split('\n\n').length - 1 < frames) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  cut.abort();
  return text.slice(0, text.lastIndexOf('\n\n') + 2);
}

const idsOf = (raw: string) => [...raw.matchAll(/^id: (.+)$/gm)].map((m) => m[1]!);

// In order: the outage and recovery, then a turn through the outage, then the nodes are stopped.
describe('two nodes that lose Redis', { shuffle: false }, () => {
  let redisPort: number;
  let redis: RedisServerHandle;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let env: Record<string, string>;
  let user: Account;
  let openai: Standin;
  const prefix = `outage${Date.now()}`;

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await startRedisServer({ port: redisPort });
    openai = await startOpenAIStandin();
    env = {
      DATA_DIR: tempDataDir(),
      JWT_SECRET: TEST_JWT_SECRET,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      REDIS_KEY_PREFIX: prefix,
      REDIS_QUEUE_MAX: String(QUEUE_MAX),
      RATE_LIMIT_USER: '100000',
      STREAM_ON_DISCONNECT: 'continue',
      LOCAL_MODEL_TOKEN_DELAY_MS: '2',
      MEMORY_ENABLED: 'false',
      SOCKET_TRANSPORTS: 'websocket',
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: openai.url,
      DEFAULT_MODEL: 'local',
    };
    [a, b] = await Promise.all([spawnGateway(env), spawnGateway(env)]);
    user = await register(a.url, `outage-${Date.now()}@example.com`);
  }, 90_000);

  afterAll(async () => {
    closeAllClients();
    await a?.destroy();
    await b?.close();
    await openai?.close();
    await redis?.kill();
  });

  const aiClient = (gw: GatewayProcess) => client<AiClient>(`${gw.url}/ai`, { auth: { token: user.token }, transports: ['websocket'] });

  it('while Redis is away a node completes its own turns with bounded queues; once it is back, rooms and resumes work again', async () => {
    const tabA = aiClient(a);
    const tabB = aiClient(b);
    await Promise.all([connected(tabA, 10_000), connected(tabB, 10_000)]);
    await redis.kill();
    await waitFor(async () => (await redisStatus(a.url)) === 'down', 10_000, 50);

    // Every chunk of a signed-in user's /ai turn is also a packet for the user's room (the adapter's XADD).
    let chunks = 0;
    tabA.on('chat:message', () => chunks++);
    const turns = 40;
    for (let i = 0; i < turns; i++) {
      const ended = new Promise<{ finishReason: string }>((resolve, reject) => {
        tabA.once('chat:end', resolve);
        tabA.once('chat:error', (e) => reject(new Error(`turn ${i}: ${e.code} ${e.message}`)));
      });
      tabA.emit('chat:start', { message: `turn ${i} while redis is away`, maxTokens: 40 });
      const sse = i % 4 === 0 ? postChat(a.url, { message: `sse ${i}`, sessionId: `outage-sse-${i}`, maxTokens: 20 }, bearer(user)).then(readSse) : undefined;
      expect((await ended).finishReason).toMatch(/stop|length/);
      if (sse) expect((await sse).at(-1)).toMatchObject({ done: true });
      tabA.removeAllListeners('chat:error');
    }
    expect(chunks).toBeGreaterThan(20 * QUEUE_MAX);
    a.assertAlive();

    redis = await startRedisServer({ port: redisPort });
    await waitFor(async () => (await redisStatus(a.url)) === 'ok' && (await redisStatus(b.url)) === 'ok', 15_000, 100);
    const inspect = createClient({ url: env.REDIS_URL });
    inspect.on('error', () => undefined);
    await inspect.connect();
    try {
      // What node A queued for the room while Redis was away reached the (fresh, empty) Redis once
      // it was back: at most REDIS_QUEUE_MAX packets, plus a few heartbeats since, not one per chunk.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const packets = Number(await inspect.sendCommand(['XLEN', `${prefix}:socket.io`]));
      expect(packets).toBeGreaterThan(0);
      expect(packets).toBeLessThanOrEqual(QUEUE_MAX + 20);
      // Replies were not recorded while Redis was away: no write waited for it.
      expect(await inspect.sendCommand(['KEYS', `${prefix}:turn:*outage-sse-*`])).toEqual([]);
    } finally {
      inspect.destroy();
    }

    // Rooms: a turn on A reaches the user's tab on B.
    let conversationId = '';
    tabA.once('chat:conversation', (c) => (conversationId = c.conversationId));
    const seenOnB = new Promise<void>((resolve) => {
      tabB.on('chat:end', (e) => {
        if (e.conversationId === conversationId) resolve();
      });
    });
    tabA.emit('chat:start', { message: 'rooms after the outage', maxTokens: 5 });
    await seenOnB;

    // Resumes: an SSE reply on A, cut, resumed on B.
    const sessionId = `after-outage-${Date.now()}`;
    const cut = new AbortController();
    const partial = await firstFrames(await postChat(a.url, { message: 'a reply after the outage, resumed elsewhere', sessionId, maxTokens: 60 }, bearer(user), cut.signal), 4, cut);
    const resume = (lastEventId?: string) => fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { ...bearer(user), ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}) } });
    const rest = await (await resume(idsOf(partial).at(-1))).text();
    const whole = await (await resume()).text();
    expect(partial + rest).toBe(whole);
    expect((await readSse(new Response(whole))).at(-1)).toMatchObject({ done: true });
    // The reply has ended and the client has its last event: nothing to send.
    const nothing = await resume(idsOf(whole).at(-1));
    expect(nothing.status).toBe(204);
    expect(await nothing.text()).toBe('');
    expect((await resume('unknownturn-7')).status).toBe(204);
  }, 120_000);

  it('a reply that streamed through an outage is not resumable with a hole: its log is dropped, and the reply completes for its own client', async () => {
    openai.setScript(() => ({ tokens: Array.from({ length: 120 }, (_, i) => `w${i} `), delayMs: 50 }));
    const sessionId = `through-outage-${Date.now()}`;
    const res = await postChat(a.url, { message: 'a long one', sessionId, model: 'gpt-4o-mini' }, bearer(user));
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let raw = '';
    while (idsOf(raw).length < 3) raw += decoder.decode((await reader.read()).value, { stream: true });
    const early = idsOf(raw).at(-1)!;
    const streamingSince = performance.now();
    await redis.kill();
    await waitFor(async () => (await redisStatus(a.url)) === 'down', 10_000, 50);
    redis = await startRedisServer({ port: redisPort });
    await waitFor(async () => (await redisStatus(a.url)) === 'ok', 15_000, 50);
    // Back while the reply still streams (120 chunks, 50 ms apart): its later events could be written again.
    expect(performance.now() - streamingSince).toBeLessThan(5_000);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    const events = await readSse(new Response(raw));
    expect(events.at(-1)).toMatchObject({ done: true });
    // All of it, in order (tokens that reach the gateway together are written as one event, so count text, not events).
    expect(events.map((e) => (typeof e.content === 'string' ? e.content : '')).join('')).toBe(Array.from({ length: 120 }, (_, i) => `w${i} `).join(''));
    const resumed = await fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { ...bearer(user), 'Last-Event-ID': early } });
    expect(resumed.status).toBe(204);
  }, 60_000);

  it('stopped (SIGTERM) while Redis is away, each node exits 0 with nothing unhandled', async () => {
    // One more node, stopped soon after Redis goes: its adapter may still have commands queued.
    const c = await spawnGateway(env);
    try {
      await redis.kill();
      await waitFor(async () => (await redisStatus(c.url)) === 'down' && (await redisStatus(a.url)) === 'down', 10_000, 50);
      const local = await postChat(c.url, { message: 'no redis', maxTokens: 3 }, bearer(user));
      expect((await readSse(local)).at(-1)).toMatchObject({ done: true });
      await Promise.all([a.close(), b.close(), c.close()]);
      for (const gw of [a, b, c]) {
        expect(gw.exit(), gw.output()).toEqual({ code: 0, signal: null });
        expect(gw.output()).toMatch(/"msg":"shut down"/);
        expect(gw.output()).not.toMatch(ESCAPED);
      }
    } finally {
      await c.destroy();
    }
  }, 60_000);
});

/** `start:cluster`'s entry (src/node/cluster-main.ts) with two workers, its output kept. */
async function spawnCluster(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string; exited: Promise<number | null> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/node/cluster-main.ts'], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: tempDataDir(), CLUSTER_WORKERS: '2', JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: 'false', LOG_LEVEL: 'info', LOG_PRETTY: 'false', SHUTDOWN_GRACE_MS: '2000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own: the test can send a terminal's Ctrl-C to all of it.
    detached: true,
  });
  process.once('exit', () => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += `[stderr] ${d.toString()}`));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, url: `http://127.0.0.1:${port}`, output: () => out, exited };
}

/** The same, once it answers. */
async function startCluster(env: Record<string, string>): ReturnType<typeof spawnCluster> {
  const cluster = await spawnCluster(env);
  await waitFor(async () => (await fetch(`${cluster.url}/healthz`).catch(() => undefined))?.ok, 60_000, 200);
  return cluster;
}

describe('start:cluster workers that lose Redis', () => {
  it('with no Redis at REDIS_URL at start, it says so and exits 69, as `npm start` does (no worker restarted in a loop)', async () => {
    // Port 1, outside the ephemeral range: a port that was free a moment ago can be taken by a
    // server of a test running alongside (a CI run once saw an HTTP server there, mid-start-up).
    const cluster = await spawnCluster({ REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      expect(await cluster.exited, cluster.output()).toBe(69);
      expect(cluster.output()).toMatch(/Cannot start: REDIS_URL: could not connect/);
      expect(cluster.output()).not.toMatch(ESCAPED);
    } finally {
      if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
    }
  }, 60_000);

  for (const how of ['SIGTERM to the primary', 'Ctrl-C (SIGINT to the process group)'] as const) {
    it(`stopped by ${how} while Redis is away: every worker drains once and the cluster exits 0 with nothing unhandled`, async () => {
      const redis = await startRedisServer();
      const cluster = await startCluster({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: `cl${Date.now()}` });
      try {
        expect((await readSse(await postChat(cluster.url, { message: 'hello', maxTokens: 5 }))).at(-1)).toMatchObject({ done: true });
        await redis.close();
        // Both workers notice (each logs it).
        await waitFor(() => (cluster.output().match(/lost Redis/g) ?? []).length >= 2, 10_000, 50);
        if (how === 'SIGTERM to the primary') cluster.child.kill('SIGTERM');
        else process.kill(-cluster.child.pid!, 'SIGINT');
        expect(await cluster.exited, cluster.output()).toBe(0);
        expect((cluster.output().match(/"msg":"shut down"/g) ?? []).length, cluster.output()).toBe(2);
        expect(cluster.output()).not.toMatch(ESCAPED);
      } finally {
        if (cluster.child.exitCode === null) cluster.child.kill('SIGKILL');
        await redis.close();
      }
    }, 90_000);
  }
});
