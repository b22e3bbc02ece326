/**
 * The long-term memory writer against deletions, opt-outs and other writers, with real stores
 * (the in-memory, SQLite and MongoDB conversation stores, the SQLite vector store, the local
 * embedder). Where a test needs a write to be under way while something else happens, the
 * embedder is the local one behind a gate or a delay: a remote provider taking its time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Embedder } from '../../src/memory/embedder.js';
import { LocalEmbedder } from '../../src/memory/local-embedder.js';
import { LongTermMemory } from '../../src/memory/long-term-memory.js';
import { SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { silentLogger } from '../../src/logger.js';
import type { ConversationStore } from '../../src/stores/conversation-store.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';
import { startPineconeStandin, type PineconeStandin } from '../standins/pinecone-standin.js';

const local = new LocalEmbedder({ dimensions: 64 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'writer-races-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function vectorStore(): Promise<SqliteMemoryStore> {
  const store = new SqliteMemoryStore(join(tempDir(), 'memory.sqlite'), { dimensions: 64, embedder: 'local:test' });
  await store.init();
  return store;
}

/** One node's writer. */
async function writer(conversations: ConversationStore, store: SqliteMemoryStore, embedder: Embedder = local): Promise<LongTermMemory> {
  const memory = new LongTermMemory({ embedder, store, conversations, logger: silentLogger, options: { topK: 3, minScore: -1, recallTimeoutMs: 5_000, windowSize: 0 } });
  await memory.init();
  return memory;
}

/** The local embedder, answering only once the gate opens (a provider that takes its time). */
function gatedEmbedder() {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const state = { embedding: false, open };
  const embedder: Embedder = {
    kind: 'gated',
    model: 'local',
    dimensions: 64,
    async embed(texts, purpose) {
      state.embedding = true;
      await gate;
      return local.embed(texts, purpose);
    },
  };
  return { embedder, state };
}

