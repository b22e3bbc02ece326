/**
 * A Redis that accepts connections and commands but answers nothing (its process frozen with
 * SIGSTOP: the kernel still accepts and buffers): turn starts (SSE and Socket.IO), stops,
 * resumes and /readyz each answer within a bound instead of waiting on it, and after one such
 * wait the node stops asking (turns start at once); it decides alone meanwhile, and once Redis
 * answers again no lock taken late is left behind and resuming works again.
 */
import { once } from 'node:events';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';
import { client, closeAllClients, type AiClient } from '../socket/socket-harness.js';

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

async function readyz(url: string): Promise<{ status: string; checks: Record<string, { status: string }> }> {
  return (await fetch(`${url}/readyz`)).json() as Promise<{ status: string; checks: Record<string, { status: string }> }>;
}

describe('a Redis that stops answering', () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  const prefix = `stall${Date.now()}`;
  beforeAll(async () => {
    redis = await startRedisServer();
    // A small command queue, so the frozen Redis fills it: what no longer fits fails at once, and nothing escapes.
    gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: prefix, MEMORY_ENABLED: 'false', REDIS_QUEUE_MAX: '50' });
  });
  afterAll(async () => {
    redis?.thaw();
    await gw?.destroy();
    await redis?.close();
  });

  it('holds no turn start, stop, resume or readiness check, and leaves no lock behind', async () => {
    const account = await register(gw.url, 'stall@example.com');
    const headers = bearer(account);
    const tab = client<AiClient>(`${gw.url}/ai`, { auth: { token: account.token }, transports: ['websocket'] });
    await once(tab as never, 'connect');
    expect((await readyz(gw.url)).checks.redis?.status).toBe('ok');

    let socketDeltas = 0;
    redis.freeze();
    try {
      // A turn starts and streams to its end: the rate limiter (2 s) and the turn lock (1 s) give up on Redis.
      const turn = await timed(async () => readSse(await postChat(gw.url, { message: 'are you there?', sessionId: 'frozen', maxTokens: 6 }, headers)));
      expect(turn.value.at(-1)).toMatchObject({ done: true });
      expect(turn.ms).toBeLessThan(5_000);
      // Having given up once, neither asks Redis again for a while: the next turns start at once.
      for (const sessionId of ['frozen-2', 'frozen-3']) {
        const next = await timed(async () => readSse(await postChat(gw.url, { message: 'still there?', sessionId, maxTokens: 6 }, headers)));
        expect(next.value.at(-1)).toMatchObject({ done: true });
        expect(next.ms).toBeLessThan(1_000);
      }

      // A stop and a resume answer within the command bound: nothing running that Redis could tell of, nothing to resume.
      const stop = await timed(() => fetch(`${gw.url}/api/v2/conversations/frozen/stop`, { method: 'POST', headers }));
      expect(stop.value.status).toBe(200);
      expect(await stop.value.json()).toEqual({ stopped: false, id: 'frozen' });
      expect(stop.ms).toBeLessThan(2_500);
      const resume = await timed(() => fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=frozen`, { headers }));
      expect(resume.value.status).toBe(204);
      expect(resume.ms).toBeLessThan(2_500);

      // A Socket.IO turn streams too, longer than the adapter's queue (its room broadcasts go out
      // locally), and chat:resume answers NOT_FOUND in time.
      const socketTurn = await timed(async () => {
        let text = '';
        tab.on('chat:message', (m) => {
          text += m.content;
          socketDeltas++;
        });
        const end = new Promise<{ conversationId: string }>((resolve) => tab.once('chat:end', resolve));
        tab.emit('chat:start', { message: 'and over a socket? '.repeat(20), maxTokens: 200 });
        return { end: await end, text };
      });
      expect(socketTurn.value.text.length).toBeGreaterThan(0);
      expect(socketTurn.ms).toBeLessThan(5_000);
      const resumed = await timed(() => {
        const answer = new Promise<{ code: string }>((resolve) => tab.once('chat:error', resolve));
        tab.emit('chat:resume', { conversationId: socketTurn.value.end.conversationId });
        return answer;
      });
      expect(resumed.value).toMatchObject({ code: 'NOT_FOUND' });
      expect(resumed.ms).toBeLessThan(2_500);

      // Readiness says so, within its own bound.
      const ready = await timed(() => readyz(gw.url));
      expect(ready.value.status).toBe('degraded');
      expect(ready.value.checks.redis?.status).toBe('down');
      expect(ready.ms).toBeLessThan(3_500); // the rate limiter's ping gives up after 2 s, every check after 3 s
    } finally {
      redis.thaw();
    }

    await waitFor(async () => (await readyz(gw.url)).checks.redis?.status === 'ok', 10_000, 50);
    // The lock the frozen Redis took after the node gave up on it is given back.
    const probe = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    await probe.connect();
    try {
      // The room broadcasts that fitted in the adapter's queue went out once Redis answered; the rest failed at once.
      expect(await probe.xLen(`${prefix}:socket.io`)).toBeLessThanOrEqual(50);
      expect(socketDeltas).toBeGreaterThan(50);
      await waitFor(async () => (await probe.keys(`${prefix}:lock:*`)).length === 0, 5_000, 50);
      // Cluster-wide rules hold again: a new turn is recorded and resumable from the start.
      const whole = await (await postChat(gw.url, { message: 'and now?', sessionId: 'thawed', maxTokens: 6 }, headers)).text();
      expect(whole).toContain('"done":true');
      const replay = await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=thawed`, { headers });
      expect(replay.status).toBe(200);
      expect(await replay.text()).toBe(whole);
    } finally {
      probe.destroy();
      closeAllClients();
    }
  }, 30_000);
});
