import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuplicateEmailError, type ConversationStore } from '../../src/stores/conversation-store.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

interface Adapter {
  name: string;
  open(): Promise<{ store: ConversationStore; reopen?: () => Promise<ConversationStore>; cleanup(): Promise<void> }>;
}

const adapters: Adapter[] = [
  {
    name: 'memory',
    async open() {
      return { store: new MemoryConversationStore(), cleanup: async () => {} };
    },
  },
  {
    name: 'sqlite',
    async open() {
      const dir = tempDataDir();
      const file = join(dir, 'store.sqlite');
      return {
        store: new SqliteConversationStore(file),
        reopen: async () => new SqliteConversationStore(file),
        cleanup: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'mongodb (real driver, local wire-protocol stand-in)',
    async open() {
      const standin: MongoStandin = await startMongoStandin();
      const db = `contract_${Date.now()}`;
      return {
        store: await MongoConversationStore.connect(standin.uri, db),
        reopen: async () => MongoConversationStore.connect(standin.uri, db),
        cleanup: () => standin.close(),
      };
    },
  },
];

// Against a real server too, whenever one is configured.
const realMongo = process.env.MONGODB_URI;
if (realMongo) {
  adapters.push({
    name: 'mongodb (real server from MONGODB_URI)',
    async open() {
      const db = `contract_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
      const store = await MongoConversationStore.connect(realMongo, db);
      return {
        store,
        reopen: async () => MongoConversationStore.connect(realMongo, db),
        cleanup: async () => {
          const { MongoClient } = await import('mongodb');
          const client = await MongoClient.connect(realMongo);
          await client.db(db).dropDatabase();
          await client.close();
        },
      };
    },
  });
}

for (const adapter of adapters) {
  describe(`ConversationStore contract: ${adapter.name}`, () => {
    let store: ConversationStore;
    let handle: Awaited<ReturnType<Adapter['open']>>;

    beforeAll(async () => {
      handle = await adapter.open();
      store = handle.store;
    });
    afterAll(async () => {
      await store.close();
      await handle.cleanup();
    });

    it('ensureConversation creates once and then returns the existing record', async () => {
      const a = await store.ensureConversation({ id: 'c-ensure', ownerId: 'u1', title: 'first' });
      expect(a.created).toBe(true);
      expect(a.conversation).toMatchObject({ id: 'c-ensure', ownerId: 'u1', title: 'first' });
      const b = await store.ensureConversation({ id: 'c-ensure', ownerId: 'u2', title: 'second' });
      expect(b.created).toBe(false);
      expect(b.conversation).toMatchObject({ id: 'c-ensure', ownerId: 'u1', title: 'first' });
      expect(await store.getConversation('c-missing')).toBeUndefined();
    });

    it('concurrent ensureConversation of one new id: exactly one creation, one owner', async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => store.ensureConversation({ id: 'c-race', ownerId: `racer-${i}`, title: 't' })),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.conversation.ownerId)).size).toBe(1);
    });

    it('anonymous conversations have a null owner', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-anon', ownerId: null, title: 't' });
      expect(conversation.ownerId).toBeNull();
      expect((await store.getConversation('c-anon'))?.ownerId).toBeNull();
    });

    it('appends messages in order, keeps metadata, and returns the last N oldest first', async () => {
      await store.ensureConversation({ id: 'c-msgs', ownerId: 'u1', title: 't' });
      for (let i = 0; i < 25; i++) {
        await store.appendMessage({ conversationId: 'c-msgs', role: i % 2 ? 'assistant' : 'user', content: `m${i}` });
      }
      const reply = await store.appendMessage({
        conversationId: 'c-msgs',
        role: 'assistant',
        content: 'final',
        model: 'openai:gpt-4o',
        finishReason: 'length',
        usage: { inputTokens: 10, outputTokens: 20 },
      });
      expect(reply.id).toMatch(/^[0-9a-f-]{36}$/);
      const recent = await store.recentMessages('c-msgs', 20);
      expect(recent).toHaveLength(20);
      expect(recent.map((m) => m.content)).toEqual([...Array.from({ length: 19 }, (_, i) => `m${i + 6}`), 'final']);
      expect(recent.at(-1)).toEqual({
        id: reply.id,
        conversationId: 'c-msgs',
        role: 'assistant',
        content: 'final',
        createdAt: reply.createdAt,
        model: 'openai:gpt-4o',
        finishReason: 'length',
        usage: { inputTokens: 10, outputTokens: 20 },
      });
      expect(recent[0]).not.toHaveProperty('finishReason');
    });

    it('paginates messages oldest first with an opaque cursor', async () => {
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 10; page++) {
        const res = await store.listMessages('c-msgs', { limit: 7, after });
        seen.push(...res.items.map((m) => m.content));
        if (!res.nextCursor) break;
        after = res.nextCursor;
      }
      expect(seen).toEqual([...Array.from({ length: 25 }, (_, i) => `m${i}`), 'final']);
      expect((await store.listMessages('c-msgs', { limit: 100 })).nextCursor).toBeNull();
    });

    it('lists an owner’s conversations newest activity first, paginated, never another owner’s', async () => {
      for (const id of ['o-1', 'o-2', 'o-3']) {
        await store.ensureConversation({ id, ownerId: 'lister', title: id });
        await store.appendMessage({ conversationId: id, role: 'user', content: 'x' });
      }
      await store.ensureConversation({ id: 'o-other', ownerId: 'someone-else', title: 'x' });
      await store.appendMessage({ conversationId: 'o-1', role: 'user', content: 'bump' });
      const first = await store.listConversations('lister', { limit: 2 });
      expect(first.items.map((c) => c.id)).toEqual(['o-1', 'o-3']);
      expect(first.nextCursor).not.toBeNull();
      const second = await store.listConversations('lister', { limit: 2, before: first.nextCursor! });
      expect(second.items.map((c) => c.id)).toEqual(['o-2']);
      expect(second.nextCursor).toBeNull();
    });

    it('deletes a conversation with its messages and returns their ids', async () => {
      await store.ensureConversation({ id: 'c-del', ownerId: 'u1', title: 't' });
      const m1 = await store.appendMessage({ conversationId: 'c-del', role: 'user', content: 'a' });
      const m2 = await store.appendMessage({ conversationId: 'c-del', role: 'assistant', content: 'b' });
      expect((await store.deleteConversation('c-del')).sort()).toEqual([m1.id, m2.id].sort());
      expect(await store.getConversation('c-del')).toBeUndefined();
      expect(await store.recentMessages('c-del', 10)).toEqual([]);
      expect(await store.deleteConversation('c-del')).toEqual([]);
    });

    it('users: unique email (case-insensitive), lookup by email and id', async () => {
      const u = await store.createUser({ email: 'Ada@Example.com', name: 'Ada', passwordHash: '$argon2id$x' });
      expect(u).toMatchObject({ email: 'ada@example.com', name: 'Ada', passwordHash: '$argon2id$x' });
      await expect(store.createUser({ email: 'ada@example.COM', name: null, passwordHash: 'h' })).rejects.toBeInstanceOf(DuplicateEmailError);
      expect(await store.findUserByEmail('ADA@example.com')).toEqual(u);
      expect(await store.findUserById(u.id)).toEqual(u);
      expect(await store.findUserById('nope')).toBeUndefined();
      expect(await store.findUserByEmail('nobody@example.com')).toBeUndefined();
    });

    it('ping answers', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('data survives closing and reopening (durable adapters)', async () => {
      if (!handle.reopen) {
        expect(store.kind).toBe('memory');
        return;
      }
      await store.ensureConversation({ id: 'c-durable', ownerId: 'u9', title: 'kept' });
      await store.appendMessage({ conversationId: 'c-durable', role: 'user', content: 'still here' });
      await store.close();
      store = await handle.reopen();
      expect(await store.getConversation('c-durable')).toMatchObject({ ownerId: 'u9', title: 'kept' });
      expect((await store.recentMessages('c-durable', 5)).map((m) => m.content)).toEqual(['still here']);
    });
  });
}
