import { LOOPBACK_OWNER } from '../helpers/conversations.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, login, register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET, badTokens } from '../helpers/tokens.js';
import WebSocket from 'ws';

const json = (res: Response) => res.json() as Promise<Record<string, unknown>>;

describe('accounts, JWT and ownership over HTTP', () => {
  let gw: TestGateway;
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
    [alice, bob] = await Promise.all([register(gw.url, 'alice@example.com', 'alice-password-1', 'Alice'), register(gw.url, 'Bob@Example.com', 'bob-password-22')]);
  });
  afterAll(() => gw.destroy());

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${gw.url}${path}`, { headers });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });

  describe('register and login', () => {
    it('register answers 201 with the user and a token, and sets an httpOnly SameSite cookie', async () => {
      const res = await post('/api/v2/auth/register', { email: ' Carol@Example.com ', password: 'carol-password', name: 'Carol' });
      expect(res.status).toBe(201);
      const body = await json(res);
      expect(body.user).toEqual({ id: expect.any(String), email: 'carol@example.com', name: 'Carol', createdAt: expect.any(String) });
      expect(body).not.toHaveProperty('user.passwordHash');
      expect(JSON.stringify(body)).not.toContain('argon2');
      const cookie = res.headers.get('set-cookie')!;
      expect(cookie).toMatch(new RegExp(`^token=${body.token as string};`));
      expect(cookie).toMatch(/HttpOnly/i);
      expect(cookie).toMatch(/SameSite=Lax/i);
      expect(cookie).toMatch(/Path=\//);
      expect(cookie).not.toMatch(/Secure/);
    });

    it('the password is stored as an argon2id PHC hash', async () => {
      const user = await gw.server.services.store.findUserByEmail('alice@example.com');
      expect(user!.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    });

    it('refuses a duplicate email (any case) with 409 and bad input with 400', async () => {
      const dup = await post('/api/v2/auth/register', { email: 'ALICE@example.com', password: 'whatever-123' });
      expect(dup.status).toBe(409);
      expect(await json(dup)).toMatchObject({ code: 'BAD_REQUEST' });
      for (const body of [{}, { email: 'not-an-email', password: 'long-enough-1' }, { email: 'x@example.com', password: 'short' }, { email: 'x@example.com', password: 42 }]) {
        const res = await post('/api/v2/auth/register', body);
        expect(res.status).toBe(400);
        expect(await json(res)).toMatchObject({ code: 'BAD_REQUEST' });
      }
    });

    it('login answers the user, a token and the cookie', async () => {
      const res = await post('/api/v2/auth/login', { email: 'ALICE@example.com', password: 'alice-password-1' });
      expect(res.status).toBe(200);
      const body = await json(res);
      expect(body.user).toMatchObject({ id: alice.user.id, email: 'alice@example.com' });
      expect(res.headers.get('set-cookie')).toMatch(/^token=ey/);
    });

    it('an unknown email and a wrong password answer exactly the same, in comparable time', async () => {
      const timed = async (email: string) => {
        const t = performance.now();
        const res = await post('/api/v2/auth/login', { email, password: 'not-her-password' });
        return { ms: performance.now() - t, status: res.status, body: await res.text() };
      };
      const wrong: number[] = [];
      const unknown: number[] = [];
      for (let i = 0; i < 3; i++) {
        const a = await timed('alice@example.com');
        const b = await timed(`nobody${i}@example.com`);
        expect([a.status, b.status]).toEqual([401, 401]);
        expect(a.body).toBe(b.body);
        expect(JSON.parse(a.body)).toEqual({ code: 'UNAUTHORIZED', error: 'Invalid email or password' });
        wrong.push(a.ms);
        unknown.push(b.ms);
      }
      // Both paths run the KDF once: their medians are of one order, neither answers fast.
      const median = (xs: number[]) => xs.sort((x, y) => x - y)[1]!;
      // A path that skipped the KDF would answer ~100x faster; the bounds leave room for a noisy machine.
      expect(median(unknown) / median(wrong)).toBeGreaterThan(0.25);
      expect(median(unknown) / median(wrong)).toBeLessThan(4);
      expect(Math.min(...wrong, ...unknown)).toBeGreaterThan(5);
    });

    it('me works with the cookie and with the Bearer header; logout clears the cookie and revokes the token', async () => {
      for (const headers of [{ Cookie: alice.cookie }, bearer(alice)] as Record<string, string>[]) {
        const res = await get('/api/v2/auth/me', headers);
        expect(res.status).toBe(200);
        expect((await json(res)).user).toMatchObject({ id: alice.user.id, email: 'alice@example.com', name: 'Alice' });
      }
      const out = await fetch(`${gw.url}/api/v2/auth/logout`, { method: 'POST', headers: { Cookie: alice.cookie } });
      expect(out.status).toBe(200);
      expect(out.headers.get('set-cookie')).toMatch(/^token=;.*Max-Age=0/i);
      const anon = await get('/api/v2/auth/me');
      expect(anon.status).toBe(401);
      expect(await json(anon)).toMatchObject({ code: 'UNAUTHORIZED' });
      // The token itself is dead too, wherever a copy of it is used.
      expect((await get('/api/v2/auth/me', bearer(alice))).status).toBe(401);
      expect((await postChat(gw.url, { message: 'hi' }, bearer(alice))).status).toBe(401);
      alice = await login(gw.url, 'alice@example.com', 'alice-password-1');
      expect((await get('/api/v2/auth/me', bearer(alice))).status).toBe(200);
    });
  });

  describe('bad tokens are refused on every entry point, never treated as anonymous', () => {
    const entryPoints: [string, (headers: Record<string, string>) => Promise<Response>][] = [
      ['POST /api/v2/ai/chat/stream', (h) => postChat(gw.url, { message: 'hi' }, h)],
      ['GET /api/v2/auth/me', (h) => get('/api/v2/auth/me', h)],
      ['GET /api/v2/conversations', (h) => get('/api/v2/conversations', h)],
      ['GET /api/v2/conversations/:id/messages', (h) => get('/api/v2/conversations/x/messages', h)],
      ['DELETE /api/v2/conversations/:id', (h) => fetch(`${gw.url}/api/v2/conversations/x`, { method: 'DELETE', headers: h })],
    ];
    it('expired, tampered, wrong-key, alg none, no-exp, wrong audience and malformed tokens, as Bearer and as cookie', async () => {
      const tokens = await badTokens(alice.user.id);
      let checked = 0;
      for (const [kind, token] of Object.entries(tokens)) {
        for (const [route, call] of entryPoints) {
          for (const headers of [{ Authorization: `Bearer ${token}` }, { Cookie: `token=${token}` }] as Record<string, string>[]) {
            const res = await call(headers);
            expect(res.status, `${kind} via ${Object.keys(headers)[0]} on ${route}`).toBe(401);
            const body = await json(res);
            expect(body.code).toBe('UNAUTHORIZED');
            expect(String(body.error)).toMatch(/^Invalid token/);
            checked++;
          }
        }
      }
      expect(checked).toBe(Object.keys(tokens).length * entryPoints.length * 2);
    });

    it('a non-Bearer Authorization header is refused too', async () => {
      const res = await postChat(gw.url, { message: 'hi' }, { Authorization: 'Basic YWxpY2U6cHc=' });
      expect(res.status).toBe(401);
    });

    it('the /v1/realtime upgrade refuses a bad token in the query with 401', async () => {
      const tokens = await badTokens(alice.user.id);
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime?token=${tokens.algNone}`);
      const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
      expect(status).toBe(401);
    });

    it('a valid token passes everywhere', async () => {
      expect((await get('/api/v2/auth/me', bearer(alice))).status).toBe(200);
      expect((await postChat(gw.url, { message: 'hi' }, bearer(alice))).status).toBe(200);
    });
  });

  describe('round trip and ownership', () => {
    for (const [how, auth] of [
      ['cookie', (a: Account) => ({ Cookie: a.cookie })],
      ['Bearer header', (a: Account) => bearer(a)],
    ] as const) {
      it(`register, chat, list, read, delete with the ${how}`, async () => {
        const me = await register(gw.url, `round-${how.replace(' ', '-')}@example.com`);
        const h = auth(me);
        const chat = await readSse(await postChat(gw.url, { message: 'first question' }, h));
        const sessionId = chat.at(-1)!.sessionId as string;
        expect(chat.at(-1)).toMatchObject({ done: true });
        await readSse(await postChat(gw.url, { message: 'second question', sessionId }, h));

        const list = await json(await get('/api/v2/conversations', h));
        expect(list.conversations).toEqual([{ id: sessionId, title: 'first question', createdAt: expect.any(String), updatedAt: expect.any(String) }]);

        const page1 = await json(await get(`/api/v2/conversations/${sessionId}/messages?limit=3`, h));
        const page2 = await json(await get(`/api/v2/conversations/${sessionId}/messages?limit=3&cursor=${encodeURIComponent(page1.nextCursor as string)}`, h));
        const messages = [...(page1.messages as { role: string; content: string }[]), ...(page2.messages as { role: string; content: string }[])];
        expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
        expect(messages[2]!.content).toBe('second question');
        expect(page2.nextCursor).toBeNull();
        expect(page2.messages).toEqual([expect.objectContaining({ role: 'assistant', finishReason: 'stop', model: 'local', usage: expect.any(Object) })]);

        const del = await fetch(`${gw.url}/api/v2/conversations/${sessionId}`, { method: 'DELETE', headers: h });
        expect(await json(del)).toEqual({ deleted: true, id: sessionId, messages: 4 });
        expect((await get(`/api/v2/conversations/${sessionId}/messages`, h)).status).toBe(404);
        expect((await json(await get('/api/v2/conversations', h))).conversations).toEqual([]);
      });
    }

    it('user B cannot list, read, continue or delete user A’s conversation, and learns nothing about it', async () => {
      const chat = await readSse(await postChat(gw.url, { message: 'alice secret plans', sessionId: 'alice-private' }, bearer(alice)));
      expect(chat.at(-1)).toMatchObject({ done: true, sessionId: 'alice-private' });

      const list = await json(await get('/api/v2/conversations', bearer(bob)));
      expect(JSON.stringify(list)).not.toContain('alice');

      const read = await get('/api/v2/conversations/alice-private/messages', bearer(bob));
      const readMissing = await get('/api/v2/conversations/never-existed/messages', bearer(bob));
      expect(read.status).toBe(404);
      expect(await read.text()).toBe(await readMissing.text());

      // Continuing the id starts the caller's own conversation, with none of alice's history.
      const cont = await readSse(await postChat(gw.url, { message: 'let me in', sessionId: 'alice-private' }, bearer(bob)));
      expect(cont.at(-1)).toMatchObject({ done: true, sessionId: 'alice-private' });
      expect(contentOf(cont)).toContain('This is the start of the conversation');
      expect(contentOf(cont)).not.toContain('secret');

      const anon = await readSse(await postChat(gw.url, { message: 'let me in', sessionId: 'alice-private' }));
      expect(contentOf(anon)).toContain('This is the start of the conversation');
      expect(contentOf(anon)).not.toContain('secret');
      const bobsOwn = await json(await get('/api/v2/conversations/alice-private/messages', bearer(bob)));
      expect((bobsOwn.messages as { content: string }[]).map((m) => m.content)).toEqual(['let me in', expect.any(String)]);

      // Deleting "alice-private" as bob deletes bob's own conversation of that name, never alice's.
      const del = await fetch(`${gw.url}/api/v2/conversations/alice-private`, { method: 'DELETE', headers: bearer(bob) });
      expect(del.status).toBe(200);
      const delAgain = await fetch(`${gw.url}/api/v2/conversations/alice-private`, { method: 'DELETE', headers: bearer(bob) });
      expect(delAgain.status).toBe(404);

      const stillThere = await json(await get('/api/v2/conversations/alice-private/messages', bearer(alice)));
      expect((stillThere.messages as unknown[]).length).toBe(2);
    });

    it('an identity in the payload is ignored', async () => {
      const res = await postChat(gw.url, { message: 'who am i', userId: alice.user.id, sessionId: 'payload-identity' });
      await readSse(res);
      expect((await gw.server.services.store.getConversation(LOOPBACK_OWNER, 'payload-identity'))!.ownerId).toBe(LOOPBACK_OWNER);
      expect(await gw.server.services.store.getConversation(alice.user.id, 'payload-identity')).toBeUndefined();
    });
  });
});

describe('AUTH_REQUIRED=true', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, AUTH_REQUIRED: 'true' });
  });
  afterAll(() => gw.destroy());

  it('refuses anonymous chat and realtime, serves signed-in users', async () => {
    const res = await postChat(gw.url, { message: 'hi' });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ code: 'UNAUTHORIZED', error: 'Authentication required' });
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`);
    expect(await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0)))).toBe(401);
    const user = await register(gw.url, 'required@example.com');
    const ok = await readSse(await postChat(gw.url, { message: 'hi' }, bearer(user)));
    expect(ok.at(-1)).toMatchObject({ done: true });
  });
});

describe('generated JWT secret', () => {
  it('is created on first start in the data directory (owner-only) and keeps tokens valid across restarts', async () => {
    const { statSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const a = await startGateway();
    const account = await register(a.url, 'persist@example.com');
    const file = join(a.dataDir, 'jwt-secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().length).toBeGreaterThanOrEqual(64);
    await a.close();
    const b = await startGateway({ DATA_DIR: a.dataDir });
    try {
      const me = await fetch(`${b.url}/api/v2/auth/me`, { headers: bearer(account) });
      expect(me.status).toBe(200);
    } finally {
      await b.destroy();
    }
  });
});
