/**
 * Turn logs in Redis are keyed by (owner, conversation id) and outlive a DELETE of their
 * conversation: once its id is used again, a resume must not reach a turn of the deleted
 * conversation (src/chat/resume-target.ts), while the new conversation's turns, the latest and
 * an earlier one, resume as usual.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

const idsOf = (raw: string) => [...raw.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
const framesOf = (raw: string) => raw.split('\n\n').filter(Boolean).map((f) => `${f}\n\n`);

describe('resume on Redis after the conversation was deleted and its id reused', () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  beforeAll(async () => {
    redis = await startRedisServer();
    gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: `redel${Date.now()}`, JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: 'false' });
  });
  afterAll(async () => {
    await gw?.destroy();
    await redis?.close();
  });

  it('the deleted reply is not replayed, with or without its Last-Event-ID; the new conversation resumes, its earlier turn too', async () => {
    const user = await register(gw.url, 'redis-deleter@example.com');
    const sessionId = 'my-session';
    const resume = (headers: Record<string, string> = {}) => fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { ...bearer(user), ...headers } });
    const old = await (await postChat(gw.url, { message: 'my SECRET-DELETED words', sessionId }, bearer(user))).text();
    expect(contentOf(await readSse(new Response(old)))).toContain('SECRET-DELETED');
    expect(await (await resume()).text()).toBe(old);

    expect((await fetch(`${gw.url}/api/v2/conversations/${sessionId}`, { method: 'DELETE', headers: bearer(user) })).status).toBe(200);
    expect((await resume()).status).toBe(204);

    const fresh = await (await postChat(gw.url, { message: 'a fresh start', sessionId, maxTokens: 6 }, bearer(user))).text();
    for (const oldId of [idsOf(old)[0]!, idsOf(old).at(-2)!]) {
      const res = await resume({ 'Last-Event-ID': oldId });
      expect(res.status).toBe(204);
      expect(await res.text()).toBe('');
    }
    // The new conversation's first turn, whole and from its first event.
    expect(await (await resume()).text()).toBe(fresh);
    expect(await (await resume({ 'Last-Event-ID': idsOf(fresh)[0]! })).text()).toBe(framesOf(fresh).slice(1).join(''));

    // A later turn, and the earlier one named by its Last-Event-ID.
    const later = await (await postChat(gw.url, { message: 'and then', sessionId, maxTokens: 6 }, bearer(user))).text();
    expect(await (await resume()).text()).toBe(later);
    const earlier = await resume({ 'Last-Event-ID': idsOf(fresh)[0]! });
    expect(earlier.status).toBe(200);
    expect(await earlier.text()).toBe(framesOf(fresh).slice(1).join(''));
  });
});