describe('the memory writer', () => {
  let mongo: MongoStandin;
  beforeAll(async () => {
    mongo = await startMongoStandin();
  });
  afterAll(async () => {
    await mongo?.close();
  });
  afterEach(() => vi.restoreAllMocks());

  it('a deletion waits for the batch being written, not for as long as anyone chats', async () => {
    const conversations = new MemoryConversationStore();
    const store = await vectorStore();
    const slow: Embedder = { kind: 'slow', model: 'local', dimensions: 64, embed: async (t, p) => (await sleep(150), local.embed(t, p)) };
    const memory = await writer(conversations, store, slow);
    const { conversation: mine } = await conversations.ensureConversation({ id: 'mine', ownerId: 'victim', title: 't' });
    const m = await conversations.appendMessage({ conversationKey: mine.key, role: 'user', content: 'my secret', remember: true });
    memory.wake();
    await waitFor(async () => (await store.list('victim', { limit: 10 })).items.length === 1, 5_000);
    // Someone else chats: a remembered message every 100 ms, each waking the writer.
    const { conversation: other } = await conversations.ensureConversation({ id: 'other', ownerId: 'chatty', title: 't' });
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        await conversations.appendMessage({ conversationKey: other.key, role: 'user', content: `hello ${i}`, remember: true });
        memory.wake();
        await sleep(100);
      }
    })();
    try {
      await sleep(300);
      const started = performance.now();
      expect(await memory.forget('victim', m.id)).toBe(true);
      // One batch of 150 ms at most, not the traffic's length.
      expect(performance.now() - started).toBeLessThan(2_000);
      await memory.erase('victim');
      expect(performance.now() - started).toBeLessThan(4_000);
    } finally {
      stop = true;
      await traffic;
      await memory.close();
    }
  });

  const stores: [string, () => Promise<ConversationStore>][] = [
    ['memory', async () => new MemoryConversationStore()],
    ['sqlite', async () => new SqliteConversationStore(join(tempDir(), 'gateway.sqlite'))],
    ['mongodb', () => MongoConversationStore.connect(mongo.uri, `writer-races-${Math.random().toString(36).slice(2)}`)],
  ];
  for (const [name, open] of stores) {
    it(`${name}: a writer that outlived its claim leaves alone the memory another writer made meanwhile`, async () => {
      const conversations = await open();
      const store = await vectorStore();
      const { embedder, state } = gatedEmbedder();
      const first = await writer(conversations, store, embedder);
      const { conversation } = await conversations.ensureConversation({ id: 'c', ownerId: 'u', title: 't' });
      const m = await conversations.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'remember the blue door', remember: true });
      first.wake();
      await waitFor(() => state.embedding);
      // Far later (the provider hung): the claim is over, and another node's writer takes the entry.
      const now = Date.now.bind(Date);
      vi.spyOn(Date, 'now').mockImplementation(() => now() + 31 * 60_000);
      const second = await writer(conversations, store);
      await waitFor(async () => (await store.list('u', { limit: 10 })).items.length === 1, 5_000);
      await second.idle();
      expect(await conversations.pendingMemories(10, Date.now() + 3_600_000)).toEqual([]);
      // The first writer's provider answers at last: it neither writes nor takes anything back.
      state.open();
      await sleep(100);
      await first.idle();
      expect((await store.list('u', { limit: 10 })).items.map((r) => r.id)).toEqual([m.id]);
      await first.close();
      await second.close();
      await conversations.close?.();
    });
  }

  it('a batch whose settling failed through its retries (a store outage) is settled at the next look, not held for the rest of its claim', async () => {
    const conversations = new MemoryConversationStore();
    const store = await vectorStore();
    let failing = 3; // every attempt of the first batch: 1 s, then 3 s apart
    const settle = conversations.settleMemories.bind(conversations);
    conversations.settleMemories = async (...args) => {
      if (failing-- > 0) throw new Error('store unavailable');
      return settle(...args);
    };
    // The provider is down as well: the write fails, and is due again after its 1 s backoff.
    const down: Embedder = { kind: 'down', model: 'local', dimensions: 64, embed: () => Promise.reject(new Error('provider 503')) };
    const memory = await writer(conversations, store, down);
    try {
      const { conversation } = await conversations.ensureConversation({ id: 'c', ownerId: 'u', title: 't' });
      await conversations.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'remember me', remember: true });
      memory.wake();
      await waitFor(() => failing <= 0, 10_000, 50);
      await memory.idle();
      // Claimed for 30 minutes while the store was out.
      expect(await conversations.pendingMemories(10, Date.now() + 60_000)).toEqual([]);
      // The store answers again: the next look at the queue settles the batch, whose retry (its
      // 1 s backoff long past) is then made at once, and fails again, as the provider is down.
      memory.wake();
      await waitFor(async () => (await conversations.pendingMemories(10, Date.now() + 60_000)).length === 1, 10_000, 50);
      expect((await conversations.pendingMemories(10, Date.now() + 60_000))[0]!.attempts).toBeGreaterThanOrEqual(1);
    } finally {
      await memory.close();
    }
  });

  it('memories erased on one node while another writes them are gone, even when that writer could not settle at first', async () => {
    const shared = new MemoryConversationStore();
    const store = await vectorStore();
    let failing = 0;
    // Node B's connection to the shared store: its next settles fail (a short outage).
    const onB = new Proxy(shared, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'settleMemories')
          return async (...args: Parameters<ConversationStore['settleMemories']>) => {
            if (failing-- > 0) throw new Error('connection reset');
            return shared.settleMemories(...args);
          };
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const { embedder, state } = gatedEmbedder();
    const b = await writer(onB, store, embedder);
    const a = await writer(shared, store);
    const { conversation } = await shared.ensureConversation({ id: 'c', ownerId: 'u', title: 't' });
    await shared.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'my diagnosis is X', remember: true });
    b.wake();
    await waitFor(() => state.embedding);
    await a.erase('u'); // DELETE /api/v2/memory on node A
    failing = 2;
    state.open();
    await sleep(100);
    await waitFor(async () => (await b.idle(), failing <= 0), 10_000);
    await b.idle();
    expect((await store.list('u', { limit: 10 })).items).toEqual([]);
    expect(await shared.pendingMemories(10, Date.now() + 3_600_000)).toEqual([]);
    await a.close();
    await b.close();
  });
});

