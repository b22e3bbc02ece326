import { LOOPBACK_OWNER, conversationOf, messagesOf } from '../helpers/conversations.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET, badTokens } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { client, closeAllClients, connected, EventLog, localEcho, TRANSPORTS, type AiClient, type DefaultClient, type LooseClient } from './socket-harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Seed 002 over Socket.IO: `ai:chat` → `ai:stream`… → `ai:complete`, failures → `ai:error` (PROTOCOLS.md 2c). */
describe('seed 002: ai:chat streaming on the default namespace', () => {
  let gw: TestGateway;
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
    [alice, bob] = await Promise.all([register(gw.url, 'alice-002@example.com'), register(gw.url, 'bob-002@example.com')]);
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
  });

  describe.each(TRANSPORTS)('over %s', (transport) => {
    it("the seed's Node test client: several ai:stream chunks, then ai:complete with their concatenation", async () => {
      // The document's client, verbatim in shape: emit before connect, listeners after.
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      const chunks: { content: string; sessionId: string }[] = [];
      socket.emit('ai:chat', { message: 'Hello' });
      socket.on('ai:stream', (data) => chunks.push(data));
      socket.on('ai:complete', () => undefined);

      const complete = await log.next('ai:complete');
      expect(chunks.length).toBeGreaterThan(5);
      expect(complete.response).toBe(chunks.map((c) => c.content).join(''));
      expect(complete.response).toContain(localEcho('Hello'));
      expect(complete.sessionId).toMatch(UUID);
      expect(new Set(chunks.map((c) => c.sessionId))).toEqual(new Set([complete.sessionId]));
      // Stream events strictly before the completion, nothing else.
      expect(log.names).toEqual([...chunks.map(() => 'ai:stream'), 'ai:complete']);

      const items = await messagesOf(gw, complete.sessionId);
      expect(items.map((m) => [m.role, m.content])).toEqual([
        ['user', 'Hello'],
        ['assistant', complete.response],
      ]);
      expect(items[1]!.id).toBe(complete.messageId);
      expect(items[1]!.finishReason).toBe('stop');
      expect((await conversationOf(gw, complete.sessionId))?.ownerId).toBe(LOOPBACK_OWNER);
      socket.close();
    });

    it('the React flow: a payload token binds the conversation to that user, and a sessionId continues it', async () => {
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      let response = '';
      socket.on('ai:stream', (data) => {
        response += data.content;
      });
      await connected(socket);

      const sendMessage = (message: string, sessionId?: string) => {
        response = '';
        socket.emit('ai:chat', { message, token: alice.token, ...(sessionId ? { sessionId } : {}) });
      };
      sendMessage('My name is Ada');
      const first = await log.next('ai:complete');
      expect(first.response).toBe(response);
      expect(await conversationOf(gw, first.sessionId, alice.user.id)).toMatchObject({ ownerId: alice.user.id, title: 'My name is Ada' });

      sendMessage('What is my name?', first.sessionId);
      const second = await log.next('ai:complete');
      expect(second.sessionId).toBe(first.sessionId);
      expect(second.response).toBe(response);
      expect(second.response).toContain('2 earlier messages');
      const items = await messagesOf(gw, first.sessionId, alice.user.id);
      expect(items.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      expect(log.all('ai:error')).toEqual([]);
      socket.close();
    });

    it('the React flow signed out: localStorage gives token null, which means anonymous', async () => {
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: 'Hello', token: null as unknown as string });
      const complete = await log.next('ai:complete');
      expect(complete.response).toContain(localEcho('Hello'));
      expect((await conversationOf(gw, complete.sessionId))?.ownerId).toBe(LOOPBACK_OWNER);
      socket.close();
    });

    it('a client-chosen sessionId creates that conversation', async () => {
      const sessionId = `my-session_${transport}`;
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: 'hi', sessionId });
      const complete = await log.next('ai:complete');
      expect(complete.sessionId).toBe(sessionId);
      expect(log.all('ai:stream').every((s) => s.sessionId === sessionId)).toBe(true);
      expect(await conversationOf(gw, sessionId)).toMatchObject({ id: sessionId, ownerId: LOOPBACK_OWNER });
      socket.close();
    });

    it("another owner's sessionId starts the caller's own conversation and reveals nothing", async () => {
      const sessionId = `bob-002-${transport}`;
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: "Bob's SECRET plan", sessionId, token: bob.token });
      await log.next('ai:complete');
      socket.emit('ai:chat', { message: 'let me read it', sessionId, token: alice.token });
      const asAlice = await log.next('ai:complete');
      expect(asAlice).toMatchObject({ sessionId, response: expect.stringContaining('This is the start of the conversation') });
      socket.emit('ai:chat', { message: 'anonymous too', sessionId });
      const asAnonymous = await log.next('ai:complete');
      expect(asAnonymous).toMatchObject({ sessionId, response: expect.stringContaining('This is the start of the conversation') });
      expect(JSON.stringify([asAlice, asAnonymous])).not.toContain('SECRET');
      expect(await messagesOf(gw, sessionId, bob.user.id)).toHaveLength(2);
      expect(await messagesOf(gw, sessionId, alice.user.id)).toHaveLength(2);
      expect(await messagesOf(gw, sessionId)).toHaveLength(2);
      socket.close();
    });

    it('a bad per-message token answers ai:error UNAUTHORIZED and stores nothing', async () => {
      const bad = await badTokens(alice.user.id);
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      for (const kind of ['expired', 'tampered', 'wrongKey', 'algNone', 'garbage'] as const) {
        const sessionId = `bad-token-${kind}-${transport}`;
        socket.emit('ai:chat', { message: 'Hello', sessionId, token: bad[kind]! });
        expect(await log.next('ai:error')).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
        expect(await conversationOf(gw, sessionId)).toBeUndefined();
        expect(await conversationOf(gw, sessionId, alice.user.id)).toBeUndefined();
      }
      expect(log.all('ai:stream')).toEqual([]);
      expect(socket.connected).toBe(true);
      socket.close();
    });

    it('a bad payload token is refused even when the handshake carried a good one', async () => {
      const bad = await badTokens(alice.user.id);
      const socket = client<DefaultClient>(gw.url, { transports: [transport], auth: { token: alice.token } });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      socket.emit('ai:chat', { message: 'Hello', token: bad.expired! });
      expect(await log.next('ai:error')).toMatchObject({ code: 'UNAUTHORIZED' });
      socket.emit('ai:chat', { message: 'Hello' });
      const ok = await log.next('ai:complete');
      expect((await conversationOf(gw, ok.sessionId, alice.user.id))?.ownerId).toBe(alice.user.id);
      socket.close();
    });

    it.each([
      ['a missing message', {}, /message is required/],
      ['a number message', { message: 42 }, /message must be a string/],
      ['an empty message', { message: '' }, /message must not be empty/],
      ['a bad sessionId', { message: 'hi', sessionId: '../x' }, /sessionId/],
      ['a temperature of the wrong type', { message: 'hi', temperature: 'hot' }, /temperature/],
    ])('%s answers ai:error BAD_REQUEST', async (_name, payload, message) => {
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      (socket as unknown as LooseClient).emit('ai:chat', payload);
      expect(await log.next('ai:error')).toEqual({ error: expect.stringMatching(message), code: 'BAD_REQUEST' });
      expect(log.names).toEqual(['ai:error']);
      socket.close();
    });

    it('a malformed model name answers ai:error INVALID_MODEL; any other name is served by the local model on this zero-config server', async () => {
      const socket = client<DefaultClient>(gw.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: 'hi', model: 'not a model!', sessionId: `bad-model-${transport}` });
      expect(await log.next('ai:error')).toEqual({ error: expect.stringContaining('Model names'), code: 'INVALID_MODEL' });
      expect(await conversationOf(gw, `bad-model-${transport}`)).toBeUndefined();
      socket.emit('ai:chat', { message: 'hi', model: 'claude-3' });
      expect((await log.next('ai:complete')).response).toContain('answering in place of "claude-3"');
      socket.close();
    });
  });

  describe.each(TRANSPORTS)('rate limit shared with HTTP SSE, over %s', (transport) => {
    let limited: TestGateway;
    beforeAll(async () => {
      limited = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_ANON: '3' });
    });
    afterAll(() => limited.destroy());

    it('each turn counts once whatever the protocol; the 4th turn from the IP gets ai:error RATE_LIMIT', async () => {
      const socket = client<DefaultClient>(limited.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);

      socket.emit('ai:chat', { message: 'turn 1 (socket)' });
      expect(await log.next('ai:complete')).toMatchObject({ response: expect.stringContaining(localEcho('turn 1 (socket)')) });

      const sse = await readSse(await postChat(limited.url, { message: 'turn 2 (SSE)' }));
      expect(sse.at(-1)).toMatchObject({ done: true });
      expect(contentOf(sse)).toContain(localEcho('turn 2 (SSE)'));

      socket.emit('ai:chat', { message: 'turn 3 (socket)' });
      expect(await log.next('ai:complete')).toMatchObject({ response: expect.stringContaining(localEcho('turn 3 (socket)')) });

      socket.emit('ai:chat', { message: 'turn 4 (socket)', sessionId: `over-limit-${transport}` });
      expect(await log.next('ai:error')).toEqual({ error: expect.stringMatching(/Too many chat requests/), code: 'RATE_LIMIT' });
      expect(await conversationOf(limited, `over-limit-${transport}`)).toBeUndefined();

      // The same budget is spent for HTTP too.
      const res = await postChat(limited.url, { message: 'turn 5 (SSE)' });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      await res.body?.cancel();

      // And for seed 000 on the same connection, and seed 003 on /ai.
      socket.emit('ai-message', { prompt: 'one-shot' });
      expect(await log.next('ai-message-response')).toMatchObject({ code: 'RATE_LIMIT' });
      expect(log.all('ai:complete')).toHaveLength(2);
      const ai = client<AiClient>(`${limited.url}/ai`, { transports: [transport] });
      const aiLog = new EventLog<AiServerToClientEvents>(ai);
      ai.emit('chat:start', { message: 'over the limit', conversationId: null });
      expect(await aiLog.next('chat:error')).toEqual({ message: expect.stringMatching(/Too many chat requests/), code: 'RATE_LIMIT' });
      expect(aiLog.names).toEqual(['chat:error']);
      socket.close();
      ai.close();
    });

    it('a signed-in user is counted on their own budget, not the IP one', async () => {
      const carol = await register(limited.url, `carol-rl-${transport}@example.com`);
      const socket = client<DefaultClient>(limited.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: 'signed in', token: carol.token });
      expect(await log.next('ai:complete')).toMatchObject({ response: expect.stringContaining(localEcho('signed in')) });
      socket.close();
    });
  });
  describe.each(TRANSPORTS)('a client leaving mid-turn, over %s', (transport) => {
    let paced: TestGateway;
    let carol: Account;
    beforeAll(async () => {
      paced = await startGateway({ JWT_SECRET: TEST_JWT_SECRET, LOCAL_MODEL_TOKEN_DELAY_MS: '20' });
      carol = await register(paced.url, `carol-paced-${transport}@example.com`);
    });
    afterAll(() => paced.destroy());

    const assistantOf = (conversationId: string, owner?: string) =>
      waitFor(async () => (await messagesOf(paced, conversationId, owner)).find((m) => m.role === 'assistant'), 3000);

    it('ai:chat: the partial reply is stored as aborted and the stream stops', async () => {
      const sessionId = `leave-002-${transport}`;
      const socket = client<DefaultClient>(paced.url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      socket.emit('ai:chat', { message: 'Hello', sessionId });
      await log.next('ai:stream');
      await log.next('ai:stream');
      socket.close();
      const reply = await assistantOf(sessionId);
      const streamed = log.all('ai:stream').map((c) => c.content).join('');
      expect(reply.finishReason).toBe('aborted');
      expect(reply.content.startsWith(streamed)).toBe(true);
      expect(reply.content.length).toBeGreaterThan(0);
      expect(reply.content).not.toContain('Set OPENAI_API_KEY'); // the end of the full reply
      await waitFor(() => paced.server.gauges.activeStreams === 0, 2000);
    });

    it('seed 001 ai-message: the reply is stored as aborted, and no ai-response is sent to the gone client', async () => {
      const chatId = `leave-001-${transport}`;
      const socket = client<DefaultClient>(paced.url, { transports: [transport], extraHeaders: { cookie: carol.cookie } });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      socket.emit('ai-message', { chatId, content: 'I will not wait' });
      await waitFor(() => paced.server.gauges.activeStreams === 1, 2000);
      await new Promise((r) => setTimeout(r, 100));
      socket.close();
      const reply = await assistantOf(chatId, carol.user.id);
      expect(reply.finishReason).toBe('aborted');
      expect(reply.content.length).toBeGreaterThan(0);
      expect(reply.content).not.toContain('Set OPENAI_API_KEY');
      expect(log.events).toEqual([]);
      await waitFor(() => paced.server.gauges.activeStreams === 0, 2000);
    });
  });
});
