/**
 * Long-term memory end to end (seed 001, done right): what a user says in one conversation
 * reaches the model in another, for that user only, on the embedded store and on Pinecone
 * (the real client against the stand-in), over SSE and seed 001's Socket.IO `ai-message`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { EventLog, client, closeAllClients, connected, type DefaultClient } from '../socket/socket-harness.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';
import { startPineconeStandin, type PineconeStandin } from '../standins/pinecone-standin.js';

const KEY = 'sk-memory-e2e';
const FACT = 'My favourite colour is teal and my cat is called Biscuit';
const QUESTION = 'What is my favourite colour and what is my cat called?';

interface Setup {
  name: string;
  start(): Promise<{ env: Record<string, string>; pinecone?: PineconeStandin; close(): Promise<void> }>;
}

const setups: Setup[] = [
  { name: 'embedded store (sqlite-vec)', start: async () => ({ env: {}, close: async () => {} }) },
  {
    name: 'Pinecone (real client, local data-plane stand-in)',
    start: async () => {
      const pinecone = await startPineconeStandin({ dimension: 384, apiKey: 'pc-test-key' });
      return {
        env: { PINECONE_API_KEY: 'pc-test-key', PINECONE_INDEX_HOST: pinecone.url, PINECONE_MAX_RETRIES: '0' },
        pinecone,
        close: () => pinecone.close(),
      };
    },
  },
];

for (const setup of setups) {
  // One user's story, in order: a fact remembered, recalled, listed, erased, then stated again
  // and deleted with its conversation (each step starts from where the last one left off).
  describe(`long-term memory on the ${setup.name}`, { shuffle: false }, () => {
    let standin: Standin;
    let gw: TestGateway;
    let backend: Awaited<ReturnType<Setup['start']>>;
    let alice: Account;
    let bob: Account;

    beforeAll(async () => {
      standin = await startOpenAIStandin({ apiKey: KEY });
      backend = await setup.start();
      gw = await startGateway({
        JWT_SECRET: TEST_JWT_SECRET,
        OPENAI_API_KEY: KEY,
        OPENAI_BASE_URL: standin.url,
        DEFAULT_MODEL: 'gpt-4o-mini',
        PROVIDER_MAX_RETRIES: '0',
        RATE_LIMIT_ANON: '1000',
        ...backend.env,
      });
      [alice, bob] = await Promise.all([register(gw.url, 'alice-memory@example.com'), register(gw.url, 'bob-memory@example.com')]);
    });
    afterAll(async () => {
      closeAllClients();
      await gw.destroy();
      await backend.close();
      await standin.close();
    });

    /** What the model was sent on the last chat request, as one string. */
    const lastPrompt = () => JSON.stringify(standin.requests.filter((r) => r.path === '/v1/chat/completions').at(-1)?.body ?? null);
    const memories = async (who: Account) =>
      (await (await fetch(`${gw.url}/api/v2/memory`, { headers: bearer(who) })).json()) as { memories: { id: string; text: string; conversationId: string }[]; enabled: boolean };
    const remembered = (who: Account, text: string) => waitFor(async () => (await memories(who)).memories.some((m) => m.text.includes(text)), 5000);
    const ask = async (who: Account | undefined, sessionId: string, message = QUESTION) => {
      const events = await readSse(await postChat(gw.url, { message, sessionId }, who ? bearer(who) : {}));
      expect(events.at(-1)).toMatchObject({ done: true });
      return lastPrompt();
    };
    const askOverSeed001 = async (who: Account, chatId: string) => {
      const socket = client<DefaultClient>(gw.url, { transports: ['websocket'], extraHeaders: { cookie: who.cookie } });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      socket.emit('ai-message', { chatId, content: QUESTION });
      expect(await log.next('ai-response')).toMatchObject({ chat: chatId });
      socket.close();
      return lastPrompt();
    };

    it('a fact stated in one conversation reaches the model in another, for that user only', async () => {
      await ask(alice, 'fact-1', FACT);
      await remembered(alice, 'teal');
      // A new conversation over SSE: the request to the model carries the fact, in one delimited system block.
      const prompt = await ask(alice, 'new-sse');
      expect(prompt).toContain('teal');
      expect(prompt).toContain('Long-term memory');
      expect(prompt).toContain('(end of long-term memory)');
      // And over seed 001's Socket.IO protocol.
      expect(await askOverSeed001(alice, 'new-001')).toContain('Biscuit');
      // Nobody else gets a trace of it.
      expect(await ask(bob, 'bob-sse')).not.toContain('teal');
      expect(await askOverSeed001(bob, 'bob-001')).not.toContain('Biscuit');
      expect(await ask(undefined, 'anon-sse')).not.toContain('teal');
      expect((await memories(bob)).memories.map((m) => m.text).join(' ')).not.toContain('teal');
      if (backend.pinecone) {
        // Every query Pinecone saw carried the owner as a filter, in that owner's namespace.
        const queries = backend.pinecone.requests.filter((r) => r.path === '/query');
        expect(queries.length).toBeGreaterThan(0);
        for (const q of queries) expect(JSON.stringify((q.body as { filter?: unknown }).filter)).toMatch(/ownerId/);
        expect(new Set(backend.pinecone.namespaces()).size).toBeGreaterThanOrEqual(2);
      }
    });

    it('memories already in the short-term window are not recalled again', async () => {
      await ask(alice, 'window', 'The spare key is under the blue flowerpot');
      await remembered(alice, 'flowerpot');
      const prompt = JSON.parse(await ask(alice, 'window', 'Where is the spare key?')) as { messages: { role: string; content: string }[] };
      const memoryBlock = prompt.messages.find((m) => m.role === 'system' && m.content.startsWith('Long-term memory'));
      expect(memoryBlock?.content ?? '').not.toContain('flowerpot');
      // It is still in the conversation itself.
      expect(prompt.messages.some((m) => m.role === 'user' && m.content.includes('flowerpot'))).toBe(true);
    });

    it('the user is in charge: list, forget one, another user\'s id is NOT_FOUND, anonymous is 401', async () => {
      const list = await memories(alice);
      expect(list.enabled).toBe(true);
      expect(list.memories.length).toBeGreaterThan(0);
      const one = list.memories.find((m) => m.text.includes('flowerpot'))!;
      expect((await fetch(`${gw.url}/api/v2/memory/${one.id}`, { method: 'DELETE', headers: bearer(bob) })).status).toBe(404);
      expect((await fetch(`${gw.url}/api/v2/memory`)).status).toBe(401);
      expect((await fetch(`${gw.url}/api/v2/memory`, { method: 'DELETE' })).status).toBe(401);
      const del = await fetch(`${gw.url}/api/v2/memory/${one.id}`, { method: 'DELETE', headers: bearer(alice) });
      expect(del.status).toBe(200);
      expect((await memories(alice)).memories.map((m) => m.id)).not.toContain(one.id);
      expect((await fetch(`${gw.url}/api/v2/memory/${one.id}`, { method: 'DELETE', headers: bearer(alice) })).status).toBe(404);
      // Pagination, newest first.
      const page = (await (await fetch(`${gw.url}/api/v2/memory?limit=1`, { headers: bearer(alice) })).json()) as { memories: unknown[]; nextCursor: string | null };
      expect(page.memories).toHaveLength(1);
      expect(page.nextCursor).not.toBeNull();
    });

    it('after erasing all memories the fact never reaches the model again', async () => {
      const erase = await fetch(`${gw.url}/api/v2/memory`, { method: 'DELETE', headers: bearer(alice) });
      expect(erase.status).toBe(200);
      expect((await memories(alice)).memories).toEqual([]);
      expect(await ask(alice, 'after-erase')).not.toContain('teal');
    });

    it('after deleting the conversation it came from, the fact never reaches the model again', async () => {
      await ask(alice, 'fact-2', FACT);
      await remembered(alice, 'teal');
      expect(await ask(alice, 'check-2')).toContain('teal');
      const del = await fetch(`${gw.url}/api/v2/conversations/fact-2`, { method: 'DELETE', headers: bearer(alice) });
      expect(del.status).toBe(200);
      expect((await memories(alice)).memories.filter((m) => m.conversationId === 'fact-2')).toEqual([]);
      expect(await ask(alice, 'after-delete')).not.toContain('teal');
    });

    it('after opting out, the fact never reaches the model again (and opting back in resumes)', async () => {
      await ask(alice, 'fact-3', FACT);
      await remembered(alice, 'teal');
      const off = await fetch(`${gw.url}/api/v2/memory/settings`, { method: 'PUT', headers: { ...bearer(alice), 'Content-Type': 'application/json' }, body: '{"enabled":false}' });
      expect(await off.json()).toEqual({ enabled: false });
      expect(await ask(alice, 'opted-out')).not.toContain('teal');
      expect(await askOverSeed001(alice, 'opted-out-001')).not.toContain('teal');
      await fetch(`${gw.url}/api/v2/memory/settings`, { method: 'PUT', headers: { ...bearer(alice), 'Content-Type': 'application/json' }, body: '{"enabled":true}' });
      expect(await ask(alice, 'opted-in')).toContain('teal');
      const bad = await fetch(`${gw.url}/api/v2/memory/settings`, { method: 'PUT', headers: { ...bearer(alice), 'Content-Type': 'application/json' }, body: '{"enabled":"nope"}' });
      expect(bad.status).toBe(400);
    });
  });
}

