import { SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { bearer, login, register, type Account } from '../helpers/accounts.js';
import { LOOPBACK_OWNER } from '../helpers/conversations.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { upgradeStatus } from '../helpers/realtime-upgrade.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import {
  client,
  closeAllClients,
  connected,
  EventLog,
  TRANSPORTS,
  type AiClient,
  type ClientOptions,
  type DefaultClient,
  type LooseClient,
  type Transport,
} from '../socket/socket-harness.js';

/**
 * Revocation end to end: a token whose sign-in session ended (account deleted, logout, sign
 * out everywhere, password change) must be refused on every entry point at once, on the node
 * that revoked it, even though that node had just cached the session as active; its open
 * sockets are cut; and another user's token keeps working.
 */

const INVALID = 'Authentication error : Invalid token';
const PASSWORD = 'correct horse battery';
const NAMESPACES = ['/', '/ai'] as const;
/** How a Socket.IO client carries the token (PROTOCOLS.md section 0). */
const SOURCES: Record<string, (token: string) => ClientOptions> = {
  'auth.token': (token) => ({ auth: { token } }),
  'Authorization header': (token) => ({ extraHeaders: { authorization: `Bearer ${token}` } }),
  'token cookie': (token) => ({ extraHeaders: { cookie: `token=${token}` } }),
};
/** Every limit out of the way: only authentication may refuse anything here. */
const NO_LIMITS = { JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_AUTH: '100000', RATE_LIMIT_ACCOUNT: '100000', RATE_LIMIT_USER: '100000', RATE_LIMIT_ANON: '100000' };

type Json = Record<string, unknown>;
const nsUrl = (base: string, nsp: string) => (nsp === '/' ? base : `${base}${nsp}`);
let probeCounter = 0;

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

/**
 * The HTTP entry points, with the token as Bearer and as cookie. `target` is the conversation
 * read and deleted; without it, the one the chat request of the probe just created.
 * Returns the outcome per entry point and the sessionIds the chat requests used.
 */
async function httpProbe(gw: TestGateway, token: string, target?: string): Promise<{ outcomes: Record<string, string>; chatIds: string[] }> {
  const outcomes: Record<string, string> = {};
  const chatIds: string[] = [];
  for (const [how, headers] of [
    ['Bearer', { Authorization: `Bearer ${token}` }],
    ['cookie', { Cookie: `token=${token}` }],
  ] as const) {
    const sessionId = `probe-${++probeCounter}`;
    chatIds.push(sessionId);
    const id = target ?? sessionId;
    outcomes[`${how} POST /api/v2/ai/chat/stream`] = await outcome(await postChat(gw.url, { message: 'probe', sessionId }, headers));
    outcomes[`${how} GET /api/v2/auth/me`] = await outcome(await fetch(`${gw.url}/api/v2/auth/me`, { headers }));
    outcomes[`${how} GET /api/v2/conversations`] = await outcome(await fetch(`${gw.url}/api/v2/conversations`, { headers }));
    outcomes[`${how} GET /api/v2/conversations/:id/messages`] = await outcome(await fetch(`${gw.url}/api/v2/conversations/${id}/messages`, { headers }));
    outcomes[`${how} DELETE /api/v2/conversations/:id`] = await outcome(await fetch(`${gw.url}/api/v2/conversations/${id}`, { method: 'DELETE', headers }));
  }
  return { outcomes, chatIds };
}

/** Socket.IO handshakes on both namespaces, both transports, the three token sources: "connected" or the connect_error message. */
async function handshakeProbe(base: string, token: string): Promise<Record<string, string>> {
  const cases = TRANSPORTS.flatMap((transport) => NAMESPACES.flatMap((nsp) => Object.keys(SOURCES).map((source) => ({ transport, nsp, source }))));
  const results = await Promise.all(
    cases.map(async ({ transport, nsp, source }) => {
      const label = `${nsp} ${transport} ${source}`;
      const socket = client(nsUrl(base, nsp), { transports: [transport], ...SOURCES[source]!(token) });
      try {
        await connected(socket, 5000);
        return [label, 'connected'] as const;
      } catch (err) {
        return [label, (err as Error).message] as const;
      } finally {
        socket.close();
      }
    }),
  );
  return Object.fromEntries(results);
}

async function realtimeProbe(gw: TestGateway, token: string): Promise<Record<string, number>> {
  return {
    'Bearer header': await upgradeStatus(gw, { headers: { Authorization: `Bearer ${token}` } }),
    '?token= query': await upgradeStatus(gw, { query: `?token=${encodeURIComponent(token)}` }),
    'token cookie': await upgradeStatus(gw, { headers: { Cookie: `token=${token}` } }),
  };
}

const expectAll = <T>(labels: Record<string, unknown>, value: T): Record<string, T> => Object.fromEntries(Object.keys(labels).map((k) => [k, value]));

/** Proves a token is dead on every entry point of `gw`; `victimId` and `ownConversation` check nothing was stored or deleted. */
async function expectDeadEverywhere(gw: TestGateway, token: string, victimId: string, ownConversation: string | undefined, label: string) {
  const { outcomes, chatIds } = await httpProbe(gw, token, ownConversation ?? 'no-such-conversation');
  expect(outcomes, `${label}: HTTP`).toEqual(expectAll(outcomes, '401 UNAUTHORIZED Invalid token'));
  for (const id of chatIds) {
    for (const owner of [victimId, LOOPBACK_OWNER]) expect(await gw.server.services.store.getConversation(owner, id), `${label}: ${id} stored for ${owner}`).toBeUndefined();
  }
  const handshakes = await handshakeProbe(gw.url, token);
  expect(Object.keys(handshakes)).toHaveLength(12);
  expect(handshakes, `${label}: Socket.IO handshakes`).toEqual(expectAll(handshakes, INVALID));
  const realtime = await realtimeProbe(gw, token);
  expect(realtime, `${label}: /v1/realtime upgrades`).toEqual(expectAll(realtime, 401));
}

/** Proves a token works on every entry point (the chat it starts creates a conversation it then reads and deletes). */
async function expectAliveEverywhere(gw: TestGateway, token: string, label: string) {
  const { outcomes } = await httpProbe(gw, token);
  expect(outcomes, `${label}: HTTP`).toEqual(expectAll(outcomes, '200'));
  const handshakes = await handshakeProbe(gw.url, token);
  expect(handshakes, `${label}: Socket.IO handshakes`).toEqual(expectAll(handshakes, 'connected'));
  const realtime = await realtimeProbe(gw, token);
  expect(realtime, `${label}: /v1/realtime upgrades`).toEqual(expectAll(realtime, 101));
}

interface OpenSocket {
  label: string;
  socket: LooseClient;
  /** The disconnect reason once it disconnected. */
  reason: string | undefined;
}

/** Connected sockets on both namespaces, both transports, every token source; each records its disconnect reason. */
async function openSockets(base: string, token: string): Promise<OpenSocket[]> {
  const open: OpenSocket[] = [];
  for (const transport of TRANSPORTS) {
    for (const nsp of NAMESPACES) {
      for (const source of Object.keys(SOURCES)) {
        const entry: OpenSocket = { label: `${nsp} ${transport} ${source}`, socket: client(nsUrl(base, nsp), { transports: [transport], ...SOURCES[source]!(token) }), reason: undefined };
        entry.socket.on('disconnect', (reason: string) => (entry.reason = reason));
        open.push(entry);
      }
    }
  }
  await Promise.all(open.map((o) => connected(o.socket, 5000)));
  return open;
}

const reasons = (open: OpenSocket[]) => Object.fromEntries(open.map((o) => [o.label, o.reason ?? (o.socket.connected ? 'connected' : 'not connected')]));

/** Sockets whose chat events must be refused once the token died while they stayed connected. */
interface EventSockets {
  root: DefaultClient;
  rootLog: EventLog<DefaultServerToClientEvents>;
  ai: AiClient;
  aiLog: EventLog<AiServerToClientEvents>;
}

async function eventSockets(base: string, token: string, transport: Transport): Promise<EventSockets> {
  const root = client<DefaultClient>(base, { transports: [transport], auth: { token } });
  const ai = client<AiClient>(`${base}/ai`, { transports: [transport], extraHeaders: { authorization: `Bearer ${token}` } });
  const sockets = { root, rootLog: new EventLog<DefaultServerToClientEvents>(root), ai, aiLog: new EventLog<AiServerToClientEvents>(ai) };
  await Promise.all([connected(root), connected(ai)]);
  return sockets;
}

/** An anonymous default-namespace socket, for seed 002's per-message `token`. */
async function anonymousSocket(base: string, transport: Transport) {
  const socket = client<DefaultClient>(base, { transports: [transport] });
  const log = new EventLog<DefaultServerToClientEvents>(socket);
  await connected(socket);
  return { socket, log };
}

type Kind = 'account deleted' | 'logout' | 'logout-all from another session' | 'password changed from another session';
const KINDS: Kind[] = ['account deleted', 'logout', 'logout-all from another session', 'password changed from another session'];

describe('a revoked token dies on every entry point at once', () => {
  /** Node A: the default session cache (5 s), so only local invalidation can explain a refusal. */
  let gw: TestGateway;
  /** Node B: the same store, not told of A's revocations; it checks the store on every use (cache 0). */
  let peer: TestGateway;
  let control: Account;

  beforeAll(async () => {
    gw = await startGateway(NO_LIMITS);
    peer = await startGateway({ ...NO_LIMITS, DATA_DIR: gw.dataDir, AUTH_SESSION_CACHE_MS: '0' });
    control = await register(gw.url, 'control@example.com', 'control-password-1');
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await peer.close();
    await gw.destroy();
  });

  const me = (token: string, on = gw) => fetch(`${on.url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
  const post = (path: string, token: string, body?: unknown, method = 'POST') =>
    fetch(`${gw.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it.each(KINDS.map((kind, i) => [kind, TRANSPORTS[i % 2]!] as const))('%s (event sockets over %s)', async (kind, transport) => {
    const slug = kind.split(' ')[0]!.replace(/[^a-z-]/g, '');
    const email = `victim-${slug}@example.com`;
    // Two tabs: tab 1 registered (its token also copied into a second tab), tab 2 signed in separately.
    const tab1 = await register(gw.url, email);
    const tab2 = await login(gw.url, email);
    const victimId = tab1.user.id;
    const own = `own-${slug}`;
    expect((await readSse(await postChat(gw.url, { message: 'mine', sessionId: own }, bearer(tab1)))).at(-1)).toMatchObject({ done: true });

    // Every token works, on both nodes, and node A now holds their sessions as active in its cache.
    for (const token of [tab1.token, tab2.token, control.token]) {
      expect((await me(token)).status).toBe(200);
      expect((await me(token, peer)).status).toBe(200);
    }
    const tab1Sockets = await openSockets(gw.url, tab1.token);
    const tab2Sockets = await openSockets(gw.url, tab2.token);
    const controlSockets = await openSockets(gw.url, control.token);
    // Sockets on node B and an anonymous seed-002 socket on each node: they are not cut by A's revocation.
    const onPeer = await eventSockets(peer.url, tab1.token, transport);
    const anonA = await anonymousSocket(gw.url, transport);
    const anonB = await anonymousSocket(peer.url, transport);
    // Before the revocation each event path serves this token (so the refusals below are the revocation's doing).
    onPeer.root.emit('ai:chat', { message: 'before', sessionId: `${slug}-before-002` });
    expect(await onPeer.rootLog.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:complete' });
    onPeer.ai.emit('chat:start', { message: 'before', conversationId: `${slug}-before-003` });
    expect(await onPeer.aiLog.first(['chat:end', 'chat:error'])).toMatchObject({ name: 'chat:end' });
    onPeer.root.emit('ai-message', { chatId: `${slug}-before-001`, content: 'before' });
    expect(await onPeer.rootLog.next('ai-response')).toMatchObject({ chat: `${slug}-before-001` });
    anonA.socket.emit('ai:chat', { message: 'before', token: tab1.token, sessionId: `${slug}-before-anon` });
    expect(await anonA.log.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:complete' });
    expect(await gw.server.services.store.getConversation(victimId, `${slug}-before-anon`)).toBeDefined();

    // The revocation.
    let dead: string[];
    let survivor: string | undefined;
    switch (kind) {
      case 'account deleted': {
        const res = await post('/api/v2/auth/me', tab2.token, { password: PASSWORD }, 'DELETE');
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ ok: true, deleted: true });
        dead = [tab1.token, tab2.token];
        break;
      }
      case 'logout': {
        const res = await post('/api/v2/auth/logout', tab1.token);
        expect(res.status).toBe(200);
        dead = [tab1.token];
        survivor = tab2.token; // another session of the same user is not signed out
        break;
      }
      case 'logout-all from another session': {
        const res = await post('/api/v2/auth/logout-all', tab2.token);
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ ok: true, sessions: 2, apiKeys: 0 });
        dead = [tab1.token, tab2.token];
        break;
      }
      case 'password changed from another session': {
        const res = await post('/api/v2/auth/password', tab2.token, { currentPassword: PASSWORD, newPassword: 'a brand new password' });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { token: string; user: { id: string } };
        expect(body.user.id).toBe(victimId);
        expect(body.token).not.toBe(tab2.token);
        dead = [tab1.token, tab2.token];
        survivor = body.token;
        break;
      }
    }

    // The revoked sessions' open sockets on this node are cut; the others stay.
    const cut = [...tab1Sockets, ...(dead.includes(tab2.token) ? tab2Sockets : [])];
    const kept = [...controlSockets, ...(dead.includes(tab2.token) ? [] : tab2Sockets)];
    await waitFor(() => cut.every((o) => o.reason !== undefined), 3000).catch(() => undefined);
    expect(reasons(cut)).toEqual(expectAll(reasons(cut), 'io server disconnect'));
    expect(reasons(kept)).toEqual(expectAll(reasons(kept), 'connected'));

    // Dead on every entry point, with each token (tab 1's copy in a second tab is the same string: it dies too).
    for (const token of dead) {
      const which = token === tab1.token ? 'tab 1 token' : 'tab 2 token';
      await expectDeadEverywhere(gw, token, victimId, kind === 'account deleted' ? undefined : own, `${kind}, ${which}`);
    }
    if (kind !== 'account deleted') {
      // The refused DELETEs deleted nothing.
      expect(await gw.server.services.store.getConversation(victimId, own)).toBeDefined();
    }

    // A chat event on a socket whose token died while it stayed connected is refused: node B's
    // sockets (B was not told, so it could not cut them) and anonymous sockets carrying the token per message.
    expect([onPeer.root.connected, onPeer.ai.connected], 'precondition: node B has not cut its sockets').toEqual([true, true]);
    const ids = { s002: `${slug}-dead-002`, s003: `${slug}-dead-003`, s001: `${slug}-dead-001`, anonA: `${slug}-dead-anon-a`, anonB: `${slug}-dead-anon-b` };
    onPeer.root.emit('ai:chat', { message: 'after', sessionId: ids.s002 });
    expect(await onPeer.rootLog.first(['ai:complete', 'ai:error'])).toEqual({ name: 'ai:error', payload: { code: 'UNAUTHORIZED', error: expect.stringMatching(/^Invalid token/) } });
    onPeer.ai.emit('chat:start', { message: 'after', conversationId: ids.s003 });
    expect(await onPeer.aiLog.first(['chat:end', 'chat:error'])).toEqual({ name: 'chat:error', payload: { code: 'UNAUTHORIZED', message: expect.stringMatching(/^Invalid token/) } });
    onPeer.root.emit('ai-message', { chatId: ids.s001, content: 'after' });
    expect(await onPeer.rootLog.next('ai-response')).toEqual({ code: 'UNAUTHORIZED', error: expect.stringMatching(/^Invalid token/) });
    for (const [anon, id] of [
      [anonA, ids.anonA],
      [anonB, ids.anonB],
    ] as const) {
      for (const token of dead) {
        anon.socket.emit('ai:chat', { message: 'after', token, sessionId: id });
        expect(await anon.log.first(['ai:complete', 'ai:error'])).toEqual({ name: 'ai:error', payload: { code: 'UNAUTHORIZED', error: expect.stringMatching(/^Invalid token/) } });
      }
    }
    for (const id of Object.values(ids)) {
      for (const owner of [victimId, LOOPBACK_OWNER]) expect(await gw.server.services.store.getConversation(owner, id), `${id} stored for ${owner}`).toBeUndefined();
    }

    // Another user's token is untouched, and so is the session that survives (logout) or was issued anew (password change).
    await expectAliveEverywhere(gw, control.token, `${kind}: control user`);
    if (survivor) await expectAliveEverywhere(gw, survivor, `${kind}: surviving session`);

    switch (kind) {
      case 'account deleted': {
        expect(await gw.server.services.store.findUserById(victimId)).toBeUndefined();
        for (const id of [own, `${slug}-before-002`, `${slug}-before-003`, `${slug}-before-001`, `${slug}-before-anon`]) {
          expect(await gw.server.services.store.getConversation(victimId, id), `conversation ${id}`).toBeUndefined();
          expect((await gw.server.services.store.listMessages(conversationKey(victimId, id), { limit: 10 })).items).toEqual([]);
        }
        // The email is free again; the new account is a new user, and the old tokens stay dead.
        const again = await register(gw.url, email);
        expect(again.user.id).not.toBe(victimId);
        expect((await me(again.token)).status).toBe(200);
        for (const token of dead) expect((await me(token)).status).toBe(401);
        break;
      }
      case 'password changed from another session': {
        const old = await fetch(`${gw.url}/api/v2/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }) });
        expect(old.status).toBe(401);
        expect((await login(gw.url, email, 'a brand new password')).user.id).toBe(victimId);
        break;
      }
      default:
        // Signing in again gives a working token.
        expect((await me((await login(gw.url, email)).token)).status).toBe(200);
    }
  });

  it('deleting the account needs the right password: a wrong one is 401 and nothing is deleted or revoked', async () => {
    const user = await register(gw.url, 'careful@example.com');
    expect((await readSse(await postChat(gw.url, { message: 'keep me', sessionId: 'careful-keep' }, bearer(user)))).at(-1)).toMatchObject({ done: true });
    const sockets = await openSockets(gw.url, user.token);

    const wrong = await post('/api/v2/auth/me', user.token, { password: 'not the password' }, 'DELETE');
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ code: 'UNAUTHORIZED', error: 'The password is not correct' });
    const missing = await post('/api/v2/auth/me', user.token, {}, 'DELETE');
    expect(missing.status).toBe(400);

    expect(await gw.server.services.store.findUserById(user.user.id)).toBeDefined();
    expect(await gw.server.services.store.getConversation(user.user.id, 'careful-keep')).toBeDefined();
    expect(reasons(sockets)).toEqual(expectAll(reasons(sockets), 'connected'));
    await expectAliveEverywhere(gw, user.token, 'after a wrong deletion password');
    expect((await login(gw.url, 'careful@example.com')).user.id).toBe(user.user.id);
  });

  it('a token issued before sessions existed (no sid claim) is refused everywhere, though its signature, subject and expiry are good', async () => {
    const user = await register(gw.url, 'legacy@example.com');
    const legacy = await new SignJWT({ email: 'legacy@example.com' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.user.id)
      .setIssuer('ai-chat-gateway')
      .setAudience('ai-chat-gateway')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    // The same claims with a live sid are accepted: only the missing sid refuses it.
    const session = await gw.server.services.sessions!.open(user.user.id, 3600);
    const withSid = await new SignJWT({ email: 'legacy@example.com', sid: session.id })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.user.id)
      .setIssuer('ai-chat-gateway')
      .setAudience('ai-chat-gateway')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    expect((await me(withSid)).status).toBe(200);

    await expectDeadEverywhere(gw, legacy, user.user.id, undefined, 'no sid');
    const body = (await (await me(legacy)).json()) as Json;
    expect(body).toEqual({ code: 'UNAUTHORIZED', error: 'Invalid token: token names no sign-in session; sign in again' });
    for (const transport of TRANSPORTS) {
      const anon = await anonymousSocket(gw.url, transport);
      anon.socket.emit('ai:chat', { message: 'legacy', token: legacy, sessionId: `legacy-${transport}` });
      expect(await anon.log.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:error', payload: { code: 'UNAUTHORIZED' } });
      expect(await gw.server.services.store.getConversation(user.user.id, `legacy-${transport}`)).toBeUndefined();
    }
  });
});

describe('deleting an account while its replies stream', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ ...NO_LIMITS, LOCAL_MODEL_TOKEN_DELAY_MS: '20' });
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
  });

  /** A code of the wire contract, and not the one a crash would give. */
  const expectCoded = (code: unknown) => {
    expect(ERROR_CODES).toContain(code);
    expect(code).not.toBe('INTERNAL');
  };

  /** Reads an SSE response as it arrives; `events` fills in as frames complete. */
  function streamSse(res: Response) {
    const events: Json[] = [];
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    const ended = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let at: number;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          for (const line of frame.split('\n')) if (line.startsWith('data: ')) events.push(JSON.parse(line.slice(6)) as Json);
        }
      }
    })();
    return { events, ended };
  }

  it.each(TRANSPORTS)('the running replies end with a coded error event, nothing of the user is left, the server keeps serving (%s)', async (transport) => {
    const user = await register(gw.url, `streaming-${transport}@example.com`);
    const other = await register(gw.url, `bystander-${transport}@example.com`);
    const ids = { sse: `doomed-sse-${transport}`, s002: `doomed-002-${transport}`, s003: `doomed-003-${transport}`, bystander: `bystander-${transport}` };

    // Three replies of the user stream (SSE; seed 002 with a per-message token on an anonymous socket;
    // /ai with the handshake token), and one of another user.
    const sse = streamSse(await postChat(gw.url, { message: 'a long answer please', sessionId: ids.sse }, bearer(user)));
    const anon = await anonymousSocket(gw.url, transport);
    anon.socket.emit('ai:chat', { message: 'a long answer please', sessionId: ids.s002, token: user.token });
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: [transport], auth: { token: user.token } });
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    let aiReason: string | undefined;
    ai.on('disconnect', (reason) => (aiReason = reason));
    await connected(ai);
    ai.emit('chat:start', { message: 'a long answer please', conversationId: ids.s003 });
    const bystander = streamSse(await postChat(gw.url, { message: 'a long answer please', sessionId: ids.bystander }, bearer(other)));

    await waitFor(() => sse.events.length >= 2 && anon.log.all('ai:stream').length >= 2 && aiLog.all('chat:message').length >= 2 && bystander.events.length >= 2, 5000);
    expect(gw.server.services.turns.active).toBe(4);

    const res = await fetch(`${gw.url}/api/v2/auth/me`, {
      method: 'DELETE',
      headers: { ...bearer(user), 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: PASSWORD }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, deleted: true });

    // SSE: the stream ends with a coded error event, no completion.
    await sse.ended;
    const last = sse.events.at(-1)!;
    expect(last).toEqual({ error: expect.any(String), code: expect.any(String), sessionId: ids.sse });
    expectCoded(last.code);
    expect(sse.events.some((e) => e.done === true)).toBe(false);
    // Seed 002 on the anonymous socket: ai:error with a code, no ai:complete.
    const ended = await anon.log.first(['ai:complete', 'ai:error']);
    expect(ended).toEqual({ name: 'ai:error', payload: { error: expect.any(String), code: expect.any(String) } });
    expectCoded((ended.payload as { code: string }).code);
    expect(anon.socket.connected).toBe(true);
    // /ai with the revoked handshake token: the socket is cut (nobody left to tell); no chat:end.
    await waitFor(() => aiReason !== undefined, 3000);
    expect(aiReason).toBe('io server disconnect');
    expect(aiLog.names).not.toContain('chat:end');

    // Nothing of the user is left, and no late write brought a conversation back.
    await waitFor(() => gw.server.services.turns.active <= 1, 3000);
    await new Promise((r) => setTimeout(r, 150));
    expect(await gw.server.services.store.findUserById(user.user.id)).toBeUndefined();
    for (const id of [ids.sse, ids.s002, ids.s003]) {
      expect(await gw.server.services.store.getConversation(user.user.id, id), id).toBeUndefined();
      expect((await gw.server.services.store.listMessages(conversationKey(user.user.id, id), { limit: 10 })).items, id).toEqual([]);
    }

    // The other user's reply was not touched, and the server keeps serving.
    await bystander.ended;
    expect(bystander.events.at(-1)).toMatchObject({ done: true, finishReason: 'stop', sessionId: ids.bystander });
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    anon.socket.emit('ai:chat', { message: 'x', maxTokens: 2 });
    expect(await anon.log.first(['ai:complete', 'ai:error'])).toMatchObject({ name: 'ai:complete' });
    expect((await fetch(`${gw.url}/api/v2/auth/me`, { headers: bearer(other) })).status).toBe(200);
    expect((await fetch(`${gw.url}/api/v2/auth/me`, { headers: bearer(user) })).status).toBe(401);
  });
});
