/**
 * The local embedder turns a text without letters or digits ("???", "👍") into the zero vector,
 * which Pinecone refuses (400 "Dense vectors must contain at least one non-zero value"). Such an
 * entry is dropped, not written and not retried, so it cannot hold back its batch; a recall for
 * such a text finds nothing without asking the store; and a batch the store refuses as a request
 * (a 4xx) is written entry by entry, so one bad entry fails only itself. The real Pinecone
 * client against the stand-in, which enforces Pinecone's rule.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalEmbedder } from '../../src/memory/local-embedder.js';
import { LongTermMemory } from '../../src/memory/long-term-memory.js';
import { PineconeMemoryStore } from '../../src/memory/pinecone-memory-store.js';
import { silentLogger } from '../../src/logger.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { startPineconeStandin, type PineconeStandin } from '../standins/pinecone-standin.js';
import { waitFor } from '../helpers/wait.js';

describe('memory writes with the local embedder and Pinecone', () => {
  let pinecone: PineconeStandin;
  let memory: LongTermMemory | undefined;
  beforeAll(async () => {
    pinecone = await startPineconeStandin({ dimension: 384, apiKey: 'k' });
  });
  afterEach(async () => {
    await memory?.close(100);
    pinecone.resetFaults();
  });
  afterAll(() => pinecone.close());

  async function setUp(ownerId: string, texts: string[]) {
    const conversations = new MemoryConversationStore();
    const store = new PineconeMemoryStore({ apiKey: 'k', indexName: 'memory', indexHost: pinecone.url, dimensions: 384, maxRetries: 0 });
    memory = new LongTermMemory({
      embedder: new LocalEmbedder(),
      store,
      conversations,
      logger: silentLogger,
      options: { topK: 3, minScore: 0.2, recallTimeoutMs: 5000, windowSize: 0 },
    });
    const { conversation } = await conversations.ensureConversation({ ownerId, id: 'c1', title: 't' });
    for (const [i, content] of texts.entries()) {
      await conversations.appendMessage({ conversationKey: conversation.key, role: i % 2 ? 'assistant' : 'user', content, remember: true });
    }
    /** Entries still queued, whenever they are due. */
    const queued = async () => (await conversations.pendingMemories(100, Date.now() + 86_400_000)).map((p) => p.message.content);
    return { memory, store, queued };
  }

  const upserts = () => pinecone.requests.filter((r) => r.path === '/vectors/upsert').length;

  it('a text without letters or digits is dropped, and the rest of its batch is written at once', async () => {
    const { memory, store, queued } = await setUp('alice', ['My cat is called Biscuit', '???', 'Nice, Biscuit is a lovely name', '👍']);
    await memory.init();
    await waitFor(async () => (await queued()).length === 0, 5000);
    expect((await store.list('alice', { limit: 10 })).items.map((m) => m.text).sort()).toEqual(['My cat is called Biscuit', 'Nice, Biscuit is a lovely name']);
    expect((await memory.health()).status).toBe('ok');
  });

  it('a recall for a text without letters or digits finds nothing without asking the store', async () => {
    const { memory, queued } = await setUp('bob', ['My dog is called Rex']);
    await memory.init();
    await waitFor(async () => (await queued()).length === 0, 5000);
    const queries = () => pinecone.requests.filter((r) => r.path === '/query').length;
    expect((await memory.recall('bob', 'what is my dog called')).map((m) => m.text)).toEqual(['My dog is called Rex']);
    const before = queries();
    expect(await memory.recall('bob', '???')).toEqual([]);
    expect(queries()).toBe(before);
    expect((await memory.health()).status).toBe('ok');
  });

  it('a batch the store refuses as a request is written entry by entry: only the refused entry is retried', async () => {
    const { memory, store, queued } = await setUp('carol', ['first fact: the sky is green', 'second fact: grass is blue', 'third fact: water is dry']);
    // The batch, then the first entry alone.
    pinecone.failNext(2, { status: 400, message: 'refused', path: '/vectors/upsert' });
    const before = upserts();
    await memory.init();
    await waitFor(async () => (await queued()).length === 1, 5000);
    expect(await queued()).toEqual(['first fact: the sky is green']);
    expect(upserts() - before).toBe(4);
    expect((await store.list('carol', { limit: 10 })).items.map((m) => m.text).sort()).toEqual(['second fact: grass is blue', 'third fact: water is dry']);
  });
});
