/**
 * A model that hands over many tokens at once (the local model without a delay) has them
 * recorded in Redis as one stream entry per tick: a resume from any event inside such an entry
 * sends exactly the events after it, byte for byte as first sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat } from '../helpers/sse.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

const ids = (raw: string) => [...raw.matchAll(/^id: (.+)$/gm)].map((m) => m[1]!);

describe('resumable streams on Redis, events of one tick in one entry', () => {
  let redis: RedisServerHandle;
  let gw: TestGateway;
  beforeAll(async () => {
    redis = await startRedisServer();
    gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: `batch${Date.now()}`, MEMORY_ENABLED: 'false' });
  });
  afterAll(async () => {
    await gw?.destroy();
    await redis?.close();
  });

  it('resumes from every event of the reply with exactly what followed it', async () => {
    const sessionId = `batched-${Date.now()}`;
    const whole = await (await postChat(gw.url, { message: 'tell me something long enough', sessionId, maxTokens: 24 })).text();
    const frames = whole.split('\n\n').filter(Boolean).map((f) => `${f}\n\n`);
    const frameIds = ids(whole);
    expect(frameIds.length).toBeGreaterThan(10);
    expect(frames).toHaveLength(frameIds.length);
    for (let i = 0; i < frameIds.length; i++) {
      const res = await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { 'Last-Event-ID': frameIds[i]! } });
      const rest = i === frameIds.length - 1 ? '' : frames.slice(i + 1).join('');
      expect(res.status).toBe(rest ? 200 : 204);
      expect(await res.text()).toBe(rest);
    }
    // And from the start, the whole reply.
    expect(await (await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`)).text()).toBe(whole);
  });
});
