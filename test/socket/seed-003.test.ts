import { LOOPBACK_OWNER } from '../helpers/conversations.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import type { StoredMessage } from '../../src/stores/conversation-store.js';
import { register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';
import { asRecord, collectText, estimateTokens } from '../standins/standin-script.js';
import {
  client,
  closeAllClients,
  connected,
  disconnected,
  EventLog,
  localEcho,
  sleep,
  TRANSPORTS,
  type AiClient,
  type ClientOptions,
  type LooseClient,
  type Transport,
} from './socket-harness.js';

const API_KEY = 'sk-standin-003-secret-key';
const SHORT = ['Quantum', ' computing', ' uses', ' qubits', '.'];
/** A reply that takes about 1.2 s, for stop, disconnect and BUSY. */
const LONG = Array.from({ length: 60 }, (_, i) => ` w${i}`);
const LONG_DELAY_MS = 20;
/** How soon the upstream connection must close after a stop or a disconnect. */
const ABORT_BUDGET_MS = 500;

interface Message {
  role: 'user' | 'assistant';
  content: string;
}

/** Namespace `/ai` (seed 003, PROTOCOLS.md section 3) against the OpenAI stand-in. */
describe('seed 003: the /ai namespace', () => {
  let standin: Standin;
  let gw: TestGateway;
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: API_KEY });
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      OPENAI_API_KEY: API_KEY,
      OPENAI_BASE_URL: standin.url,
      PROVIDER_MAX_RETRIES: '0',
      // The Vue snippet sends no model: it gets the server's default.
      DEFAULT_MODEL: 'local',
    });
    [alice, bob] = await Promise.all([register(gw.url, 'alice-003@example.com'), register(gw.url, 'bob-003@example.com')]);
  });
  // A failed test must not leave a client streaming into the next one.
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
    await standin.close();
  });

  // The stand-in queues every abort; keep count of the ones a test has taken, so a test never
  // sees an abort left over from an earlier one.
  let takenAborts = 0;
  async function drainAborts() {
    while (takenAborts < standin.aborts) {
      await standin.waitForAbort(0);
      takenAborts++;
    }
  }
  async function nextAbort(timeoutMs = 2000) {
    await standin.waitForAbort(timeoutMs);
    takenAborts++;
  }

  const short = () => standin.setScript(() => ({ tokens: [...SHORT], delayMs: 2 }));
  const long = () => standin.setScript(() => ({ tokens: [...LONG], delayMs: LONG_DELAY_MS }));
  const messagesOf = async (conversationId: string, owner = alice.user.id): Promise<StoredMessage[]> =>
    (await gw.server.services.store.listMessages(conversationKey(owner, conversationId), { limit: 50 })).items;
  const lastRequestBody = () => asRecord(standin.requests.filter((r) => r.path === '/v1/chat/completions').at(-1)?.body) ?? {};

  /**
   * The document's React `AiChatComponent`: `io(url + '/ai', {auth: {token}, transports})`,
   * its listeners and state, and its `sendMessage`/`stopStreaming`.
   */
  function aiChatComponent(userId: string, accessToken: string, transport: Transport, extra: ClientOptions = {}) {
    const socket = client<AiClient>(`${gw.url}/ai`, { auth: { token: accessToken }, transports: [transport], ...extra });
    const log = new EventLog<AiServerToClientEvents>(socket);
    const state = {
      messages: [] as Message[],
      isStreaming: false,
      conversationId: null as string | null,
      currentResponse: '',
      errors: [] as string[],
    };
    socket.on('chat:conversation', (data) => {
      state.conversationId = data.conversationId;
    });
    socket.on('chat:user-message', (data) => {
      state.messages.push({ role: 'user', content: data.content });
    });
    socket.on('chat:message', (data) => {
      state.currentResponse += data.content;
    });
    socket.on('chat:end', () => {
      state.messages.push({ role: 'assistant', content: state.currentResponse });
      state.currentResponse = '';
      state.isStreaming = false;
    });
    socket.on('chat:error', (error) => {
      state.errors.push(error.message);
      state.isStreaming = false;
      state.currentResponse = '';
    });
    const sendMessage = (input: string) => {
      state.isStreaming = true;
      state.currentResponse = '';
      socket.emit('chat:start', {
        userId,
        message: input,
        conversationId: state.conversationId,
        model: 'gpt-4',
        maxTokens: 4096,
        temperature: 0.7,
      });
    };
    const stopStreaming = () => {
      socket.emit('chat:stop');
      state.isStreaming = false;
    };
    return { socket, log, state, sendMessage, stopStreaming };
  }

  describe.each(TRANSPORTS)('over %s', (transport) => {
    it('the React component flow: conversation, user-message, chunks, end — in that order', async () => {
      short();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      await connected(ui.socket);
      ui.sendMessage('Explain quantum computing');

      const end = await ui.log.next('chat:end');
      expect(ui.log.names).toEqual(['chat:conversation', 'chat:user-message', ...SHORT.map(() => 'chat:message'), 'chat:end']);
      const [conversation, userMessage, ...rest] = ui.log.events.map((e) => e.payload);
      const conversationId = (conversation as { conversationId: string }).conversationId;
      expect(conversationId).toMatch(/^[0-9a-f-]{36}$/);
      expect(userMessage).toEqual({ messageId: expect.any(String), content: 'Explain quantum computing' });
      expect(rest.slice(0, -1)).toEqual(SHORT.map((content) => ({ content, isComplete: false })));

      const body = lastRequestBody();
      const expectedTotal = estimateTokens(collectText(body.messages)) + SHORT.length;
      expect(end).toEqual({ messageId: expect.any(String), conversationId, totalTokens: expectedTotal, model: 'openai:gpt-4', finishReason: 'stop' });
      expect(ui.state).toMatchObject({
        conversationId,
        isStreaming: false,
        errors: [],
        messages: [
          { role: 'user', content: 'Explain quantum computing' },
          { role: 'assistant', content: SHORT.join('') },
        ],
      });

      // What went upstream: the seed's options, the system prompt first, the user's message last.
      expect(body).toMatchObject({ model: 'gpt-4', stream: true, temperature: 0.7, max_tokens: 4096 });
      const sent = body.messages as { role: string; content: string }[];
      expect(sent[0]!.role).toBe('system');
      expect(sent.at(-1)).toEqual({ role: 'user', content: 'Explain quantum computing' });

      const stored = await messagesOf(conversationId);
      expect(stored.map((m) => [m.id, m.role, m.content, m.finishReason ?? null])).toEqual([
        [(userMessage as { messageId: string }).messageId, 'user', 'Explain quantum computing', null],
        [end.messageId, 'assistant', SHORT.join(''), 'stop'],
      ]);

      // Second turn: the component now sends its conversationId; no chat:conversation this time.
      ui.log.clear();
      ui.sendMessage('And entanglement?');
      const second = await ui.log.next('chat:end');
      expect(second.conversationId).toBe(conversationId);
      expect(ui.log.names).toEqual(['chat:user-message', ...SHORT.map(() => 'chat:message'), 'chat:end']);
      expect((lastRequestBody().messages as Message[]).filter((m) => m.role !== ('system' as string)).map((m) => m.content)).toEqual([
        'Explain quantum computing',
        SHORT.join(''),
        'And entanglement?',
      ]);
      expect((await messagesOf(conversationId)).map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      ui.socket.close();
    });

    it("the payload userId is ignored: the owner is the token's user", async () => {
      short();
      const ui = aiChatComponent(bob.user.id, alice.token, transport);
      ui.sendMessage('whose conversation is this?');
      const end = await ui.log.next('chat:end');
      expect((await gw.server.services.store.getConversation(alice.user.id, end.conversationId))?.ownerId).toBe(alice.user.id);
      const bobs = await gw.server.services.store.listConversations(bob.user.id, { limit: 100 });
      expect(bobs.items.map((c) => c.id)).not.toContain(end.conversationId);
      expect(JSON.stringify(lastRequestBody())).not.toContain(bob.user.id);
      ui.socket.close();
    });

    it('a second chat:start while streaming answers chat:error BUSY and the first stream runs to chat:end', async () => {
      long();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      const requestsBefore = standin.requests.length;
      ui.sendMessage('a long answer please');
      await ui.log.next('chat:message');
      ui.socket.emit('chat:start', { message: 'me too', conversationId: null });
      expect(await ui.log.next('chat:error')).toEqual({ message: expect.any(String), code: 'BUSY' });

      const end = await ui.log.next('chat:end', 5000);
      expect(end.finishReason).toBe('stop');
      expect(ui.log.all('chat:message').map((m) => m.content)).toEqual(LONG);
      expect(ui.log.all('chat:user-message')).toEqual([{ messageId: expect.any(String), content: 'a long answer please' }]);
      expect(standin.requests.length).toBe(requestsBefore + 1);
      const stored = await messagesOf(end.conversationId);
      expect(stored.map((m) => m.content)).toEqual(['a long answer please', LONG.join('')]);
      ui.socket.close();
    });

    it('chat:stop mid-stream closes the upstream call at once, stores the partial reply as stopped, then chat:stopped', async () => {
      long();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      await drainAborts();
      const abortsBefore = standin.aborts;
      ui.sendMessage('stop me');
      await ui.log.next('chat:message');
      await ui.log.next('chat:message');
      const stoppedAt = performance.now();
      ui.stopStreaming();
      await nextAbort();
      const abortMs = performance.now() - stoppedAt;
      expect(abortMs).toBeLessThan(ABORT_BUDGET_MS);
      expect(standin.aborts).toBe(abortsBefore + 1);

      const stopped = await ui.log.next('chat:stopped');
      const conversationId = ui.state.conversationId!;
      expect(stopped).toEqual({ conversationId, messageId: expect.any(String) });
      const received = ui.log.all('chat:message').map((m) => m.content);
      expect(received.length).toBeGreaterThanOrEqual(2);
      expect(received.length).toBeLessThan(LONG.length);

      const stored = await messagesOf(conversationId);
      expect(stored).toHaveLength(2);
      expect(stored[1]).toMatchObject({ id: stopped.messageId, role: 'assistant', finishReason: 'stopped', content: received.join('') });
      await sleep(3 * LONG_DELAY_MS);
      expect(ui.log.all('chat:end')).toEqual([]);
      expect(ui.log.all('chat:error')).toEqual([]);
      expect(ui.log.names.at(-1)).toBe('chat:stopped');
      expect(gw.server.gauges.activeStreams).toBe(0);

      // The connection is free for the next turn, which continues the conversation.
      short();
      ui.sendMessage('again');
      const end = await ui.log.next('chat:end');
      expect(end.conversationId).toBe(conversationId);
      expect((await messagesOf(conversationId)).map((m) => m.finishReason ?? null)).toEqual([null, 'stopped', null, 'stop']);
      ui.socket.close();
    });

    it('a disconnect mid-stream closes the upstream call at once and stores the partial reply as aborted; other tabs and a resume see it end as stopped', async () => {
      long();
      // The user's other tab, open before the turn starts.
      const tab = client<AiClient>(`${gw.url}/ai`, { auth: { token: alice.token }, transports: [transport] });
      const tabLog = new EventLog<AiServerToClientEvents>(tab);
      await connected(tab);
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      await drainAborts();
      const abortsBefore = standin.aborts;
      ui.sendMessage('I will leave');
      const { conversationId } = await ui.log.next('chat:conversation');
      await ui.log.next('chat:message');
      await ui.log.next('chat:message');
      const leftAt = performance.now();
      ui.socket.close();
      await nextAbort();
      expect(performance.now() - leftAt).toBeLessThan(ABORT_BUDGET_MS);
      expect(standin.aborts).toBe(abortsBefore + 1);

      const reply = await waitFor(async () => (await messagesOf(conversationId)).find((m) => m.role === 'assistant'), 2000);
      const received = ui.log.all('chat:message').map((m) => m.content).join('');
      expect(reply.finishReason).toBe('aborted');
      expect(reply.content.startsWith(received)).toBe(true);
      expect(reply.content.length).toBeGreaterThan(0);
      expect(reply.content.length).toBeLessThan(LONG.join('').length);

      // The other tab followed the turn; it ends there as a stopped one (it used to end with nothing).
      expect(await tabLog.next('chat:stopped')).toEqual({ conversationId, messageId: reply.id });
      // A client resuming it gets the reply and the same end.
      const from = tabLog.all('chat:message').length;
      tab.emit('chat:resume', { conversationId });
      expect(await tabLog.next('chat:stopped')).toEqual({ conversationId, messageId: reply.id });
      expect(tabLog.all('chat:message').slice(from).map((m) => m.content).join('')).toBe(reply.content);
      tab.close();
      await waitFor(() => gw.server.gauges.activeStreams === 0 && gw.server.gauges.byNamespace['/ai'] === 0, 2000);
    });

    it("Stop then Send at once (the React component allows it) starts the new turn instead of answering BUSY", async () => {
      long();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      ui.sendMessage('first question');
      await ui.log.next('chat:message');
      // stopStreaming() sets isStreaming=false, so the component lets the user send right away;
      // it never listens for chat:stopped, so it cannot wait for it.
      ui.stopStreaming();
      short();
      ui.sendMessage('second question');
      const stopped = await ui.log.next('chat:stopped');
      const outcome = await ui.log.first(['chat:end', 'chat:error'], 3000);
      expect(outcome).toEqual({ name: 'chat:end', payload: expect.objectContaining({ conversationId: stopped.conversationId, finishReason: 'stop' }) });
      const end = outcome.payload as { conversationId: string };
      const stored = await messagesOf(end.conversationId);
      expect(stored.map((m) => [m.role, m.finishReason ?? null])).toEqual([
        ['user', null],
        ['assistant', 'stopped'],
        ['user', null],
        ['assistant', 'stop'],
      ]);
      expect(stored[2]!.content).toBe('second question');
    });

    it('a dropped connection reconnects by itself and the next turn continues the same conversation', async () => {
      short();
      const ui = aiChatComponent(alice.user.id, alice.token, transport, { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
      await connected(ui.socket);
      ui.sendMessage('before the drop');
      const first = await ui.log.next('chat:end');

      // A drop in the middle of a stream: the partial reply is kept as aborted.
      long();
      ui.log.clear();
      ui.sendMessage('during the drop');
      await ui.log.next('chat:message');
      await drainAborts();
      const firstId = ui.socket.id;
      const reconnected = new Promise<number>((resolve) => ui.socket.io.once('reconnect', resolve));
      const gone = disconnected(ui.socket);
      const droppedAt = performance.now();
      ui.socket.io.engine.close(); // what a network drop looks like to the client
      expect(await gone).toBe('forced close');
      // The server saw the transport go and aborted the upstream call.
      await nextAbort();
      expect(performance.now() - droppedAt).toBeLessThan(ABORT_BUDGET_MS);
      expect(await reconnected).toBeGreaterThanOrEqual(1);
      await connected(ui.socket);
      expect(ui.socket.id).not.toBe(firstId);

      short();
      ui.log.clear();
      ui.sendMessage('after the drop');
      const end = await ui.log.next('chat:end');
      expect(end.conversationId).toBe(first.conversationId);
      expect(ui.log.names).not.toContain('chat:conversation');
      const stored = await messagesOf(first.conversationId);
      expect(stored.map((m) => [m.role, m.finishReason ?? null])).toEqual([
        ['user', null],
        ['assistant', 'stop'],
        ['user', null],
        ['assistant', 'aborted'],
        ['user', null],
        ['assistant', 'stop'],
      ]);
      expect(stored.map((m) => m.content).filter((c, i) => i % 2 === 0)).toEqual(['before the drop', 'during the drop', 'after the drop']);
      ui.socket.close();
    });

    describe("the document's 'Buffering' client options (ackTimeout + retries)", () => {
      // Seed 003 recommends `io(url, {ackTimeout: 10000, retries: 3})`: socket.io-client then
      // sends one packet at a time, waits for the server's ack, and re-sends it when none comes.
      // Scaled down here (300 ms) so a missing ack shows within the test.
      const buffering = { ackTimeout: 300, retries: 3 } satisfies ClientOptions;

      it('one chat:start is one turn: no re-sent start, no duplicate user message, no BUSY', async () => {
        short();
        const ui = aiChatComponent(alice.user.id, alice.token, transport, buffering);
        const requestsBefore = standin.requests.length;
        ui.sendMessage('exactly once');
        const end = await ui.log.next('chat:end');
        await sleep(4 * buffering.ackTimeout);
        expect(ui.log.all('chat:error')).toEqual([]);
        expect(ui.log.all('chat:user-message')).toHaveLength(1);
        expect(ui.log.all('chat:end')).toHaveLength(1);
        expect(standin.requests.length).toBe(requestsBefore + 1);
        expect((await messagesOf(end.conversationId)).map((m) => m.content)).toEqual(['exactly once', SHORT.join('')]);
      });

      it('chat:stop is not held back behind the unacknowledged chat:start', async () => {
        long();
        await drainAborts();
        const ui = aiChatComponent(alice.user.id, alice.token, transport, buffering);
        ui.sendMessage('stop me quickly');
        await ui.log.next('chat:message');
        const stoppedAt = performance.now();
        ui.stopStreaming();
        await ui.log.next('chat:stopped', 3000);
        expect(performance.now() - stoppedAt).toBeLessThan(ABORT_BUDGET_MS);
        expect(ui.log.all('chat:error')).toEqual([]);
      });
    });

    it.each([
      ['an empty object', {}, /message is required/],
      ['a number message', { message: 5 }, /message must be a string/],
      ['a path-like conversationId', { message: 'x', conversationId: '../x' }, /conversationId/],
      ['a conversationId that is too long', { message: 'x', conversationId: 'a'.repeat(129) }, /conversationId/],
      ['a temperature out of range', { message: 'x', temperature: 7 }, /temperature/],
      ['maxTokens of the wrong type', { message: 'x', maxTokens: 'lots' }, /maxTokens/],
    ])('%s answers chat:error BAD_REQUEST', async (_name, payload, message) => {
      const socket = client<AiClient>(`${gw.url}/ai`, { auth: { token: alice.token }, transports: [transport] });
      const log = new EventLog<AiServerToClientEvents>(socket);
      const requestsBefore = standin.requests.length;
      (socket as unknown as LooseClient).emit('chat:start', payload);
      expect(await log.next('chat:error')).toEqual({ message: expect.stringMatching(message), code: 'BAD_REQUEST' });
      expect(log.names).toEqual(['chat:error']);
      expect(standin.requests.length).toBe(requestsBefore);
      expect(socket.connected).toBe(true);
      socket.close();
    });

    it("another user's conversationId starts the caller's own conversation; the model never sees the other's", async () => {
      short();
      const asBob = aiChatComponent(bob.user.id, bob.token, transport);
      asBob.sendMessage("bob's private thoughts");
      const { conversationId } = await asBob.log.next('chat:end');

      const socket = client<AiClient>(`${gw.url}/ai`, { auth: { token: alice.token }, transports: [transport] });
      const log = new EventLog<AiServerToClientEvents>(socket);
      socket.emit('chat:start', { userId: bob.user.id, message: 'let me in', conversationId, model: 'gpt-4' });
      expect(await log.next('chat:end')).toMatchObject({ conversationId, finishReason: 'stop' });
      expect(log.names.filter((n) => n !== 'chat:message')).toEqual(['chat:conversation', 'chat:user-message', 'chat:end']);
      expect(JSON.stringify(lastRequestBody())).not.toContain("bob's private thoughts");
      expect(await messagesOf(conversationId, bob.user.id)).toHaveLength(2);
      expect((await messagesOf(conversationId, alice.user.id)).map((m) => m.content)).toEqual(['let me in', SHORT.join('')]);
      socket.close();
      asBob.socket.close();
    });

    it('chat:stop with nothing streaming emits nothing and breaks nothing', async () => {
      short();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      await connected(ui.socket);
      ui.stopStreaming();
      ui.stopStreaming();
      await sleep(100);
      expect(ui.log.events).toEqual([]);
      expect(ui.socket.connected).toBe(true);
      ui.sendMessage('still works');
      expect(await ui.log.next('chat:end')).toMatchObject({ finishReason: 'stop' });
      // A stop after the end is also a no-op, not a late chat:stopped.
      ui.stopStreaming();
      await sleep(50);
      expect(ui.log.all('chat:stopped')).toEqual([]);
      ui.socket.close();
    });

    it('an upstream failure answers chat:error PROVIDER_ERROR without leaking the key or the upstream body', async () => {
      standin.setScript(() => ({ tokens: [], status: 401 }));
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      ui.sendMessage('this will fail upstream');
      const error = await ui.log.next('chat:error');
      expect(error.code).toBe('PROVIDER_ERROR');
      expect(error.message).not.toMatch(/sk-|platform\.openai\.com|Incorrect API key/);
      expect(ui.log.all('chat:end')).toEqual([]);
      ui.socket.close();
    });

    it('an upstream stream cut mid-way answers chat:error PROVIDER_ERROR and keeps the partial reply as error', async () => {
      standin.setScript(() => ({ tokens: [...SHORT], delayMs: 5, cutAfter: 3 }));
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      ui.sendMessage('cut me off');
      const { conversationId } = await ui.log.next('chat:conversation');
      const error = await ui.log.next('chat:error');
      expect(error.code).toBe('PROVIDER_ERROR');
      expect(ui.log.all('chat:message').map((m) => m.content)).toEqual(SHORT.slice(0, 3));
      expect(ui.log.all('chat:end')).toEqual([]);
      const stored = await messagesOf(conversationId);
      expect(stored.map((m) => [m.role, m.content, m.finishReason ?? null])).toEqual([
        ['user', 'cut me off', null],
        ['assistant', SHORT.slice(0, 3).join(''), 'error'],
      ]);
    });

    it("an upstream finish_reason length ends with chat:end finishReason 'length'", async () => {
      standin.setScript(() => ({ tokens: [...SHORT], delayMs: 1, finishReason: 'length' }));
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      ui.sendMessage('truncate');
      const end = await ui.log.next('chat:end');
      expect(end.finishReason).toBe('length');
      expect((await messagesOf(end.conversationId)).at(-1)).toMatchObject({ finishReason: 'length', content: SHORT.join('') });
    });

    it('chat:stop sent right after chat:start (before any chunk) still ends in chat:stopped, and the socket is free again', async () => {
      long();
      const ui = aiChatComponent(alice.user.id, alice.token, transport);
      await connected(ui.socket);
      ui.sendMessage('never mind');
      ui.stopStreaming();
      const stopped = await ui.log.next('chat:stopped', 3000);
      expect(stopped.conversationId).toBe(ui.state.conversationId);
      expect(ui.log.all('chat:end')).toEqual([]);
      expect(ui.log.all('chat:error')).toEqual([]);
      const stored = await messagesOf(stopped.conversationId);
      expect(stored.map((m) => [m.role, m.finishReason ?? null])).toEqual([
        ['user', null],
        ['assistant', 'stopped'],
      ]);
      expect(stored[1]!.id).toBe(stopped.messageId);
      expect(stored[1]!.content.length).toBeLessThan(LONG.join('').length);
      await waitFor(() => gw.server.gauges.activeStreams === 0, 2000);
      short();
      ui.sendMessage('ok, go');
      expect(await ui.log.next('chat:end')).toMatchObject({ conversationId: stopped.conversationId, finishReason: 'stop' });
    });

    describe("the Vue snippet's flow (no model: the local default)", () => {
      function vueClient(token: string | null) {
        const socket = client<AiClient>(`${gw.url}/ai`, { auth: { token }, transports: [transport] });
        const log = new EventLog<AiServerToClientEvents>(socket);
        const state = { conversationId: null as string | null, currentResponse: '', messages: [] as Message[], isStreaming: false };
        socket.on('chat:conversation', (data) => {
          state.conversationId = data.conversationId;
        });
        socket.on('chat:message', (data) => {
          state.currentResponse += data.content;
        });
        socket.on('chat:end', () => {
          state.messages.push({ role: 'assistant', content: state.currentResponse });
          state.currentResponse = '';
          state.isStreaming = false;
        });
        const sendMessage = (input: string) => {
          state.messages.push({ role: 'user', content: input });
          socket.emit('chat:start', { userId: 'user-id', message: input, conversationId: state.conversationId });
          state.isStreaming = true;
        };
        return { socket, log, state, sendMessage };
      }

      it('with a stored token: completes on the local model and continues the conversation', async () => {
        const vue = vueClient(alice.token);
        const requestsBefore = standin.requests.length;
        vue.sendMessage('Hi from Vue');
        const end = await vue.log.next('chat:end');
        expect(end).toMatchObject({ model: 'local', finishReason: 'stop', conversationId: vue.state.conversationId });
        expect(end.totalTokens).toBeGreaterThan(0);
        expect(vue.state.messages[1]!.content).toContain(localEcho('Hi from Vue'));
        vue.sendMessage('Again');
        const second = await vue.log.next('chat:end');
        expect(second.conversationId).toBe(end.conversationId);
        expect(vue.state.messages[3]!.content).toContain('2 earlier messages');
        expect(standin.requests.length).toBe(requestsBefore);
        expect((await gw.server.services.store.getConversation(alice.user.id, end.conversationId))?.ownerId).toBe(alice.user.id);
        vue.socket.close();
      });

      it('with no stored token (localStorage answers null): anonymous', async () => {
        const vue = vueClient(null);
        vue.sendMessage('anonymous Vue');
        const end = await vue.log.next('chat:end');
        expect(vue.state.messages[1]!.content).toContain(localEcho('anonymous Vue'));
        expect((await gw.server.services.store.getConversation(LOOPBACK_OWNER, end.conversationId))?.ownerId).toBe(LOOPBACK_OWNER);
        vue.socket.close();
      });
    });
  });
});
