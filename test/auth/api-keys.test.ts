import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Logger } from '../../src/logger.js';
import { createNodeServer } from '../../src/node/server.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { upgradeStatus } from '../helpers/realtime-upgrade.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { EventLog, TRANSPORTS, client, closeAllClients, connected, connectError, type AiClient, type DefaultClient, type LooseClient } from '../socket/socket-harness.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

/**
 * Gateway API keys end to end: created, listed and revoked at /api/v2/keys by a signed-in
 * user; accepted as a token on every entry point (HTTP, both Socket.IO namespaces,
 * /v1/realtime with each of its token sources) as their user, within their model allow-list
 * and their own rate limit; refused everywhere the moment they are revoked, with their open
 * sockets and realtime sessions cut; stored only as a hash.
 */

const REALTIME_KEY = 'sk-realtime-provider-for-the-keys-suite';
const PASSWORD = 'correct horse battery';
const KEY_FORMAT = /^gk_[A-Za-z0-9_-]{43}$/;
const INVALID = 'Authentication error : Invalid token';
const NAMESPACES = ['/', '/ai'] as const;
const NO_LIMITS = { JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_AUTH: '100000', RATE_LIMIT_ACCOUNT: '100000', RATE_LIMIT_USER: '100000', RATE_LIMIT_ANON: '100000' };

