/**
 * A reply whose node dies (SIGKILL) mid-stream, resumed on another node: once the dead node's
 * lease has run out (10 s), every resume following it ends with a coded error in its own
 * protocol's shape (SSE `{error, code}`, `/ai` `chat:error`, `/` `ai:error`) instead of hanging,
 * and the log ends with that error, so a later resume (an EventSource reconnecting) ends at once.
 */
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { postChat } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';
import { client, closeAllClients, type AiClient, type DefaultClient } from '../socket/socket-harness.js';

/** Settles with `work`'s value, or rejects naming `what` after `ms`. */
function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

const lastFrame = (raw: string) => raw.trimEnd().split('\n\n').at(-1)!;
const INTERRUPTED = { code: 'INTERNAL', error: expect.stringMatching(/interrupted/) as unknown };

describe('resuming a reply whose node died', () => {
  let redis: RedisServerHandle;
  let a: GatewayProcess;
  let b: TestGateway;
  let user: Account;
  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      REDIS_KEY_PREFIX: `dead${Date.now()}`,
      MEMORY_ENABLED: 'false',
      DEFAULT_MODEL: 'local',
      LOCAL_MODEL_TOKEN_DELAY_MS: '200',
      JWT_SECRET: TEST_JWT_SECRET,
    };
    a = await spawnGateway(env);
    b = await startGateway({ ...env, DATA_DIR: a.dataDir });
    user = await register(a.url, `dead-${Date.now()}@example.com`);
  });
  afterAll(async () => {
    closeAllClients();
    await a?.close().catch(() => undefined);
    await b?.close();
    await redis?.close();
  });

  it('SSE and Socket.IO resumes end with a coded error once the lease runs out, and later resumes end at once', async () => {
    const sessionId = `dead-${Date.now()}`;
    // The local model echoes the message: 100+ tokens, 200 ms apart, far longer than this test.
    const res = await postChat(a.url, { message: 'word '.repeat(80), sessionId, maxTokens: 400 }, bearer(user));
    const reader = res.body!.getReader();
    let raw = '';
    while ((raw.match(/\n\n/g) ?? []).length < 4) raw += new TextDecoder().decode((await reader.read()).value);
    const lastId = [...raw.matchAll(/^id: (.+)$/gm)].map((m) => m[1]!).at(-1)!;
    process.kill(a.pid, 'SIGKILL');
    const killed = performance.now();

    const headers = { ...bearer(user), 'Last-Event-ID': lastId };
    const sse = fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers }).then(async (r) => ({ status: r.status, body: await r.text() }));
    const tab = client<AiClient>(`${b.url}/ai`, { auth: { token: user.token }, transports: ['websocket'] });
    const root = client<DefaultClient>(b.url, { auth: { token: user.token }, transports: ['websocket'] });
    await Promise.all([once(tab as never, 'connect'), once(root as never, 'connect')]);
    const tabEnded = new Promise<unknown>((resolve) => {
      tab.once('chat:error', resolve);
      tab.once('chat:end', resolve);
    });
    const rootEnded = new Promise<unknown>((resolve) => {
      root.once('ai:error', resolve);
      root.once('ai:complete', resolve);
    });
    tab.emit('chat:resume', { conversationId: sessionId });
    root.emit('ai:resume', { sessionId });

    // The lease (10 s) runs out, then the lock must stay missing for half a lease: about 15 s.
    const resumed = await within(sse, 25_000, 'SSE resume');
    expect(resumed.status).toBe(200);
    expect(JSON.parse(lastFrame(resumed.body).replace(/^id: .*\n/, '').replace(/^data: /, ''))).toMatchObject({ ...INTERRUPTED, sessionId });
    expect(performance.now() - killed).toBeGreaterThan(5_000);
    expect(await within(tabEnded, 3_000, 'chat:resume')).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/interrupted/) });
    expect(await within(rootEnded, 3_000, 'ai:resume')).toMatchObject(INTERRUPTED);

    // The log now ends with that error: an EventSource that reconnects gets it at once.
    const again = performance.now();
    const replay = await within(
      fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers }).then((r) => r.text()),
      3_000,
      'second SSE resume',
    );
    expect(performance.now() - again).toBeLessThan(1_500);
    expect(lastFrame(replay)).toBe(lastFrame(resumed.body));
  }, 45_000);
});
