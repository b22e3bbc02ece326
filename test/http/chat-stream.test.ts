import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { LOOPBACK_OWNER, conversationOf, messagesOf } from '../helpers/conversations.js';

describe('POST /api/v2/ai/chat/stream (seed 002 SSE)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ MAX_MESSAGE_CHARS: '1000', MAX_BODY_BYTES: '4096' });
  });
  afterAll(() => gw.destroy());

  it('streams content events then done, in the seed 002 wire format', async () => {
    const res = await postChat(gw.url, { message: 'Hello' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const raw = await res.text();
    // Each event is an `id:` line (PROTOCOLS.md 3b: resumable) and one `data: {json}` line, then a blank line.
    expect(raw).toMatch(/^id: [a-z0-9]+-\d+\ndata: \{"content":"[^"]*","sessionId":"[0-9a-f-]{36}"\}\n\n/);
    const frames = raw.split('\n\n').filter(Boolean);
    expect(frames.every((f) => /^id: [a-z0-9]+-\d+\ndata: [^\n]+$/.test(f))).toBe(true);
    const ids = frames.map((f) => Number(/^id: [a-z0-9]+-(\d+)/.exec(f)![1]));
    expect(ids.every((id, i) => i === 0 || id === ids[i - 1]! + 1)).toBe(true);
    const events = frames.map((f) => JSON.parse(f.slice(f.indexOf('\ndata: ') + '\ndata: '.length)) as Record<string, unknown>);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ done: true, finishReason: 'stop' });
    const sessionId = last.sessionId as string;
    expect(events.slice(0, -1).every((e) => e.sessionId === sessionId && typeof e.content === 'string')).toBe(true);
    expect(events.length).toBeGreaterThan(5);
    expect(contentOf(events)).toContain('You said: "Hello"');
    expect(contentOf(events)).toContain('offline development model');
  });

  it('continues the conversation named by sessionId and stores both sides', async () => {
    const first = await readSse(await postChat(gw.url, { message: 'My name is Ada' }));
    const sessionId = first.at(-1)!.sessionId as string;
    const second = await readSse(await postChat(gw.url, { message: 'What is my name?', sessionId }));
    expect(second.at(-1)).toMatchObject({ done: true, sessionId });
    expect(contentOf(second)).toContain('2 earlier messages');

    const items = await messagesOf(gw, sessionId);
    expect(items.map((m) => [m.role, m.finishReason ?? null])).toEqual([
      ['user', null],
      ['assistant', 'stop'],
      ['user', null],
      ['assistant', 'stop'],
    ]);
    expect(items[0]!.content).toBe('My name is Ada');
    expect(items[3]!.content).toBe(contentOf(second));
    expect(items[3]!.usage?.outputTokens).toBeGreaterThan(0);
  });

  it('accepts a client-chosen sessionId and creates the conversation', async () => {
    const events = await readSse(await postChat(gw.url, { message: 'hi', sessionId: 'my-session_1' }));
    expect(events.at(-1)).toMatchObject({ done: true, sessionId: 'my-session_1' });
    expect(await conversationOf(gw, 'my-session_1')).toMatchObject({ title: 'hi', ownerId: LOOPBACK_OWNER });
  });

  it('honours maxTokens with finishReason length', async () => {
    const events = await readSse(await postChat(gw.url, { message: 'Hello', maxTokens: 3 }));
    expect(events.filter((e) => 'content' in e)).toHaveLength(3);
    expect(events.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
  });

  describe('bad input answers 400 JSON with a code before any stream', () => {
    const cases: [string, string | object, number, RegExp][] = [
      ['empty object', {}, 400, /message is required/],
      ['non-JSON', 'not json', 400, /not valid JSON/],
      ['JSON that is not an object', '[1,2]', 400, /expected object/i],
      ['message of the wrong type', { message: 42 }, 400, /message must be a string/],
      ['empty message', { message: '   ' }, 400, /must not be empty/],
      ['message over the size cap', { message: 'x'.repeat(1001) }, 400, /at most 1000 characters/],
      ['bad sessionId', { message: 'hi', sessionId: '../etc/passwd' }, 400, /sessionId/],
      ['temperature of the wrong type', { message: 'hi', temperature: 'hot' }, 400, /temperature/],
      ['body over the byte cap', { message: 'x'.repeat(5000) }, 413, /exceeds 4096 bytes/],
    ];
    for (const [name, body, status, message] of cases) {
      it(name, async () => {
        const res = await postChat(gw.url, body);
        expect(res.status).toBe(status);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const json = (await res.json()) as { error: string; code: string };
        expect(json.code).toBe('BAD_REQUEST');
        expect(json.error).toMatch(message);
      });
    }

    it('a wrong content type', async () => {
      const res = await fetch(`${gw.url}/api/v2/ai/chat/stream`, { method: 'POST', body: '{"message":"hi"}', headers: { 'Content-Type': 'text/plain' } });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'BAD_REQUEST' });
    });

    it('a malformed model name answers INVALID_MODEL', async () => {
      const res = await postChat(gw.url, { message: 'hi', model: 'no spaces allowed' });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'INVALID_MODEL' });
    });

    it('with no provider configured, any model name (seed 003 asks for gpt-4) is answered by the local model, reported as local', async () => {
      for (const model of ['gpt-4', 'claude-3']) {
        const events = await readSse(await postChat(gw.url, { message: 'hi', model }));
        expect(contentOf(events)).toContain(`answering in place of "${model}"`);
        const sessionId = events.at(-1)!.sessionId as string;
        expect((await messagesOf(gw, sessionId)).at(-1)).toMatchObject({ role: 'assistant', model: 'local' });
      }
    });

    it('nothing was stored for refused requests and the server is still up', async () => {
      const res = await fetch(`${gw.url}/healthz`);
      expect(await res.json()).toEqual({ status: 'ok' });
    });
  });

  it('a client that disconnects mid-stream aborts the model call and the partial reply is stored as aborted', async () => {
    const slow = await startGateway({ LOCAL_MODEL_TOKEN_DELAY_MS: '30' });
    try {
      const controller = new AbortController();
      const res = await postChat(slow.url, { message: 'Hello', sessionId: 'abort-me' }, {}, controller.signal);
      const reader = res.body!.getReader();
      await reader.read();
      await reader.read();
      controller.abort();
      const reply = await waitFor(async () => {
        const items = await messagesOf(slow, 'abort-me');
        return items.find((m) => m.role === 'assistant');
      });
      expect(reply.finishReason).toBe('aborted');
      expect(reply.content.length).toBeGreaterThan(0);
      expect(reply.content.length).toBeLessThan(200);
      expect(slow.server.services.turns.active).toBe(0);
    } finally {
      await slow.destroy();
    }
  });

  it('ALLOWED_MODELS refuses models outside the list', async () => {
    const strict = await startGateway({ ALLOWED_MODELS: 'local', OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', DEFAULT_MODEL: 'local' });
    try {
      const res = await postChat(strict.url, { message: 'hi', model: 'gpt-4o-mini' });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'INVALID_MODEL', error: 'Model "gpt-4o-mini" is not allowed on this server' });
      // With a provider configured, a name no provider serves is refused rather than faked.
      const unknown = await postChat(strict.url, { message: 'hi', model: 'gemini-2.5-pro' });
      expect(await unknown.json()).toMatchObject({ code: 'INVALID_MODEL' });
      const ok = await readSse(await postChat(strict.url, { message: 'hi', model: 'local' }));
      expect(ok.at(-1)).toMatchObject({ done: true });
    } finally {
      await strict.destroy();
    }
  });

  it('conversations survive a restart', async () => {
    const dataDir = tempDataDir();
    const a = await startGateway({ DATA_DIR: dataDir });
    const first = await readSse(await postChat(a.url, { message: 'remember me' }));
    const sessionId = first.at(-1)!.sessionId as string;
    await a.close();

    const b = await startGateway({ DATA_DIR: dataDir });
    try {
      const second = await readSse(await postChat(b.url, { message: 'still there?', sessionId }));
      expect(second.at(-1)).toMatchObject({ done: true, sessionId });
      expect(contentOf(second)).toContain('2 earlier messages');
      const items = await messagesOf(b, sessionId);
      expect(items.map((m) => m.content.slice(0, 11))).toEqual(['remember me', 'This is the', 'still there', 'This is the']);
    } finally {
      await b.destroy();
    }
  });
});