describe('long-term memory degrades, never fails a turn', () => {
  let standin: Standin;
  let pinecone: PineconeStandin;
  let gw: TestGateway;
  let carol: Account;
  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: KEY });
    pinecone = await startPineconeStandin({ dimension: 256, apiKey: 'pc-key' });
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: standin.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      PROVIDER_MAX_RETRIES: '0',
      EMBEDDING_PROVIDER: 'openai',
      EMBEDDING_DIMENSIONS: '256',
      PINECONE_API_KEY: 'pc-key',
      PINECONE_INDEX_HOST: pinecone.url,
      PINECONE_MAX_RETRIES: '0',
      MEMORY_RECALL_TIMEOUT_MS: '1000',
    });
    carol = await register(gw.url, 'carol-memory@example.com');
  });
  afterAll(async () => {
    await gw.destroy();
    await pinecone.close();
    await standin.close();
  });

  const readiness = async () => (await (await fetch(`${gw.url}/readyz`)).json()) as { status: string; memory: { status: string; error?: string } };

  it('with the embedder down, chat still streams (short-term context only) and /readyz says memory is degraded', async () => {
    standin.setScript((req) => (req.path.endsWith('/embeddings') ? { tokens: [], status: 503 } : { tokens: ['still', ' here'] }));
    const events = await readSse(await postChat(gw.url, { message: 'hello', sessionId: 'embedder-down' }, bearer(carol)));
    expect(events.at(-1)).toMatchObject({ done: true });
    expect(events.filter((e) => 'content' in e).map((e) => e.content).join('')).toBe('still here');
    expect(await readiness()).toMatchObject({ status: 'degraded', memory: { status: 'degraded', error: expect.stringMatching(/recall|write/) } });
  });

  it('with Pinecone answering 5xx, chat still streams; the queued write is retried and lands once Pinecone is back', async () => {
    standin.setScript(() => ({ tokens: ['ok'] }));
    pinecone.failNext(50, { status: 503 });
    const events = await readSse(await postChat(gw.url, { message: 'remember the lighthouse', sessionId: 'pinecone-down' }, bearer(carol)));
    expect(events.at(-1)).toMatchObject({ done: true });
    expect((await readiness()).memory.status).toBe('degraded');
    const queued = await gw.server.services.store.pendingMemories(100, Date.now() + 3_600_000);
    expect(queued.some((p) => p.message.content === 'remember the lighthouse')).toBe(true);
    pinecone.resetFaults();
    // The writer retries on its own (1 s backoff, then the 5 s poll).
    await waitFor(
      async () => {
        const res = await fetch(`${gw.url}/api/v2/memory`, { headers: bearer(carol) });
        const body = (await res.json()) as { memories: { text: string }[] };
        return body.memories.some((m) => m.text === 'remember the lighthouse');
      },
      15_000,
      250,
    );
    const left = await gw.server.services.store.pendingMemories(100, Date.now() + 3_600_000);
    expect(left.filter((p) => p.message.conversationKey.endsWith('/pinecone-down'))).toEqual([]);
  });
});
