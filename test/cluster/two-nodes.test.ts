/**
 * Two gateway processes (`src/node/main.ts`, as `npm start` runs it) on one real redis-server
 * (and one shared SQLite DATA_DIR, WAL mode, as two processes on one machine share it): rooms,
 * BUSY, stops and resumable streams across nodes, the rate limit across both (counted in that
 * Redis with REDIS_URL alone; and with Upstash, through a stand-in over the same Redis), and a
 * Redis restart that neither process dies of.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/ports.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';
import { startUpstashStandin } from '../standins/upstash-standin.js';
import { client, closeAllClients, connected, type AiClient } from '../socket/socket-harness.js';

/** The raw bytes of an SSE response, and its frames (`id:` and `data:`). */
async function readRaw(res: Response, cutAfterFrames?: number, cut?: AbortController): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (cutAfterFrames !== undefined && text.split('\n\n').length - 1 >= cutAfterFrames) {
      cut!.abort();
      break;
    }
  }
  return text;
}

/** Complete frames only (what a client keeps of a cut stream). */
function completeFrames(raw: string): string {
  return raw.slice(0, raw.lastIndexOf('\n\n') + 2);
}

function lastId(raw: string): string {
  const ids = [...raw.matchAll(/^id: (.+)$/gm)].map((m) => m[1]!);
  return ids.at(-1)!;
}

