/**
 * The memory writer gives a batch's embedding a deadline of its own: a provider that hangs (or
 * an embedder that ignores its abort signal) costs that batch a retry, not the node's memory
 * writes for as long as the provider's timeouts and retries allow.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Embedder } from '../../src/memory/embedder.js';
import { LocalEmbedder } from '../../src/memory/local-embedder.js';
import { LongTermMemory } from '../../src/memory/long-term-memory.js';
import { SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { silentLogger } from '../../src/logger.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';

const local = new LocalEmbedder({ dimensions: 64 });
let memory: LongTermMemory | undefined;
afterAll(async () => memory?.close(100));

describe('the memory writer and a hanging embedding', () => {
  it('gives up on the batch at its deadline (degraded), and writes it on a later try', async () => {
    let hang = true;
    const signals: (AbortSignal | undefined)[] = [];
    const embedder: Embedder = {
      kind: 'hanging',
      model: 'local',
      dimensions: 64,
      embed(texts, purpose, signal) {
        signals.push(signal);
        // Hangs without looking at its signal: the writer's own race must end the wait.
        if (hang) return new Promise<Float32Array[]>(() => {});
        return local.embed(texts, purpose);
      },
    };
    const conversations = new MemoryConversationStore();
    const store = new SqliteMemoryStore(join(tempDataDir(), 'memory.sqlite'), { dimensions: 64, embedder: 'local:test' });
    await store.init();
    memory = new LongTermMemory({
      embedder,
      store,
      conversations,
      logger: silentLogger,
      options: { topK: 3, minScore: -1, recallTimeoutMs: 5_000, windowSize: 0, writeEmbedTimeoutMs: 300 },
    });
    const { conversation } = await conversations.ensureConversation({ ownerId: 'alice', id: 'c1', title: 't' });
    await conversations.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'My cat is called Biscuit', remember: true });
    const started = Date.now();
    await memory.init();
    await waitFor(async () => (await memory!.health()).status === 'degraded', 3_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(signals[0]?.aborted).toBe(true); // what a real provider's request is ended by
    hang = false;
    // Retried after the backoff (1 s for a first failure).
    await waitFor(async () => (await store.list('alice', { limit: 10 })).items.length === 1, 5_000);
    expect((await store.list('alice', { limit: 10 })).items[0]!.text).toBe('My cat is called Biscuit');
    await waitFor(async () => (await memory!.health()).status === 'ok', 3_000);
  });
});