type Json = Record<string, unknown>;
interface CreatedKey {
  id: string;
  name: string;
  prefix: string;
  models: string[] | null;
  rateLimitPerMinute: number | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  key: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const nsUrl = (base: string, nsp: string) => (nsp === '/' ? base : `${base}${nsp}`);
const json = async (res: Response) => (await res.json()) as Json;

function keysApi(base: string) {
  const call = (method: string, path: string, auth: Record<string, string>, body?: unknown) =>
    fetch(`${base}/api/v2/keys${path}`, {
      method,
      headers: { ...auth, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  return {
    call,
    async create(owner: { token: string }, body: Json = { name: 'a tool' }): Promise<CreatedKey> {
      const res = await call('POST', '', bearer(owner), body);
      if (res.status !== 201) throw new Error(`create key: ${res.status} ${await res.text()}`);
      return (await res.json()) as CreatedKey;
    },
    async list(owner: { token: string }): Promise<Json[]> {
      const res = await call('GET', '', bearer(owner));
      expect(res.status).toBe(200);
      return ((await res.json()) as { keys: Json[] }).keys;
    },
    revoke: (owner: { token: string }, id: string) => call('DELETE', `/${id}`, bearer(owner)),
  };
}

/** An SSE chat turn; returns its last event. */
async function chat(base: string, auth: Record<string, string>, body: Json): Promise<{ status: number; last: Json | undefined; body: Json | undefined }> {
  const res = await postChat(base, body, auth);
  if (res.status !== 200) return { status: res.status, last: undefined, body: await json(res) };
  return { status: 200, last: (await readSse(res)).at(-1), body: undefined };
}

/** "401 UNAUTHORIZED Invalid token" for a refusal, "200" for a served request (its body read to the end). */
async function outcome(res: Response): Promise<string> {
  if (res.status === 200) {
    await res.arrayBuffer();
    return '200';
  }
  const body = (await res.json().catch(() => ({}))) as Json;
  const error = String(body.error);
  return `${res.status} ${String(body.code)} ${error.startsWith('Invalid token') ? 'Invalid token' : error}`;
}

/** /v1/realtime with each token source a key may come in. */
async function realtimeProbe(gw: TestGateway, token: string): Promise<Record<string, number>> {
  return {
    'Bearer header': await upgradeStatus(gw, { headers: { Authorization: `Bearer ${token}` } }),
    '?token= query': await upgradeStatus(gw, { query: `?token=${encodeURIComponent(token)}` }),
    'openai-insecure-api-key subprotocol': await upgradeStatus(gw, { protocols: ['realtime', `openai-insecure-api-key.${token}`] }),
  };
}

/** An open /v1/realtime session: its frames as they come, and how it closed. */
async function realtimeSession(gw: TestGateway, token: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, ['realtime', `openai-insecure-api-key.${token}`]);
  const frames: Json[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as Json));
  ws.on('close', (code, reason) => (closed = { code, reason: reason.toString() }));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, frames, closed: () => closed };
}

/** Socket.IO handshakes with the key, both namespaces, both transports, header and auth.token: "connected" or the connect_error message. */
async function handshakeProbe(base: string, token: string): Promise<Record<string, string>> {
  const sources: Record<string, Json> = { 'auth.token': { auth: { token } }, 'Authorization header': { extraHeaders: { authorization: `Bearer ${token}` } } };
  const cases = TRANSPORTS.flatMap((transport) => NAMESPACES.flatMap((nsp) => Object.keys(sources).map((source) => ({ transport, nsp, source }))));
  const results = await Promise.all(
    cases.map(async ({ transport, nsp, source }) => {
      const socket = client<LooseClient>(nsUrl(base, nsp), { transports: [transport], ...sources[source] });
      try {
        await connected(socket, 5000);
        return [`${nsp} ${transport} ${source}`, 'connected'] as const;
      } catch (err) {
        return [`${nsp} ${transport} ${source}`, (err as Error).message] as const;
      } finally {
        socket.close();
      }
    }),
  );
  return Object.fromEntries(results);
}

const expectAll = <T>(labels: Record<string, unknown>, value: T): Record<string, T> => Object.fromEntries(Object.keys(labels).map((k) => [k, value]));

describe('gateway API keys', () => {
  let standin: RealtimeStandin;
  let gw: TestGateway;
  /** Another node on the same data directory that checks the store on every use. */
  let peer: TestGateway;
  let alice: Account;
  let bob: Account;
  let api: ReturnType<typeof keysApi>;

  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: REALTIME_KEY });
    const realtime = { REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: REALTIME_KEY, REALTIME_URL: standin.url, REALTIME_MAX_SESSIONS_PER_CLIENT: '50' };
    gw = await startGateway({ ...NO_LIMITS, ...realtime });
    peer = await startGateway({ ...NO_LIMITS, ...realtime, DATA_DIR: gw.dataDir, AUTH_SESSION_CACHE_MS: '0' });
    api = keysApi(gw.url);
    [alice, bob] = await Promise.all([register(gw.url, 'alice-keys@example.com'), register(gw.url, 'bob-keys@example.com')]);
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await peer.close();
    await gw.destroy();
    await standin.close();
  });

  describe('managing keys', () => {
    it('creates a key shown once, lists it without the secret, and revokes it', async () => {
      const res = await api.call('POST', '', bearer(alice), { name: ' CI bot ', models: ['local', 'gpt-4o-mini', 'local'], rateLimitPerMinute: 30, expiresInDays: 90 });
      expect(res.status).toBe(201);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const created = (await res.json()) as CreatedKey;
      expect(created).toEqual({
        id: expect.any(String),
        name: 'CI bot',
        prefix: created.key.slice(0, 11),
        models: ['local', 'gpt-4o-mini'],
        rateLimitPerMinute: 30,
        createdAt: expect.any(String),
        expiresAt: expect.any(String),
        lastUsedAt: null,
        key: expect.stringMatching(KEY_FORMAT),
      });
      expect(Date.parse(created.expiresAt!) - Date.parse(created.createdAt)).toBe(90 * 86_400_000);

      const listed = await api.list(alice);
      const { key: secret, ...metadata } = created;
      expect(listed).toContainEqual(metadata);
      expect(JSON.stringify(listed)).not.toContain(secret);
      expect(JSON.stringify(listed)).not.toContain(sha256(secret));
      // Only the owner's keys are listed.
      expect((await api.list(bob)).map((k) => k.id)).not.toContain(created.id);

      // Someone else's id is not found, and the key lives on.
      const foreign = await api.revoke(bob, created.id);
      expect(foreign.status).toBe(404);
      expect(await json(foreign)).toEqual({ code: 'NOT_FOUND', error: 'API key not found' });
      expect((await fetch(`${gw.url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${secret}` } })).status).toBe(200);

      const revoked = await api.revoke(alice, created.id);
      expect(revoked.status).toBe(200);
      expect(await json(revoked)).toEqual({ deleted: true, id: created.id });
      expect((await api.list(alice)).map((k) => k.id)).not.toContain(created.id);
      expect((await api.revoke(alice, created.id)).status).toBe(404);
      expect((await api.revoke(alice, 'x'.repeat(300))).status).toBe(404);
    });

    it('keeps only the SHA-256 of the secret: the stored row and the database files never hold the secret', async () => {
      const created = await api.create(alice, { name: 'stored' });
      const stored = await gw.server.services.store.findApiKeyByHash(sha256(created.key));
      expect(stored).toMatchObject({ id: created.id, userId: alice.user.id, keyHash: sha256(created.key), prefix: created.prefix });
      expect(JSON.stringify(stored)).not.toContain(created.key);
      // The row as SQLite holds it, read by another connection.
      const db = new Database(join(gw.dataDir, 'gateway.sqlite'), { readonly: true });
      const row = db.prepare('SELECT * FROM api_keys WHERE id = ?').get(created.id) as Json;
      db.close();
      expect(row.key_hash).toBe(sha256(created.key));
      expect(Object.values(row).some((v) => typeof v === 'string' && v.includes(created.key.slice(11)))).toBe(false);
      // Nor anywhere in the data directory (database, WAL, memory store).
      for (const file of readdirSync(gw.dataDir)) expect(readFileSync(join(gw.dataDir, file)).includes(created.key.slice(11)), file).toBe(false);
    });

    it('refuses malformed bodies with BAD_REQUEST, before creating anything', async () => {
      const before = (await api.list(alice)).length;
      const bodies: unknown[] = [
        {},
        { name: '' },
        { name: '   ' },
        { name: 'x'.repeat(101) },
        { name: 42 },
        { name: 'x', models: [] },
        { name: 'x', models: 'local' },
        { name: 'x', models: ['gtp-4'] },
        { name: 'x', models: ['no spaces allowed'] },
        { name: 'x', rateLimitPerMinute: 0 },
        { name: 'x', rateLimitPerMinute: 1.5 },
        { name: 'x', rateLimitPerMinute: '10' },
        { name: 'x', expiresInDays: 0 },
        { name: 'x', expiresInDays: 10_000 },
        // A misspelt restriction must not create an unrestricted key.
        { name: 'x', model: ['local'] },
        { name: 'x', rateLimit: 5 },
        [],
        'null',
        '{"name": "x"',
      ];
      for (const body of bodies) {
        const res = await api.call('POST', '', bearer(alice), body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(await json(res), JSON.stringify(body)).toMatchObject({ code: 'BAD_REQUEST' });
      }
      const wrongType = await fetch(`${gw.url}/api/v2/keys`, { method: 'POST', headers: { ...bearer(alice), 'Content-Type': 'text/plain' }, body: '{"name":"x"}' });
      expect(wrongType.status).toBe(400);
      expect((await api.list(alice)).length).toBe(before);
    });

    it('only a signed-in session manages keys: anonymous is 401, an API key 403 (keys, and the account too)', async () => {
      for (const [method, path] of [
        ['POST', ''],
        ['GET', ''],
        ['DELETE', '/some-id'],
      ] as const) {
        const res = await api.call(method, path, {}, method === 'POST' ? { name: 'x' } : undefined);
        expect(res.status, `${method} anonymous`).toBe(401);
        expect(await json(res)).toMatchObject({ code: 'UNAUTHORIZED' });
      }
      const created = await api.create(alice, { name: 'cannot manage' });
      const asKey = { Authorization: `Bearer ${created.key}` };
      const attempts: [string, string, unknown][] = [
        ['POST', '', { name: 'minted by a key' }],
        ['GET', '', undefined],
        ['DELETE', `/${created.id}`, undefined],
      ];
      for (const [method, path, body] of attempts) {
        const res = await api.call(method, path, asKey, body);
        expect(res.status, `${method} with a key`).toBe(403);
        expect(await json(res)).toEqual({ code: 'UNAUTHORIZED', error: 'An API key cannot manage API keys; sign in with your account' });
      }
      // Nor the account: sign out everywhere, change the password, delete it.
      for (const [method, path, body] of [
        ['POST', '/api/v2/auth/logout-all', undefined],
        ['POST', '/api/v2/auth/password', { currentPassword: PASSWORD, newPassword: 'taken over by a key' }],
        ['DELETE', '/api/v2/auth/me', { password: PASSWORD }],
      ] as const) {
        const res = await fetch(`${gw.url}${path}`, { method, headers: { ...asKey, 'Content-Type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
        expect(res.status, path).toBe(403);
        expect(await json(res)).toMatchObject({ code: 'UNAUTHORIZED' });
      }
      // It still is its user: /me answers, and nothing was minted or revoked.
      expect(await json(await fetch(`${gw.url}/api/v2/auth/me`, { headers: asKey }))).toMatchObject({ user: { id: alice.user.id } });
      expect((await api.list(alice)).map((k) => k.name)).not.toContain('minted by a key');
      expect((await api.list(alice)).map((k) => k.id)).toContain(created.id);
      expect((await fetch(`${gw.url}/api/v2/auth/me`, { headers: bearer(alice) })).status).toBe(200);
    });

    it('bounds the keys per user with a coded error, also under concurrent creations', async () => {
      const small = await startGateway({ ...NO_LIMITS, API_KEYS_MAX_PER_USER: '5' });
      try {
        await boundedTo5(small);
      } finally {
        await small.destroy();
      }
    });

    async function boundedTo5(small: TestGateway) {
      const api = keysApi(small.url);
      const carol = await register(small.url, 'carol-keys@example.com');
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => api.call('POST', '', bearer(carol), { name: `k${i}` })));
      expect(results.map((r) => r.status).sort()).toEqual([201, 201, 201, 201, 201, 409, 409, 409]);
      const refused = results.find((r) => r.status === 409)!;
      expect(await json(refused)).toEqual({ code: 'BAD_REQUEST', error: 'You already have 5 API keys, the most allowed; revoke one you no longer use first' });
      const keys = await api.list(carol);
      expect(keys).toHaveLength(5);
      // Revoking one makes room for one.
      expect((await api.revoke(carol, keys[0]!.id as string)).status).toBe(200);
      await api.create(carol, { name: 'room again' });
      expect((await api.call('POST', '', bearer(carol), { name: 'one too many' })).status).toBe(409);
    }
  });

  describe('using a key', () => {
    it('works as its user on SSE chat, the conversation routes and /me', async () => {
      const { key } = await api.create(alice, { name: 'http' });
      const auth = { Authorization: `Bearer ${key}` };
      const turn = await chat(gw.url, auth, { message: 'hello from a tool', sessionId: 'key-http' });
      expect(turn.last).toMatchObject({ done: true, sessionId: 'key-http' });
      // The conversation is the user's: the same conversation the user's own token reaches.
      expect((await messagesOf(gw, 'key-http', alice.user.id)).map((m) => m.content)[0]).toBe('hello from a tool');
      const list = await json(await fetch(`${gw.url}/api/v2/conversations`, { headers: auth }));
      expect((list.conversations as Json[]).map((c) => c.id)).toContain('key-http');
      const mine = await json(await fetch(`${gw.url}/api/v2/conversations/key-http/messages`, { headers: bearer(alice) }));
      expect((mine.messages as Json[]).length).toBe(2);
      const viaKey = await json(await fetch(`${gw.url}/api/v2/conversations/key-http/messages`, { headers: auth }));
      expect(viaKey.messages).toEqual(mine.messages);
      // No anonymous cookie is handed to a key's requests.
      const res = await postChat(gw.url, { message: 'again', sessionId: 'key-http' }, auth);
      expect(res.headers.get('set-cookie')).toBeNull();
      await res.arrayBuffer();
      // Continuing and deleting as the user works.
      expect((await fetch(`${gw.url}/api/v2/conversations/key-http`, { method: 'DELETE', headers: auth })).status).toBe(200);
      expect(await gw.server.services.store.getConversation(alice.user.id, 'key-http')).toBeUndefined();
    });

    it.each(TRANSPORTS)('works on Socket.IO handshakes of both namespaces and their chat events (%s)', async (transport) => {
      const { key } = await api.create(alice, { name: `socket ${transport}` });
      const root = client<DefaultClient>(gw.url, { transports: [transport], auth: { token: key } });
      const ai = client<AiClient>(`${gw.url}/ai`, { transports: [transport], extraHeaders: { authorization: `Bearer ${key}` } });
      const rootLog = new EventLog<DefaultServerToClientEvents>(root);
      const aiLog = new EventLog<AiServerToClientEvents>(ai);
      await Promise.all([connected(root), connected(ai)]);
      root.emit('ai:chat', { message: 'seed 002 via key', sessionId: `key-002-${transport}` });
      expect(await rootLog.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:complete' });
      root.emit('ai-message', { chatId: `key-001-${transport}`, content: 'seed 001 via key' });
      expect(await rootLog.next('ai-response')).toMatchObject({ chat: `key-001-${transport}` });
      ai.emit('chat:start', { message: 'seed 003 via key', conversationId: `key-003-${transport}` });
      expect(await aiLog.first(['chat:end', 'chat:error'])).toMatchObject({ name: 'chat:end' });
      for (const id of [`key-002-${transport}`, `key-001-${transport}`, `key-003-${transport}`]) {
        expect(await gw.server.services.store.getConversation(alice.user.id, id), id).toBeDefined();
      }
      // Seed 002's per-message token may be a key too, on an anonymous socket.
      const anon = client<DefaultClient>(gw.url, { transports: [transport] });
      const anonLog = new EventLog<DefaultServerToClientEvents>(anon);
      await connected(anon);
      anon.emit('ai:chat', { message: 'per-message key', token: key, sessionId: `key-anon-${transport}` });
      expect(await anonLog.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:complete' });
      expect(await gw.server.services.store.getConversation(alice.user.id, `key-anon-${transport}`)).toBeDefined();
    });

    it('works on /v1/realtime with every token source, and the session relays the provider', async () => {
      const { key } = await api.create(alice, { name: 'voice' });
      const probe = await realtimeProbe(gw, key);
      expect(probe).toEqual(expectAll(probe, 101));
      const session = await realtimeSession(gw, key);
      await waitFor(() => session.frames.some((f) => f.type === 'session.created'), 3000);
      session.ws.close();
      // The session's usage is the key's user's.
      await waitFor(async () => (await gw.server.services.store.listRealtimeSessions(alice.user.id, { limit: 50 })).items.length > 0, 3000);
    });

    it('an unknown, malformed or expired key is refused everywhere with the same coded answer', async () => {
      const expired = `gk_${'E'.repeat(43)}`;
      await gw.server.services.store.createApiKey(
        { id: 'expired-key', userId: alice.user.id, name: 'old', prefix: expired.slice(0, 11), keyHash: sha256(expired), models: null, rateLimitPerMinute: null, createdAt: 1, expiresAt: Date.now() - 1000, lastUsedAt: null },
        50,
      );
      const refusals = new Set<string>();
      for (const token of [`gk_${'u'.repeat(43)}`, 'gk_short', `gk_${'x'.repeat(44)}`, expired]) {
        const res = await fetch(`${gw.url}/api/v2/conversations`, { headers: { Authorization: `Bearer ${token}` } });
        expect(res.status).toBe(401);
        refusals.add(JSON.stringify(await json(res)));
        const handshakes = await handshakeProbe(gw.url, token);
        expect(handshakes).toEqual(expectAll(handshakes, INVALID));
        const realtime = await realtimeProbe(gw, token);
        expect(realtime).toEqual(expectAll(realtime, 401));
      }
      expect([...refusals].map((r) => JSON.parse(r) as Json)).toEqual([{ code: 'UNAUTHORIZED', error: 'Invalid token: API key not recognised (revoked, expired or mistyped)' }]);
    });

    it('records when a key was last used, at most once a minute and never on the request path', async () => {
      const created = await api.create(alice, { name: 'usage' });
      const store = gw.server.services.store;
      const touch = store.touchApiKey.bind(store);
      let touches = 0;
      store.touchApiKey = async (id, at) => {
        if (id === created.id) touches++;
        return touch(id, at);
      };
      try {
        for (let i = 0; i < 5; i++) expect((await fetch(`${gw.url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${created.key}` } })).status).toBe(200);
        const listed = await waitFor(async () => (await api.list(alice)).find((k) => k.id === created.id && k.lastUsedAt !== null), 3000);
        expect(Date.parse(listed.lastUsedAt as string)).toBeGreaterThanOrEqual(Date.parse(created.createdAt));
        expect(touches).toBe(1);
      } finally {
        store.touchApiKey = touch;
      }
    });
  });

  describe("a key reaches its user's conversations and nobody else's", () => {
    it("user A's key cannot read, delete or continue user B's conversation; continuing starts A's own", async () => {
      expect((await chat(gw.url, bearer(bob), { message: 'bob private', sessionId: 'bobs-secret' })).last).toMatchObject({ done: true });
      const { key } = await api.create(alice, { name: 'nosy' });
      const auth = { Authorization: `Bearer ${key}` };
      for (const [method, path] of [
        ['GET', '/api/v2/conversations/bobs-secret/messages'],
        ['DELETE', '/api/v2/conversations/bobs-secret'],
        ['PATCH', '/api/v2/conversations/bobs-secret'],
      ] as const) {
        const res = await fetch(`${gw.url}${path}`, { method, headers: { ...auth, 'Content-Type': 'application/json' }, ...(method === 'PATCH' ? { body: '{"title":"mine now"}' } : {}) });
        expect(await outcome(res), `${method} ${path}`).toBe('404 NOT_FOUND Conversation not found');
      }
      const list = await json(await fetch(`${gw.url}/api/v2/conversations`, { headers: auth }));
      expect((list.conversations as Json[]).map((c) => c.id)).not.toContain('bobs-secret');

      // Continuing the id over SSE and /ai starts alice's own conversation; bob's is untouched.
      const turn = await chat(gw.url, auth, { message: 'what did bob say?', sessionId: 'bobs-secret' });
      expect(turn.last).toMatchObject({ done: true });
      expect(JSON.stringify(turn)).not.toContain('bob private');
      const ai = client<AiClient>(`${gw.url}/ai`, { auth: { token: key } });
      const aiLog = new EventLog<AiServerToClientEvents>(ai);
      await connected(ai);
      ai.emit('chat:start', { message: 'and now?', conversationId: 'bobs-secret' });
      const end = await aiLog.first(['chat:end', 'chat:error']);
      expect(end).toMatchObject({ name: 'chat:end' });
      expect(JSON.stringify(aiLog.events)).not.toContain('bob private');
      expect((await messagesOf(gw, 'bobs-secret', bob.user.id)).map((m) => m.role)).toEqual(['user', 'assistant']);
      expect((await messagesOf(gw, 'bobs-secret', alice.user.id)).map((m) => m.content).filter((c) => c.includes('bob private'))).toEqual([]);
      expect((await messagesOf(gw, 'bobs-secret', alice.user.id)).length).toBe(4);
    });
  });

  describe("a key's own limits", () => {
    it('a model outside its allow-list answers INVALID_MODEL on every protocol, as ALLOWED_MODELS does', async () => {
      // This server has no provider: every name is served by the local model, which a list naming only gpt-4o-mini does not allow.
      const { key } = await api.create(alice, { name: 'mini only', models: ['gpt-4o-mini'] });
      const auth = { Authorization: `Bearer ${key}` };
      for (const model of ['gpt-4o-mini', 'openai:gpt-4o-mini']) {
        expect((await chat(gw.url, auth, { message: 'allowed', model })).last, model).toMatchObject({ done: true });
      }
      for (const model of [undefined, 'local', 'gpt-4o', 'gemini-2.5-flash']) {
        const refused = await chat(gw.url, auth, { message: 'refused', ...(model ? { model } : {}) });
        expect(refused.status, String(model)).toBe(400);
        expect(refused.body, String(model)).toEqual({ code: 'INVALID_MODEL', error: `Model "${model ?? 'local'}" is not allowed for this API key; it may use gpt-4o-mini` });
      }
      const ai = client<AiClient>(`${gw.url}/ai`, { auth: { token: key } });
      const aiLog = new EventLog<AiServerToClientEvents>(ai);
      await connected(ai);
      ai.emit('chat:start', { message: 'refused', model: 'local', conversationId: 'never-created' });
      expect(await aiLog.first(['chat:end', 'chat:error'])).toMatchObject({ name: 'chat:error', payload: { code: 'INVALID_MODEL' } });
      expect(await gw.server.services.store.getConversation(alice.user.id, 'never-created')).toBeUndefined();

      // A realtime session runs on the server's realtime model, which the list must name too.
      const voiceless = await realtimeSession(gw, key);
      await waitFor(() => voiceless.closed(), 3000);
      expect(voiceless.frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'INVALID_MODEL' } });
      const { key: voiceKey } = await api.create(alice, { name: 'voice only', models: ['gpt-realtime'] });
      const voice = await realtimeSession(gw, voiceKey);
      await waitFor(() => voice.frames.some((f) => f.type === 'session.created'), 3000);
      voice.ws.close();
      // The same names pass when the key has no list.
      const { key: open } = await api.create(bob, { name: 'any model' });
      expect((await chat(gw.url, { Authorization: `Bearer ${open}` }, { message: 'anything', model: 'local' })).last).toMatchObject({ done: true });
    });

    it("its own per-minute limit answers RATE_LIMIT (429 with Retry-After) without spending the user's budget", async () => {
      const dave = await register(gw.url, 'dave-keys@example.com');
      const { key, id } = await api.create(dave, { name: 'slow tool', rateLimitPerMinute: 2 });
      const auth = { Authorization: `Bearer ${key}` };
      for (let i = 0; i < 2; i++) expect((await chat(gw.url, auth, { message: `turn ${i}` })).last).toMatchObject({ done: true });
      const res = await postChat(gw.url, { message: 'one too many' }, auth);
      expect(res.status).toBe(429);
      const retryAfter = Number(res.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(res.headers.get('ratelimit-limit')).toBe('2');
      expect(await json(res)).toEqual({ code: 'RATE_LIMIT', error: expect.stringMatching(/^Too many requests for this API key \(2 a minute\); retry in \d+ s$/) });
      // Socket.IO and realtime count against it too.
      const root = client<DefaultClient>(gw.url, { auth: { token: key } });
      const rootLog = new EventLog<DefaultServerToClientEvents>(root);
      await connected(root);
      root.emit('ai:chat', { message: 'socket too' });
      expect(await rootLog.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:error', payload: { code: 'RATE_LIMIT' } });
      const voice = await realtimeSession(gw, key);
      await waitFor(() => voice.closed(), 3000);
      expect(voice.frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'RATE_LIMIT' } });
      // The user's own token and another key of the user are not limited by it.
      expect((await chat(gw.url, bearer(dave), { message: 'me myself' })).last).toMatchObject({ done: true });
      const { key: other } = await api.create(dave, { name: 'fast tool' });
      expect((await chat(gw.url, { Authorization: `Bearer ${other}` }, { message: 'other key' })).last).toMatchObject({ done: true });
      expect(id).toEqual(expect.any(String));
    });
  });

  describe('revocation', () => {
    it('a revoked key is refused everywhere on the very next request, and its open sockets and realtime sessions are cut', async () => {
      const { key, id } = await api.create(alice, { name: 'about to go' });
      const auth = { Authorization: `Bearer ${key}` };
      // Used (and so cached as good) on both nodes just before.
      expect(await outcome(await fetch(`${gw.url}/api/v2/conversations`, { headers: auth }))).toBe('200');
      expect(await outcome(await fetch(`${peer.url}/api/v2/conversations`, { headers: auth }))).toBe('200');
      const sockets = TRANSPORTS.flatMap((transport) =>
        NAMESPACES.map((nsp) => {
          const entry = { label: `${nsp} ${transport}`, socket: client<LooseClient>(nsUrl(gw.url, nsp), { transports: [transport], auth: { token: key } }), reason: undefined as string | undefined };
          entry.socket.on('disconnect', (reason: string) => (entry.reason = reason));
          return entry;
        }),
      );
      await Promise.all(sockets.map((s) => connected(s.socket)));
      // A socket of the same user signed in with a session, and a realtime session of that session: not cut.
      const sessionSocket = client<AiClient>(`${gw.url}/ai`, { auth: { token: alice.token } });
      await connected(sessionSocket);
      const voice = await realtimeSession(gw, key);
      await waitFor(() => voice.frames.some((f) => f.type === 'session.created'), 3000);
      const upstream = standin.connections.at(-1)!;
      const sessionVoice = await realtimeSession(gw, alice.token);
      await waitFor(() => sessionVoice.frames.some((f) => f.type === 'session.created'), 3000);

      expect((await api.revoke(alice, id)).status).toBe(200);

      const reasons = Object.fromEntries(sockets.map((s) => [s.label, s.reason]));
      await waitFor(() => sockets.every((s) => s.reason !== undefined), 3000).catch(() => undefined);
      expect(Object.fromEntries(sockets.map((s) => [s.label, s.reason]))).toEqual(expectAll(reasons, 'io server disconnect'));
      await waitFor(() => voice.closed(), 3000);
      expect(voice.closed()).toEqual({ code: 1008, reason: 'UNAUTHORIZED' });
      expect(voice.frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'UNAUTHORIZED' } });
      await standin.waitForClose(upstream.id, 3000);
      expect(sessionSocket.connected).toBe(true);
      expect(sessionVoice.closed()).toBeUndefined();
      sessionVoice.ws.close();

      // HTTP on this node (which had cached the key) and on the peer.
      for (const node of [gw, peer]) {
        const outcomes = {
          chat: await outcome(await postChat(node.url, { message: 'after', sessionId: 'after-revoke' }, auth)),
          conversations: await outcome(await fetch(`${node.url}/api/v2/conversations`, { headers: auth })),
          me: await outcome(await fetch(`${node.url}/api/v2/auth/me`, { headers: auth })),
        };
        expect(outcomes, node === gw ? 'this node' : 'peer').toEqual(expectAll(outcomes, '401 UNAUTHORIZED Invalid token'));
      }
      expect(await gw.server.services.store.getConversation(alice.user.id, 'after-revoke')).toBeUndefined();
      const handshakes = await handshakeProbe(gw.url, key);
      expect(handshakes).toEqual(expectAll(handshakes, INVALID));
      const realtime = await realtimeProbe(gw, key);
      expect(realtime).toEqual(expectAll(realtime, 401));
      // A socket opened on the peer before (not told of the revocation) has its next chat event refused.
      const { key: peerKey, id: peerId } = await api.create(alice, { name: 'peer socket' });
      const onPeer = client<DefaultClient>(peer.url, { auth: { token: peerKey } });
      const peerLog = new EventLog<DefaultServerToClientEvents>(onPeer);
      await connected(onPeer);
      expect((await api.revoke(alice, peerId)).status).toBe(200);
      onPeer.emit('ai:chat', { message: 'after', sessionId: 'peer-after-revoke' });
      expect(await peerLog.first(['ai:complete', 'ai:error'])).toEqual({ name: 'ai:error', payload: { code: 'UNAUTHORIZED', error: expect.stringMatching(/^Invalid token/) } });
      // The user's own token works on.
      expect(await outcome(await fetch(`${gw.url}/api/v2/conversations`, { headers: bearer(alice) }))).toBe('200');
    });

    it('keys are tokens too: signing out everywhere and a password change revoke them (their sockets too), and they die with the account', async () => {
      const erin = await register(gw.url, 'erin-keys@example.com');
      const usable = async (key: string) => outcome(await fetch(`${gw.url}/api/v2/conversations`, { headers: { Authorization: `Bearer ${key}` } }));
      // A key made with a session (perhaps a stolen one) ends when its owner signs out everywhere.
      const first = (await api.create(erin, { name: 'first' })).key;
      const socket = client<LooseClient>(`${gw.url}/ai`, { auth: { token: first } });
      let reason: string | undefined;
      socket.on('disconnect', (r: string) => (reason = r));
      await connected(socket);
      const signedOut = await fetch(`${gw.url}/api/v2/auth/logout-all`, { method: 'POST', headers: bearer(erin) });
      expect(signedOut.status).toBe(200);
      expect(await signedOut.json()).toMatchObject({ ok: true, sessions: 1, apiKeys: 1 });
      expect(await usable(first)).toBe('401 UNAUTHORIZED Invalid token');
      await waitFor(() => reason, 3000);
      expect(reason).toBe('io server disconnect');

      // And when the password changes.
      const relogin = await fetch(`${gw.url}/api/v2/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email: 'erin-keys@example.com', password: PASSWORD }) });
      const session = (await relogin.json()) as { token: string };
      const second = (await api.create(session, { name: 'second' })).key;
      expect(await usable(second)).toBe('200');
      const changed = await fetch(`${gw.url}/api/v2/auth/password`, {
        method: 'POST',
        headers: { ...bearer(session), 'Content-Type': 'application/json' },
        body: JSON.stringify({ currentPassword: PASSWORD, newPassword: 'another long password' }),
      });
      expect(changed.status).toBe(200);
      const fresh = (await changed.json()) as { token: string };
      expect(await usable(second)).toBe('401 UNAUTHORIZED Invalid token');

      // And with the account.
      const third = (await api.create(fresh, { name: 'third' })).key;
      expect(await usable(third)).toBe('200');
      const deleted = await fetch(`${gw.url}/api/v2/auth/me`, { method: 'DELETE', headers: { ...bearer(fresh), 'Content-Type': 'application/json' }, body: JSON.stringify({ password: 'another long password' }) });
      expect(deleted.status).toBe(200);
      expect(await usable(third)).toBe('401 UNAUTHORIZED Invalid token');
      for (const key of [first, second, third]) expect(await gw.server.services.store.findApiKeyByHash(sha256(key))).toBeUndefined();
      expect((await connectError(client<LooseClient>(gw.url, { auth: { token: third } }))).message).toBe(INVALID);
    });

    it('signing out a session also closes its /v1/realtime sessions', async () => {
      const frank = await register(gw.url, 'frank-keys@example.com');
      const voice = await realtimeSession(gw, frank.token);
      await waitFor(() => voice.frames.some((f) => f.type === 'session.created'), 3000);
      expect((await fetch(`${gw.url}/api/v2/auth/logout`, { method: 'POST', headers: bearer(frank) })).status).toBe(200);
      await waitFor(() => voice.closed(), 3000);
      expect(voice.closed()).toEqual({ code: 1008, reason: 'UNAUTHORIZED' });
    });
  });
});

describe('the secret never reaches the logs', () => {
  it('creating, using (HTTP, Socket.IO, /v1/realtime) and revoking a key logs no part of its secret', async () => {
    const records: unknown[] = [];
    const logger: Logger = {
      debug: (obj, msg) => void records.push([obj, msg]),
      info: (obj, msg) => void records.push([obj, msg]),
      warn: (obj, msg) => void records.push([obj, msg]),
      error: (obj, msg) => void records.push([obj, msg]),
      child: () => logger,
    };
    const dataDir = tempDataDir();
    const server = await createNodeServer(loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'debug', SHUTDOWN_GRACE_MS: '500', DATA_DIR: dataDir, JWT_SECRET: TEST_JWT_SECRET }), { logger });
    const { port } = await server.listen();
    const url = `http://127.0.0.1:${port}`;
    try {
      const user = await register(url, 'logged@example.com');
      const api = keysApi(url);
      const created = await api.create(user, { name: 'logged', rateLimitPerMinute: 1 });
      const auth = { Authorization: `Bearer ${created.key}` };
      expect((await chat(url, auth, { message: 'hi' })).last).toMatchObject({ done: true });
      expect((await chat(url, auth, { message: 'over the limit' })).status).toBe(429);
      const socket = client<DefaultClient>(url, { auth: { token: created.key } });
      await connected(socket);
      const gw = { port } as TestGateway;
      await upgradeStatus(gw, { protocols: ['realtime', `openai-insecure-api-key.${created.key}`] });
      expect((await api.revoke(user, created.id)).status).toBe(200);
      await waitFor(() => !socket.connected, 3000);
      expect((await chat(url, auth, { message: 'revoked' })).status).toBe(401);
      await upgradeStatus(gw, { headers: auth });
      expect(records.length).toBeGreaterThan(5);
      const logged = JSON.stringify(records);
      expect(logged).toContain(created.id);
      expect(logged).not.toContain(created.key.slice(11));
      expect(logged).not.toContain(sha256(created.key));
    } finally {
      closeAllClients();
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a key being created while its owner signs out everywhere (a stolen session racing its victim)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_AUTH: '100000', RATE_LIMIT_ACCOUNT: '100000' });
  });
  afterAll(() => gw?.destroy());

  for (const how of ['logout-all', 'password'] as const) {
    it(`is not kept, nor handed out, when its store write lands after ${how}`, async () => {
      const victim = await register(gw.url, `victim-${how}@example.com`);
      const store = gw.server.services.store;
      const original = store.createApiKey.bind(store);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inStore = new Promise<void>((r) => (entered = r));
      // The key's insert is held (any real store takes a moment) until the victim has acted.
      store.createApiKey = (async (...args: Parameters<typeof original>) => {
        entered();
        await gate;
        return original(...args);
      }) as typeof store.createApiKey;
      try {
        const creating = fetch(`${gw.url}/api/v2/keys`, { method: 'POST', headers: { ...bearer(victim), 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'persist' }) });
        await inStore;
        const acted =
          how === 'logout-all'
            ? await fetch(`${gw.url}/api/v2/auth/logout-all`, { method: 'POST', headers: bearer(victim) })
            : await fetch(`${gw.url}/api/v2/auth/password`, { method: 'POST', headers: { ...bearer(victim), 'Content-Type': 'application/json' }, body: JSON.stringify({ currentPassword: PASSWORD, newPassword: 'a brand new password' }) });
        expect(acted.status).toBe(200);
        release();
        const created = await creating;
        expect(created.status).toBe(401);
        expect(await created.json()).toMatchObject({ code: 'UNAUTHORIZED' });
        expect(await store.listApiKeys(victim.user.id)).toEqual([]);
      } finally {
        store.createApiKey = original;
        release();
      }
    });
  }
});