describe('health routes', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw.destroy());

  it('healthz and readyz answer, unknown routes answer NOT_FOUND JSON', async () => {
    expect(await (await fetch(`${gw.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { store: { status: 'ok', kind: 'sqlite', ms: expect.any(Number) }, rateLimiter: { status: 'ok', kind: 'memory', ms: expect.any(Number) } },
      memory: { status: 'ok', store: 'sqlite', embedder: 'local:local-hash-v1' },
      providers: ['local'],
      defaultModel: 'local',
    });
    const missing = await fetch(`${gw.url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('the SSE head carries what a JSON response does: request id, CORS, security headers, rate limits, the anonymous cookie', async () => {
    const headersOf = (res: Response) => Object.fromEntries([...res.headers].filter(([k]) => !['date', 'content-length', 'content-type', 'keep-alive', 'connection', 'transfer-encoding', 'cache-control', 'x-accel-buffering', 'set-cookie'].includes(k) && !k.startsWith('ratelimit-')));
    const origin = { Origin: 'http://localhost:5173', 'X-Request-Id': 'client-chosen-id-1' };
    const sse = await postChat(gw.url, { message: 'hi' }, origin);
    await sse.text();
    const json = await fetch(`${gw.url}/api/v2/conversations`, { headers: origin });
    await json.arrayBuffer();
    expect(sse.headers.get('x-request-id')).toBe('client-chosen-id-1');
    expect(headersOf(sse)).toEqual(headersOf(json));
    expect(headersOf(sse)).toMatchObject({
      'access-control-allow-origin': 'http://localhost:5173',
      'access-control-allow-credentials': 'true',
      'x-content-type-options': 'nosniff',
      vary: 'Origin',
    });
    expect(sse.headers.get('ratelimit-limit')).toMatch(/^\d+$/);
    expect(sse.headers.get('cache-control')).toBe('no-cache');
    expect(sse.headers.get('x-accel-buffering')).toBe('no');
    expect(sse.headers.getSetCookie()).toEqual([expect.stringMatching(/^anon_session=[\w-]{22}\.[\w-]{43}; Max-Age=31536000; Path=\/; HttpOnly; SameSite=Lax$/)]);
    // Nothing internal leaks, and an unsafe request id is replaced.
    expect([...sse.headers.keys()].filter((k) => k.includes('hono'))).toEqual([]);
    const fresh = await postChat(gw.url, { message: 'hi' }, { 'X-Request-Id': 'bad id\u00e9' });
    await fresh.text();
    expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('CORS answers configured origins with credentials and ignores others', async () => {
    const ok = await fetch(`${gw.url}/healthz`, { headers: { Origin: 'http://localhost:5173' } });
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    const other = await fetch(`${gw.url}/healthz`, { headers: { Origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});