describe('memory settings and forgetting, through the gateway', () => {
  let a: TestGateway;
  let b: TestGateway;
  let pinecone: PineconeStandin;
  let withPinecone: TestGateway;
  beforeAll(async () => {
    a = await startGateway({ RATE_LIMIT_USER: '10000', LOCAL_MODEL_TOKEN_DELAY_MS: '0' });
    b = await startGateway({ RATE_LIMIT_USER: '10000', LOCAL_MODEL_TOKEN_DELAY_MS: '0', DATA_DIR: a.dataDir });
    pinecone = await startPineconeStandin({ dimension: 384, apiKey: 'pc-key' });
    withPinecone = await startGateway({ RATE_LIMIT_USER: '10000', LOCAL_MODEL_TOKEN_DELAY_MS: '0', PINECONE_API_KEY: 'pc-key', PINECONE_INDEX_HOST: pinecone.url, PINECONE_MAX_RETRIES: '0' });
  });
  afterAll(async () => {
    await withPinecone?.destroy();
    await pinecone?.close();
    await b?.close();
    await a?.destroy();
  });

  it('an opt-out on one node: the other node remembers nothing of the chats after it', async () => {
    const user = await register(a.url, 'optout-two-nodes@example.com');
    // A chat on node B first: B has the setting (on) in its cache.
    await (await postChat(b.url, { message: 'hello before opting out', sessionId: 'before' }, bearer(user))).text();
    const put = await fetch(`${a.url}/api/v2/memory/settings`, { method: 'PUT', headers: { ...bearer(user), 'Content-Type': 'application/json' }, body: JSON.stringify({ enabled: false }) });
    expect(put.status).toBe(200);
    await (await postChat(b.url, { message: 'after opting out: my passport number is X1234567', sessionId: 'after' }, bearer(user))).text();
    // B's writer has looked at what that chat queued (dropped it, or wrongly written it) before the check.
    await waitFor(async () => (await b.server.services.store.pendingMemories(100, Date.now() + 3_600_000)).length === 0, 10_000, 50);
    await b.server.services.memory!.idle();
    const memories = (await b.server.services.memory!.list(user.user.id, { limit: 50 })).items.map((m) => m.text);
    expect(memories.filter((text) => text.includes('passport'))).toEqual([]);
  });

  it('a forgotten memory whose write is being retried (it landed, the store reported a failure) does not come back', async () => {
    const user = await register(withPinecone.url, 'forget-retried@example.com');
    const list = async () => ((await (await fetch(`${withPinecone.url}/api/v2/memory`, { headers: bearer(user) })).json()) as { memories: { id: string; text: string }[] }).memories;
    // The upsert lands; the store's check after it fails, so the write is queued for a retry.
    pinecone.failNext(1, { status: 503, path: '/vectors/fetch_by_metadata' });
    await (await postChat(withPinecone.url, { message: 'my PIN is 4711', sessionId: 'pin' }, bearer(user))).text();
    await waitFor(async () => (await list()).some((m) => m.text === 'my PIN is 4711'), 5_000);
    const memory = withPinecone.server.services.memory!;
    await memory.idle();
    const pending = await withPinecone.server.services.store.pendingMemories(10, Date.now() + 3_600_000);
    expect(pending.map((p) => p.message.content)).toContain('my PIN is 4711');
    const pin = (await list()).find((m) => m.text === 'my PIN is 4711')!;
    const deleted = await fetch(`${withPinecone.url}/api/v2/memory/${pin.id}`, { method: 'DELETE', headers: bearer(user) });
    expect(deleted.status).toBe(200);
    // The retry is due a second later: the writer finds nothing of it left to write.
    await sleep(1_200);
    memory.wake();
    await sleep(200);
    await memory.idle();
    expect((await list()).map((m) => m.text)).not.toContain('my PIN is 4711');
  });

  it('a page cursor Pinecone never gave out is the client’s mistake (400), not an outage', async () => {
    const user = await register(withPinecone.url, 'bad-cursor@example.com');
    for (const cursor of ['not-a-cursor', 'zz.x', 'A'.repeat(300)]) {
      const res = await fetch(`${withPinecone.url}/api/v2/memory?cursor=${encodeURIComponent(cursor)}`, { headers: bearer(user) });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'BAD_REQUEST' });
    }
  });
});