describe('two nodes on one Redis', () => {
  let redisPort: number;
  let redis: RedisServerHandle;
  let upstash: Awaited<ReturnType<typeof startUpstashStandin>>;
  let openai: Standin;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let env: Record<string, string>;
  let user: Account;
  const dataDir = tempDataDir();

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await startRedisServer({ port: redisPort });
    upstash = await startUpstashStandin({ redisPort, token: 'cluster-token' });
    openai = await startOpenAIStandin();
    env = {
      DATA_DIR: dataDir,
      JWT_SECRET: TEST_JWT_SECRET,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      REDIS_KEY_PREFIX: `t${Date.now()}`,
      RATE_LIMIT_PREFIX: `rl${Date.now()}`,
      RATE_LIMIT_ANON: '5',
      RATE_LIMIT_USER: '1000',
      STREAM_ON_DISCONNECT: 'continue',
      LOCAL_MODEL_TOKEN_DELAY_MS: '15',
      MEMORY_ENABLED: 'false',
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: openai.url,
      DEFAULT_MODEL: 'local',
      SOCKET_TRANSPORTS: 'websocket',
    };
    [a, b] = await Promise.all([spawnGateway(env), spawnGateway(env)]);
    user = await register(a.url, `cluster-${Date.now()}@example.com`);
  });

  afterAll(async () => {
    closeAllClients();
    await a?.close();
    await b?.close();
    await openai?.close();
    await upstash?.close();
    await redis?.kill();
  });

  const aiClient = (gw: GatewayProcess) => client<AiClient>(`${gw.url}/ai`, { auth: { token: user.token }, transports: ['websocket'] });

  it('a reply streaming on node A reaches the same user\'s tab on node B, live', async () => {
    const tabA = aiClient(a);
    const tabB = aiClient(b);
    await Promise.all([connected(tabA, 10_000), connected(tabB, 10_000)]);
    let onB = '';
    let firstOnBAt = 0;
    const endOnB = new Promise<{ conversationId: string }>((resolve) => tabB.on('chat:end', resolve));
    tabB.on('chat:message', (m) => {
      firstOnBAt ||= performance.now();
      onB += m.content;
    });
    let onA = '';
    tabA.on('chat:message', (m) => (onA += m.content));
    const endOnA = new Promise<{ conversationId: string; messageId: string }>((resolve) => tabA.on('chat:end', resolve));
    tabA.emit('chat:start', { message: 'tell me about two tabs', maxTokens: 40 });
    const [endA, endB] = await Promise.all([endOnA, endOnB]);
    expect(endB.conversationId).toBe(endA.conversationId);
    expect(onB).toBe(onA);
    expect(onA.length).toBeGreaterThan(0);
    // Live: B saw the first chunk before A's turn ended.
    expect(firstOnBAt).toBeGreaterThan(0);
  });

  it('BUSY is decided across nodes, and a stop sent to node B stops the turn on node A within 500 ms (upstream closed, partial stored)', async () => {
    openai.setScript(() => ({ tokens: Array.from({ length: 200 }, (_, i) => `w${i} `), delayMs: 50 }));
    const sessionId = `stop-${Date.now()}`;
    const res = await postChat(a.url, { message: 'a long one', sessionId, model: 'gpt-4o-mini' }, bearer(user));
    const reader = res.body!.getReader();
    const firstChunk = new TextDecoder().decode((await reader.read()).value);
    expect(firstChunk).toMatch(/"content":"w0 /);

    const busy = await postChat(b.url, { message: 'me too', sessionId }, bearer(user));
    expect(busy.status).toBe(409);
    expect(await busy.json()).toMatchObject({ code: 'BUSY' });

    const aborted = openai.waitForAbort(2_000);
    const started = performance.now();
    const stop = await fetch(`${b.url}/api/v2/conversations/${sessionId}/stop`, { method: 'POST', headers: bearer(user) });
    expect(await stop.json()).toEqual({ stopped: true, id: sessionId });
    await aborted;
    expect(performance.now() - started).toBeLessThan(500);
    while (!(await reader.read()).done);
    const stored = await waitFor(async () => {
      const reply = (await messagesOf(a, sessionId, user.user.id)).find((m) => m.role === 'assistant');
      return reply?.finishReason === 'stopped' ? reply : undefined;
    });
    expect(stored.content).toMatch(/^w0 /);
    // Someone else's conversation: NOT_FOUND; nothing running: stopped false.
    const other = await register(b.url, `other-${Date.now()}@example.com`);
    expect((await fetch(`${b.url}/api/v2/conversations/${sessionId}/stop`, { method: 'POST', headers: bearer(other) })).status).toBe(404);
    expect(await (await fetch(`${a.url}/api/v2/conversations/${sessionId}/stop`, { method: 'POST', headers: bearer(user) })).json()).toEqual({ stopped: false, id: sessionId });
    // The lock is gone: the conversation takes a new turn on B.
    const next = await postChat(b.url, { message: 'again', sessionId, maxTokens: 5 }, bearer(user));
    expect(next.status).toBe(200);
    await next.text();
  });

  it('an SSE client cut mid-reply resumes on the other node with no gap and no duplicate', async () => {
    const sessionId = `resume-${Date.now()}`;
    const cut = new AbortController();
    const res = await postChat(a.url, { message: 'resume this reply please, it is long enough', sessionId, maxTokens: 60 }, bearer(user), cut.signal);
    const partial = completeFrames(await readRaw(res, 5, cut));
    expect(partial).toMatch(/^id: [a-z0-9]+-\d+\ndata: /);
    const resumed = await fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { ...bearer(user), 'Last-Event-ID': lastId(partial) } });
    expect(resumed.status).toBe(200);
    expect(resumed.headers.get('content-type')).toMatch(/text\/event-stream/);
    const rest = await resumed.text();
    // The whole turn, from its start, once it has ended: the uncut bytes.
    const whole = await (await fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: bearer(user) })).text();
    expect(partial + rest).toBe(whole);
    const events = await readSse(new Response(whole));
    expect(events.at(-1)).toMatchObject({ done: true, finishReason: expect.stringMatching(/stop|length/) });
    const stored = (await messagesOf(b, sessionId, user.user.id)).find((m) => m.role === 'assistant')!;
    expect(contentOf(events)).toBe(stored.content);
    // Another owner resumes nothing.
    const stranger = await register(a.url, `stranger-${Date.now()}@example.com`);
    expect((await fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: bearer(stranger) })).status).toBe(204);
  });

  it('past STREAM_RESUME_REDIS_READERS a resumed stream polls the shared connection: same bytes', async () => {
    const polling = await spawnGateway({ ...env, STREAM_RESUME_REDIS_READERS: '0' });
    try {
      const sessionId = `resume-poll-${Date.now()}`;
      const cut = new AbortController();
      const res = await postChat(a.url, { message: 'resume this reply by polling, it is long enough', sessionId, maxTokens: 60 }, bearer(user), cut.signal);
      const partial = completeFrames(await readRaw(res, 5, cut));
      const rest = await (await fetch(`${polling.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { ...bearer(user), 'Last-Event-ID': lastId(partial) } })).text();
      const whole = await (await fetch(`${polling.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: bearer(user) })).text();
      expect(partial + rest).toBe(whole);
      expect((await readSse(new Response(whole))).at(-1)).toMatchObject({ done: true });
    } finally {
      await polling.close();
    }
  });

  it('a Socket.IO client that left resumes on the other node with chat:resume; the reply whose only client left is complete in the store', async () => {
    const first = aiClient(a);
    await connected(first, 10_000);
    let conversationId = '';
    const gotSome = new Promise<void>((resolve) => first.once('chat:message', () => resolve()));
    first.once('chat:conversation', (c) => (conversationId = c.conversationId));
    first.emit('chat:start', { message: 'a reply to resume over sockets', maxTokens: 60 });
    await gotSome;
    first.close(); // the only client of this turn is gone (STREAM_ON_DISCONNECT=continue)

    const second = aiClient(b);
    await connected(second, 10_000);
    let text = '';
    second.on('chat:message', (m) => {
      if (m.conversationId === undefined) text += m.content;
    });
    // This socket is also in its user's room, so node A's turn reaches it live too (chat:message
    // with a conversationId, not counted above, and chat:end): that live chat:end can come before
    // the replay's last delta. The replay's own chat:end comes after all of its text.
    const ends: { text: string; messageId: string }[] = [];
    second.on('chat:end', (e) => ends.push({ text, messageId: e.messageId }));
    second.emit('chat:resume', { conversationId });
    const stored = await waitFor(async () => (await messagesOf(a, conversationId, user.user.id)).find((m) => m.role === 'assistant'));
    expect(stored.finishReason).toMatch(/stop|length/);
    const replayEnd = await waitFor(() => ends.find((e) => e.text === stored.content), 10_000);
    expect(replayEnd.messageId).toBe(stored.id);
    expect(ends.every((e) => e.messageId === stored.id)).toBe(true);
    expect(text).toBe(stored.content);

    const nothing = new Promise<{ code: string }>((resolve) => second.once('chat:error', resolve));
    second.emit('chat:resume', { conversationId: 'never-streamed' });
    expect(await nothing).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('the AI SDK resume route answers 204 when nothing streams, and the running reply otherwise', async () => {
    const id = `sdk-${Date.now()}`;
    expect((await fetch(`${b.url}/api/chat/${id}/stream`, { headers: bearer(user) })).status).toBe(204);
    const res = await fetch(`${a.url}/api/chat`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(user) },
      body: JSON.stringify({ id, messages: [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 'resume me in the sdk' }] }], maxTokens: 30 }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const resumed = await fetch(`${b.url}/api/chat/${id}/stream`, { headers: bearer(user) });
    expect(resumed.status).toBe(200);
    const body = await resumed.text();
    expect(body).toMatch(/"type":"start"/);
    expect(body).toMatch(/"type":"finish"/);
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    while (!(await reader.read()).done);
    expect((await fetch(`${b.url}/api/chat/${id}/stream`, { headers: bearer(user) })).status).toBe(204);
  });

  it("an anonymous conversation begun from the IP on node A moves to the browser's cookie with its turn on node B; a cookie-less client then has its own", async () => {
    // From an address of its own: the anonymous quota of 127.0.0.1 is the next test's.
    const turn = (gw: GatewayProcess, message: string, cookie?: string) =>
      new Promise<{ cookie: string | undefined; body: string; status: number }>((resolve, reject) => {
        const payload = JSON.stringify({ message, sessionId: 'cluster-nat', maxTokens: 100 });
        const req = http.request(
          `${gw.url}/api/v2/ai/chat/stream`,
          {
            method: 'POST',
            localAddress: '127.0.0.5',
            agent: false,
            headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...(cookie ? { Cookie: cookie } : {}) },
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: textOfSse(body), cookie: res.headers['set-cookie']?.map((c) => c.split(';')[0]!).find((c) => c.startsWith('anon_session=')) }));
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    const textOfSse = (raw: string) =>
      raw
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => (JSON.parse(l.slice(6)) as { content?: string }).content ?? '')
        .join('');
    const first = await turn(a, 'begun without a cookie');
    expect(first.status).toBe(200);
    const cookie = first.cookie!;
    expect(cookie).toBeDefined();
    // Node A frees the conversation's slot once the first reply is stored, a moment after its
    // stream ended: until then node B answers BUSY (409), which a client retries.
    let second = await turn(b, 'SECRET once the cookie is there', cookie);
    for (let i = 0; i < 40 && second.status === 409; i++) {
      await new Promise((r) => setTimeout(r, 50));
      second = await turn(b, 'SECRET once the cookie is there', cookie);
    }
    expect(second.status).toBe(200);
    expect(second.body).toContain('2 earlier messages');
    const cookieless = await turn(a, 'what was said?');
    expect(cookieless.status).toBe(200);
    expect(cookieless.body).toContain('This is the start of the conversation');
    expect(cookieless.body).not.toContain('SECRET');
  });

  it('the rate limit is exact across both nodes, counted in Redis with REDIS_URL alone', async () => {
    for (const gw of [a, b]) {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, { status: string; kind: string }> };
      expect(ready.checks.rateLimiter).toMatchObject({ status: 'ok', kind: 'redis' });
    }
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await postChat(i % 2 ? b.url : a.url, { message: `anon ${i}`, maxTokens: 2 });
      statuses.push(res.status);
      await res.text();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });

  it('with Upstash configured too, Upstash counts, and the limit is exact across both nodes', async () => {
    // In-process nodes: what is under test is which limiter the configuration picks, not the process boundary.
    const withUpstash = { ...env, DATA_DIR: tempDataDir(), UPSTASH_REDIS_REST_URL: upstash.url, UPSTASH_REDIS_REST_TOKEN: 'cluster-token', RATE_LIMIT_PREFIX: `up${Date.now()}` };
    const [c, d] = [await startGateway(withUpstash), await startGateway(withUpstash)];
    try {
      const ready = (await (await fetch(`${c.url}/readyz`)).json()) as { checks: Record<string, { status: string; kind: string }> };
      expect(ready.checks.rateLimiter).toMatchObject({ status: 'ok', kind: 'upstash' });
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await postChat(i % 2 ? d.url : c.url, { message: `anon upstash ${i}`, maxTokens: 2 });
        statuses.push(res.status);
        await res.text();
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    } finally {
      await c.destroy();
      await d.destroy();
    }
  });

  it('Redis restarted mid-stream: no node crashes, the stream finishes, readyz says degraded, then resumes work for turns started after', async () => {
    const sessionId = `restart-${Date.now()}`;
    const res = await postChat(a.url, { message: 'keep streaming while redis restarts', sessionId, maxTokens: 80 }, bearer(user));
    const body = res.text();
    await redis.kill();
    const ready = await waitFor(async () => {
      const r = (await (await fetch(`${b.url}/readyz`)).json()) as { status: string; checks: Record<string, { status: string }> };
      return r.checks.redis?.status === 'down' ? r : undefined;
    }, 10_000);
    expect(ready.status).toBe('degraded');
    const events = await readSse(new Response(await body));
    expect(events.at(-1)).toMatchObject({ done: true });
    // Both nodes still serve their own clients.
    const local = await postChat(b.url, { message: 'no redis', maxTokens: 3 }, bearer(user));
    expect((await readSse(local)).at(-1)).toMatchObject({ done: true });
    a.assertAlive();
    b.assertAlive();

    redis = await startRedisServer({ port: redisPort });
    await waitFor(async () => {
      const [ra, rb] = await Promise.all([a, b].map(async (gw) => ((await (await fetch(`${gw.url}/readyz`)).json()) as { checks: Record<string, { status: string }> }).checks.redis?.status));
      return ra === 'ok' && rb === 'ok';
    }, 15_000, 100);

    const after = `after-${Date.now()}`;
    const cut = new AbortController();
    const partial = completeFrames(await readRaw(await postChat(a.url, { message: 'a turn after the restart, resumed elsewhere', sessionId: after, maxTokens: 60 }, bearer(user), cut.signal), 4, cut));
    const rest = await (await fetch(`${b.url}/api/v2/ai/chat/stream?sessionId=${after}`, { headers: { ...bearer(user), 'Last-Event-ID': lastId(partial) } })).text();
    const whole = await (await fetch(`${a.url}/api/v2/ai/chat/stream?sessionId=${after}`, { headers: bearer(user) })).text();
    expect(partial + rest).toBe(whole);
    expect((await readSse(new Response(whole))).at(-1)).toMatchObject({ done: true });
    // Rooms work again across nodes.
    const tabA = aiClient(a);
    const tabB = aiClient(b);
    await Promise.all([connected(tabA, 10_000), connected(tabB, 10_000)]);
    const seenOnB = new Promise((resolve) => tabB.once('chat:end', resolve));
    tabA.emit('chat:start', { message: 'rooms after restart', maxTokens: 5 });
    await seenOnB;
    // Neither process exited at any point of the restart.
    a.assertAlive();
    b.assertAlive();
    expect([a.alive(), b.alive()]).toEqual([true, true]);
  }, 60_000);
});
