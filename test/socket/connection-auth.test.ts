import { conversationOf } from '../helpers/conversations.js';
import { SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_JWT_SECRET, badTokens } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import {
  client,
  closeAllClients,
  connected,
  connectError,
  EventLog,
  TRANSPORTS,
  type AiClient,
  type ClientOptions,
  type DefaultClient,
  type Transport,
} from './socket-harness.js';

const INVALID = 'Authentication error : Invalid token';
const MISSING = 'Authentication error : No token provided';
const NAMESPACES = ['/', '/ai'] as const;

/** How a client carries the token (PROTOCOLS.md section 0). */
const SOURCES: Record<string, (token: string) => ClientOptions> = {
  'auth.token': (token) => ({ auth: { token } }),
  'Authorization header': (token) => ({ extraHeaders: { authorization: `Bearer ${token}` } }),
  'token cookie': (token) => ({ extraHeaders: { cookie: `token=${token}` } }),
};

/** Connection middleware, PROTOCOLS.md section 2: bad tokens refuse the connection with the exact messages. */
describe('Socket.IO connection auth', () => {
  let gw: TestGateway;
  let alice: Account;
  let bad: Record<string, string>;

  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
    alice = await register(gw.url, 'alice-auth@example.com');
    bad = await badTokens(alice.user.id);
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
  });

  const url = (nsp: string) => (nsp === '/' ? gw.url : `${gw.url}${nsp}`);

  describe.each(TRANSPORTS)('over %s', (transport: Transport) => {
    describe.each(NAMESPACES)('namespace %s', (nsp) => {
      it.each(Object.keys(SOURCES))(`every bad token via %s is refused with "${INVALID}"`, async (source) => {
        const kinds = Object.keys(bad);
        expect(kinds.length).toBeGreaterThanOrEqual(9);
        const results = await Promise.all(
          kinds.map(async (kind) => {
            const socket = client(url(nsp), { transports: [transport], ...SOURCES[source]!(bad[kind]!) });
            try {
              const err = await connectError(socket);
              return [kind, err.message, socket.connected] as const;
            } finally {
              socket.close();
            }
          }),
        );
        expect(results).toEqual(kinds.map((kind) => [kind, INVALID, false]));
        await waitFor(() => gw.server.gauges.byNamespace[nsp] === 0, 2000);
      });

      it.each(Object.keys(SOURCES))('a valid token via %s connects as that user', async (source) => {
        const socket = client(url(nsp), { transports: [transport], ...SOURCES[source]!(alice.token) });
        await connected(socket);
        expect(socket.connected).toBe(true);
        const server = (await gw.server.io.of(nsp).fetchSockets()).find((s) => s.id === socket.id);
        expect(server?.data).toEqual({ userId: alice.user.id, ip: '127.0.0.1', sessionId: expect.any(String), apiKeyId: null });
        socket.close();
      });

      it('a bad token is not rescued by a good one in a later source (first found wins)', async () => {
        // Authorization header first, then handshake auth.token, then the cookie.
        const socket = client(url(nsp), {
          transports: [transport],
          extraHeaders: { authorization: `Bearer ${bad.expired!}`, cookie: `token=${alice.token}` },
          auth: { token: alice.token },
        });
        expect((await connectError(socket)).message).toBe(INVALID);
        socket.close();
      });

      it('a malformed Authorization header and a non-string auth.token are refused as invalid', async () => {
        for (const options of [{ extraHeaders: { authorization: 'Basic dXNlcjpwYXNz' } }, { auth: { token: 12345 } }] satisfies ClientOptions[]) {
          const socket = client(url(nsp), { transports: [transport], ...options });
          expect((await connectError(socket)).message).toBe(INVALID);
          socket.close();
        }
      });

      it('no token connects anonymously while AUTH_REQUIRED is off', async () => {
        const socket = client(url(nsp), { transports: [transport] });
        await connected(socket);
        const server = (await gw.server.io.of(nsp).fetchSockets()).find((s) => s.id === socket.id);
        expect(server?.data).toEqual({ userId: null, ip: '127.0.0.1', sessionId: null, apiKeyId: null });
        socket.close();
      });
    });
  });

  describe('AUTH_REQUIRED=true', () => {
    let strict: TestGateway;
    let carol: Account;
    beforeAll(async () => {
      strict = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, AUTH_REQUIRED: 'true' });
      carol = await register(strict.url, 'carol-auth@example.com');
    });
    afterAll(async () => {
      closeAllClients();
      await strict.destroy();
    });

    const strictUrl = (nsp: string) => (nsp === '/' ? strict.url : `${strict.url}${nsp}`);

    describe.each(TRANSPORTS)('over %s', (transport) => {
      it.each(NAMESPACES)(`no token on %s is refused with "${MISSING}"`, async (nsp) => {
        const socket = client(strictUrl(nsp), { transports: [transport] });
        const err = await connectError(socket);
        expect(err.message).toBe(MISSING);
        expect(socket.connected).toBe(false);
        socket.close();
        // Refused sockets are never counted (earlier tests' clients may still be closing).
        await waitFor(() => strict.server.gauges.connections === 0, 2000);
      });

      it.each(NAMESPACES)('an empty or null auth.token on %s counts as no token', async (nsp) => {
        for (const token of ['', null]) {
          const socket = client(strictUrl(nsp), { transports: [transport], auth: { token } });
          expect((await connectError(socket)).message).toBe(MISSING);
          socket.close();
        }
      });

      it.each(NAMESPACES)('a bad token on %s is still "Invalid token", not "No token provided"', async (nsp) => {
        const tokens = await badTokens(carol.user.id);
        const socket = client(strictUrl(nsp), { transports: [transport], auth: { token: tokens.algNone! } });
        expect((await connectError(socket)).message).toBe(INVALID);
        socket.close();
      });

      it('a valid token connects and chats on both namespaces', async () => {
        const root = client<DefaultClient>(strict.url, { transports: [transport], extraHeaders: { cookie: carol.cookie } });
        const ai = client<AiClient>(`${strict.url}/ai`, { transports: [transport], auth: { token: carol.token } });
        const rootLog = new EventLog<DefaultServerToClientEvents>(root);
        const aiLog = new EventLog<AiServerToClientEvents>(ai);
        await Promise.all([connected(root), connected(ai)]);
        root.emit('ai-message', { chatId: `strict-${transport}`, content: 'hello' });
        ai.emit('chat:start', { message: 'hello /ai', conversationId: null });
        expect(await rootLog.next('ai-response')).toMatchObject({ chat: `strict-${transport}` });
        expect(await aiLog.next('chat:end')).toMatchObject({ finishReason: 'stop' });
        const convo = await conversationOf(strict, `strict-${transport}`, carol.user.id);
        expect(convo?.ownerId).toBe(carol.user.id);
        root.close();
        ai.close();
      });
    });
  });
  describe('a token that expires while the socket stays open', () => {
    let short: TestGateway;
    let dave: Account;
    beforeAll(async () => {
      short = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, JWT_CLOCK_SKEW_SECONDS: '0' });
      dave = await register(short.url, 'dave-auth@example.com');
    });
    afterAll(async () => {
      closeAllClients();
      await short.destroy();
    });

    it.each(TRANSPORTS)('stops working on the next chat event (%s)', async (transport) => {
      const exp = Math.floor(Date.now() / 1000) + 2;
      const session = await short.server.services.sessions!.open(dave.user.id, 60);
      const token = await new SignJWT({ sid: session.id })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(dave.user.id)
        .setIssuer('ai-chat-gateway')
        .setAudience('ai-chat-gateway')
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(new TextEncoder().encode(TEST_JWT_SECRET));
      const ai = client<AiClient>(`${short.url}/ai`, { transports: [transport], auth: { token } });
      const root = client<DefaultClient>(short.url, { transports: [transport], extraHeaders: { authorization: `Bearer ${token}` } });
      const aiLog = new EventLog<AiServerToClientEvents>(ai);
      const rootLog = new EventLog<DefaultServerToClientEvents>(root);
      await Promise.all([connected(ai), connected(root)]);
      ai.emit('chat:start', { message: 'while valid' });
      expect(await aiLog.next('chat:end')).toMatchObject({ finishReason: 'stop' });

      await waitFor(() => Date.now() >= exp * 1000 + 50, 4000);
      ai.emit('chat:start', { message: 'after expiry', conversationId: 'expired-turn' });
      expect(await aiLog.next('chat:error')).toMatchObject({ code: 'UNAUTHORIZED' });
      root.emit('ai:chat', { message: 'after expiry' });
      expect(await rootLog.next('ai:error')).toMatchObject({ code: 'UNAUTHORIZED' });
      root.emit('ai-message', { chatId: 'expired-turn', content: 'after expiry' });
      expect(await rootLog.next('ai-response')).toMatchObject({ code: 'UNAUTHORIZED' });
      expect(await conversationOf(short, 'expired-turn')).toBeUndefined();
      expect(await conversationOf(short, 'expired-turn', dave.user.id)).toBeUndefined();
      // And it can no longer open a connection.
      const again = client(`${short.url}/ai`, { transports: [transport], auth: { token } });
      expect((await connectError(again)).message).toBe(INVALID);
    });
  });
});
