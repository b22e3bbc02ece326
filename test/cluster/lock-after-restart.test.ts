/**
 * A reply's conversation lock when Redis loses it under the reply: Redis restarts (nothing
 * persisted) while the reply streams, or the reply starts while Redis is away or frozen. Once
 * Redis answers again, the reply's lease refresh takes the lock back, so the other node answers
 * BUSY for that conversation and a stop sent there reaches the reply.
 */
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { postChat } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

async function redisStatus(url: string): Promise<string | undefined> {
  return ((await (await fetch(`${url}/readyz`)).json()) as { checks: Record<string, { status: string }> }).checks.redis?.status;
}

/** A long local reply (it echoes the message: 100+ tokens, 200 ms apart) started on `gw`: its reader, once the first bytes came, and whether it has ended. */
async function longReply(gw: TestGateway, user: Account, sessionId: string): Promise<{ ended: () => boolean; rest: Promise<string> }> {
  const res = await postChat(gw.url, { message: 'word '.repeat(80), sessionId, maxTokens: 400 }, bearer(user));
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value);
  let ended = false;
  const rest = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    ended = true;
    return text;
  })();
  return { ended: () => ended, rest };
}

describe('a running reply whose lock Redis lost', { shuffle: false }, () => {
  let port: number;
  let redis: RedisServerHandle;
  let a: TestGateway;
  let b: TestGateway;
  let user: Account;
  const prefix = `relock${Date.now()}`;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedisServer({ port });
    const env = { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_KEY_PREFIX: prefix, MEMORY_ENABLED: 'false', DEFAULT_MODEL: 'local', LOCAL_MODEL_TOKEN_DELAY_MS: '200' };
    a = await startGateway(env);
    b = await startGateway({ ...env, DATA_DIR: a.dataDir });
    user = await register(a.url, `relock-${Date.now()}@example.com`);
  });
  afterAll(async () => {
    redis?.thaw();
    await a?.destroy();
    await b?.close();
    await redis?.close();
  });

  /** Once the lock of `sessionId` is back in Redis (within a refresh, ~3.3 s): B answers BUSY, and a stop from B ends A's reply. */
  async function heldAcrossNodes(sessionId: string, reply: { ended: () => boolean; rest: Promise<string> }): Promise<void> {
    const probe = createClient({ url: `redis://127.0.0.1:${port}` });
    await probe.connect();
    try {
      await waitFor(async () => (await probe.keys(`${prefix}:lock:*${sessionId}`)).length === 1, 6_000, 50);
    } finally {
      probe.destroy();
    }
    expect(reply.ended()).toBe(false);
    const second = await postChat(b.url, { message: 'a second reply at once', sessionId, maxTokens: 3 }, bearer(user));
    const body = await second.text();
    expect(second.status, body).toBe(409);
    expect(JSON.parse(body)).toMatchObject({ code: 'BUSY' });
    const stop = await fetch(`${b.url}/api/v2/conversations/${sessionId}/stop`, { method: 'POST', headers: bearer(user) });
    expect(await stop.json()).toEqual({ stopped: true, id: sessionId });
    // The stop reached A: its reply ends now, not after its 100+ tokens (20 s and more).
    await Promise.race([reply.rest, new Promise((_, reject) => setTimeout(() => reject(new Error('A\'s reply did not stop')), 3_000))]);
  }

  it('a reply streaming while Redis restarts takes its lock back once Redis is up again', async () => {
    const sessionId = `restart-${Date.now()}`;
    const reply = await longReply(a, user, sessionId);
    const before = await postChat(b.url, { message: 'me too', sessionId, maxTokens: 3 }, bearer(user));
    expect(before.status).toBe(409);
    await before.text();

    await redis.kill();
    // A reply started while Redis is away: this node decides alone, and takes the lock once Redis is back.
    const awaySession = `away-${Date.now()}`;
    await waitFor(async () => (await redisStatus(a.url)) === 'down', 5_000, 50);
    const away = await longReply(a, user, awaySession);

    redis = await startRedisServer({ port });
    await waitFor(async () => (await redisStatus(a.url)) === 'ok' && (await redisStatus(b.url)) === 'ok', 10_000, 50);
    await heldAcrossNodes(sessionId, reply);
    await heldAcrossNodes(awaySession, away);
  }, 30_000);

  it('a reply started while Redis was frozen keeps the lock that Redis takes once it answers', async () => {
    const sessionId = `frozen-${Date.now()}`;
    redis.freeze();
    let reply: Awaited<ReturnType<typeof longReply>>;
    try {
      // The lock's SET waits 1 s, then the node decides alone and the reply streams.
      reply = await longReply(a, user, sessionId);
    } finally {
      redis.thaw();
    }
    await heldAcrossNodes(sessionId, reply);
  }, 30_000);
});
