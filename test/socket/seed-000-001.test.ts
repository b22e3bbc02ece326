import { conversationOf, messagesOf } from '../helpers/conversations.js';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register, type Account } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { client, connected, socketGatewayForSuite, EventLog, localEcho, sleep, TRANSPORTS, type DefaultClient, type LooseClient } from './socket-harness.js';

/**
 * Namespace `/`, event `ai-message`: seed 000 (`{prompt}` → `ai-message-response`) and
 * seed 001 (`{chatId, content}` with the cookie token → `ai-response`), PROTOCOLS.md 2a/2b.
 */
describe('seeds 000 and 001 on the default namespace', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET });
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    [alice, bob] = await Promise.all([register(gw().url, 'alice-000@example.com'), register(gw().url, 'bob-000@example.com')]);
  });

  describe.each(TRANSPORTS)('over %s', (transport) => {
    /** Seed 000's client: `io(url)`, no credentials. */
    async function seed000Client() {
      const socket = client<DefaultClient>(gw().url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      return { socket, log };
    }

    /** Seed 001's client: the browser sends the `token` cookie; a Node client sets the header. */
    async function seed001Client(account: Account | undefined) {
      const socket = client<DefaultClient>(gw().url, {
        transports: [transport],
        ...(account ? { extraHeaders: { cookie: account.cookie } } : {}),
      });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      return { socket, log };
    }

    describe('seed 000: one-shot prompt', () => {
      it('ai-message {prompt} answers ai-message-response {response} with the prompt echoed', async () => {
        const { socket, log } = await seed000Client();
        const responses: string[] = [];
        socket.on('ai-message-response', (data) => {
          if ('response' in data) responses.push(data.response);
        });
        socket.emit('ai-message', { prompt: `What is Socket.IO over ${transport}?` });
        const reply = await log.next('ai-message-response');
        expect(reply).toEqual({ response: expect.stringContaining(localEcho(`What is Socket.IO over ${transport}?`)) });
        expect(responses).toHaveLength(1);
        expect(responses[0]).toContain('offline development model');
        expect(log.names).toEqual(['ai-message-response']);
        socket.close();
      });

      it('answers several prompts on one connection, each exactly once', async () => {
        const { socket, log } = await seed000Client();
        socket.emit('ai-message', { prompt: 'first' });
        socket.emit('ai-message', { prompt: 'second' });
        const a = await log.next('ai-message-response');
        const b = await log.next('ai-message-response');
        const texts = [a, b].map((r) => ('response' in r ? r.response : r.error));
        // Both run concurrently; each reply echoes its own prompt.
        expect(texts.filter((t) => t.includes(localEcho('first')))).toHaveLength(1);
        expect(texts.filter((t) => t.includes(localEcho('second')))).toHaveLength(1);
        await sleep(50);
        expect(log.names).toEqual(['ai-message-response', 'ai-message-response']);
        socket.close();
      });

      it('the `message` event gets no reply and the socket stays healthy', async () => {
        const { socket, log } = await seed000Client();
        socket.emit('message', 'hello there');
        socket.emit('message', { any: ['thing', 1] });
        await sleep(150);
        expect(log.events).toEqual([]);
        expect(socket.connected).toBe(true);
        socket.emit('ai-message', { prompt: 'still there?' });
        expect(await log.next('ai-message-response')).toEqual({ response: expect.stringContaining(localEcho('still there?')) });
        socket.close();
      });

      it.each([
        ['a number prompt', { prompt: 42 }, /prompt must be a string/],
        ['an empty prompt', { prompt: '' }, /prompt must not be empty/],
        ['a blank prompt', { prompt: '   ' }, /prompt must not be empty/],
        ['a null prompt', { prompt: null }, /prompt/],
      ])('%s answers ai-message-response {error, code: BAD_REQUEST}', async (_name, payload, message) => {
        const { socket, log } = await seed000Client();
        (socket as unknown as LooseClient).emit('ai-message', payload);
        const reply = await log.next('ai-message-response');
        expect(reply).toEqual({ error: expect.stringMatching(message), code: 'BAD_REQUEST' });
        await sleep(30);
        expect(log.names).toEqual(['ai-message-response']);
        expect(socket.connected).toBe(true);
        socket.close();
      });

      it('{prompt, chatId} is treated as seed 000, with no seed 001 reply', async () => {
        const { socket, log } = await seed000Client();
        socket.emit('ai-message', { prompt: 'prompt wins', chatId: 'chat-000-both' });
        expect(await log.next('ai-message-response')).toEqual({ response: expect.stringContaining(localEcho('prompt wins')) });
        await sleep(50);
        expect(log.names).toEqual(['ai-message-response']);
        // Anonymous and seed 000: the chatId was not used as a persisted seed 001 chat.
        expect(await conversationOf(gw(), 'chat-000-both')).toBeUndefined();
        socket.close();
      });
    });

    describe('seed 001: persisted chat with the cookie token', () => {
      it('ai-message {chatId, content} answers ai-response {chat: chatId, content} and stores both sides', async () => {
        const chatId = `chat-001-${transport}`;
        const { socket, log } = await seed001Client(alice);
        let received: { chat: string; content: string } | undefined;
        socket.on('ai-response', (data) => {
          if ('content' in data) received = data;
        });
        socket.emit('ai-message', { chatId, content: 'Remember that my cat is called Tom' });
        const reply = await log.next('ai-response');
        expect(reply).toEqual({ chat: chatId, content: expect.stringContaining(localEcho('Remember that my cat is called Tom')) });
        expect(received).toEqual(reply);

        expect(await conversationOf(gw(), chatId, alice.user.id)).toMatchObject({ id: chatId, ownerId: alice.user.id });
        const items = await messagesOf(gw(), chatId, alice.user.id);
        expect(items.map((m) => [m.role, m.content, m.finishReason ?? null])).toEqual([
          ['user', 'Remember that my cat is called Tom', null],
          ['assistant', (reply as { content: string }).content, 'stop'],
        ]);

        // A second message in the same chat sees the history.
        socket.emit('ai-message', { chatId, content: 'What is my cat called?' });
        const second = await log.next('ai-response');
        expect(second).toEqual({ chat: chatId, content: expect.stringContaining('2 earlier messages') });
        const after = { items: await messagesOf(gw(), chatId, alice.user.id) };
        expect(after.items.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
        socket.close();
      });

      it.each([
        ['no chatId', { content: 'hi' }],
        ['no content', { chatId: 'chat-001-missing' }],
        ['an empty content', { chatId: 'chat-001-missing', content: '' }],
        ['an empty object', {}],
      ])('%s answers ai-response {error: "chatId and content are required", code: BAD_REQUEST}', async (_name, payload) => {
        const { socket, log } = await seed001Client(alice);
        (socket as unknown as LooseClient).emit('ai-message', payload);
        expect(await log.next('ai-response')).toEqual({ error: 'chatId and content are required', code: 'BAD_REQUEST' });
        expect(socket.connected).toBe(true);
        expect(await conversationOf(gw(), 'chat-001-missing')).toBeUndefined();
        socket.close();
      });

      it('an invalid chatId answers BAD_REQUEST and stores nothing', async () => {
        const { socket, log } = await seed001Client(alice);
        socket.emit('ai-message', { chatId: '../../etc/passwd', content: 'hi' });
        expect(await log.next('ai-response')).toEqual({ error: expect.stringMatching(/chatId/), code: 'BAD_REQUEST' });
        socket.close();
      });

      it('an anonymous client answers ai-response {error, code: UNAUTHORIZED} and stores nothing', async () => {
        const chatId = `chat-001-anon-${transport}`;
        const { socket, log } = await seed001Client(undefined);
        socket.emit('ai-message', { chatId, content: 'who am I?' });
        expect(await log.next('ai-response')).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
        expect(await conversationOf(gw(), chatId)).toBeUndefined();
        expect(socket.connected).toBe(true);
        socket.close();
      });

      it("another user's chatId starts the caller's own chat and leaves that one untouched and unseen", async () => {
        const chatId = `chat-001-bob-${transport}`;
        const asBob = await seed001Client(bob);
        asBob.socket.emit('ai-message', { chatId, content: "Bob's secret" });
        expect(await asBob.log.next('ai-response')).toMatchObject({ chat: chatId });

        const asAlice = await seed001Client(alice);
        asAlice.socket.emit('ai-message', { chatId, content: 'let me in' });
        const reply = await asAlice.log.next('ai-response');
        expect(reply).toEqual({ chat: chatId, content: expect.stringContaining('This is the start of the conversation') });
        expect(JSON.stringify(reply)).not.toContain("Bob's secret");
        expect((await messagesOf(gw(), chatId, bob.user.id)).map((m) => m.content)).toEqual(["Bob's secret", expect.any(String)]);
        expect((await messagesOf(gw(), chatId, alice.user.id)).map((m) => m.content)).toEqual(['let me in', expect.any(String)]);
        asBob.socket.close();
        asAlice.socket.close();
      });

      it('{prompt, chatId} from a signed-in client is treated as seed 000', async () => {
        const chatId = `chat-001-prompt-${transport}`;
        const { socket, log } = await seed001Client(alice);
        socket.emit('ai-message', { prompt: 'one shot please', chatId });
        expect(await log.next('ai-message-response')).toEqual({ response: expect.stringContaining(localEcho('one shot please')) });
        await sleep(50);
        expect(log.names).toEqual(['ai-message-response']);
        expect(await conversationOf(gw(), chatId, alice.user.id)).toBeUndefined();
        socket.close();
      });
    });
  });
});

describe('a seed 000/001 turn stopped by its owner from /ai (chat:stop {conversationId})', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, LOCAL_MODEL_TOKEN_DELAY_MS: '30' });

  it('seed 001 still answers ai-response, with the reply as far as it got, which is what is stored', async () => {
    const alice = await register(gw().url, 'alice-001-stop@example.com');
    const root = client<DefaultClient>(gw().url, { extraHeaders: { cookie: alice.cookie } });
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    const ai = client<LooseClient>(`${gw().url}/ai`, { auth: { token: alice.token } });
    await Promise.all([connected(root), connected(ai)]);
    const chatId = 'stopped-from-another-tab';
    root.emit('ai-message', { chatId, content: 'a reply I will stop from the other tab' });
    await sleep(300);
    ai.emit('chat:stop', { conversationId: chatId });
    const reply = (await rootLog.next('ai-response', 5000)) as { chat: string; content: string };
    const stored = (await messagesOf(gw(), chatId, alice.user.id)).find((m) => m.role === 'assistant');
    expect(stored?.finishReason).toBe('stopped');
    expect(reply).toEqual({ chat: chatId, content: stored?.content });
    expect(reply.content.length).toBeGreaterThan(0);
    root.close();
    ai.close();
  });
});
