import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuplicateEmailError, conversationKey, type ApiKeyRecord, type ConversationStore } from '../../src/stores/conversation-store.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { countTokens } from '../../src/models/tokenizer.js';
import { tempDataDir } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

/** A UUIDv7 as another node makes it when its clock reads `ms` (this process's own ids never go back in time). */
function uuidV7At(ms: number): string {
  const random = crypto.randomUUID();
  const time = ms.toString(16).padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15, 18)}${random.slice(18)}`;
}

/** Resolves once Date.now() has moved past the millisecond it was called in. */
async function nextMillisecond(): Promise<void> {
  const start = Date.now();
  await waitFor(() => Date.now() !== start, 1000, 1);
}

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
  // One store per adapter, filled as the contract goes: later steps read what earlier ones wrote.
  describe(`ConversationStore contract: ${adapter.name}`, { shuffle: false }, () => {
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

    it('ensureConversation creates once per owner and then returns the existing record', async () => {
      const a = await store.ensureConversation({ id: 'c-ensure', ownerId: 'u1', title: 'first' });
      expect(a.created).toBe(true);
      expect(a.conversation).toMatchObject({ key: conversationKey('u1', 'c-ensure'), id: 'c-ensure', ownerId: 'u1', title: 'first' });
      const again = await store.ensureConversation({ id: 'c-ensure', ownerId: 'u1', title: 'ignored' });
      expect(again).toEqual({ conversation: a.conversation, created: false });
      expect(await store.getConversation('u1', 'c-missing')).toBeUndefined();
    });

    it('the same public id under two owners is two separate conversations', async () => {
      const mine = await store.ensureConversation({ id: 'my-session', ownerId: 'anon:aaa', title: 'mine' });
      const theirs = await store.ensureConversation({ id: 'my-session', ownerId: 'ip:10.0.0.2', title: 'theirs' });
      expect(mine.created && theirs.created).toBe(true);
      expect(mine.conversation.key).not.toBe(theirs.conversation.key);
      await store.appendMessage({ conversationKey: mine.conversation.key, role: 'user', content: 'SECRET' });
      await store.appendMessage({ conversationKey: theirs.conversation.key, role: 'user', content: 'hello' });
      expect((await store.recentMessages(theirs.conversation.key, 10)).map((m) => m.content)).toEqual(['hello']);
      expect(await store.getConversation('ip:10.0.0.2', 'my-session')).toMatchObject({ title: 'theirs' });
      expect(await store.getConversation('someone', 'my-session')).toBeUndefined();
      // Deleting or renaming under one owner leaves the other's alone.
      expect(await store.renameConversation('someone', 'my-session', 'x')).toBeUndefined();
      expect(await store.deleteConversation('someone', 'my-session')).toEqual([]);
      await store.deleteConversation('ip:10.0.0.2', 'my-session');
      expect(await store.getConversation('anon:aaa', 'my-session')).toMatchObject({ title: 'mine' });
      expect((await store.recentMessages(mine.conversation.key, 10)).map((m) => m.content)).toEqual(['SECRET']);
    });

    it('concurrent ensureConversation of one new id by one owner: exactly one creation', async () => {
      const results = await Promise.all(Array.from({ length: 8 }, () => store.ensureConversation({ id: 'c-race', ownerId: 'racer', title: 't' })));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.conversation.key)).size).toBe(1);
    });

    it('a first message can create its conversation in the same write; an existing one is kept as it is', async () => {
      const key = conversationKey('u-first', 'c-first');
      const first = await store.appendMessage({
        conversationKey: key,
        role: 'user',
        content: 'hello',
        conversation: { ownerId: 'u-first', id: 'c-first', title: 'hello' },
      });
      // A time-ordered UUIDv7.
      expect(first.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(await store.getConversation('u-first', 'c-first')).toMatchObject({ key, id: 'c-first', ownerId: 'u-first', title: 'hello' });
      await store.appendMessage({
        conversationKey: key,
        role: 'user',
        content: 'again',
        conversation: { ownerId: 'u-first', id: 'c-first', title: 'a different title' },
      });
      expect(await store.getConversation('u-first', 'c-first')).toMatchObject({ title: 'hello' });
      expect((await store.recentMessages(key, 10)).map((m) => m.content)).toEqual(['hello', 'again']);
      const list = await store.listConversations('u-first', { limit: 10 });
      expect(list.items.map((c) => c.id)).toEqual(['c-first']);
    });

    it('renames a conversation', async () => {
      await store.ensureConversation({ id: 'c-rename', ownerId: 'u1', title: 'old' });
      expect(await store.renameConversation('u1', 'c-rename', 'new title')).toMatchObject({ id: 'c-rename', title: 'new title' });
      expect(await store.getConversation('u1', 'c-rename')).toMatchObject({ title: 'new title' });
    });

    it('appends messages in order, keeps metadata, and returns the last N oldest first', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-msgs', ownerId: 'u1', title: 't' });
      const key = conversation.key;
      for (let i = 0; i < 25; i++) {
        await store.appendMessage({ conversationKey: key, role: i % 2 ? 'assistant' : 'user', content: `m${i}` });
      }
      const reply = await store.appendMessage({
        conversationKey: key,
        role: 'assistant',
        content: 'final',
        model: 'openai:gpt-4o',
        finishReason: 'length',
        usage: { inputTokens: 10, outputTokens: 20 },
        tokens: 1,
      });
      expect(reply.id).toMatch(/^[0-9a-f-]{36}$/);
      const recent = await store.recentMessages(key, 20);
      expect(recent).toHaveLength(20);
      expect(recent.map((m) => m.content)).toEqual([...Array.from({ length: 19 }, (_, i) => `m${i + 6}`), 'final']);
      expect(recent.at(-1)).toEqual({
        id: reply.id,
        conversationKey: key,
        role: 'assistant',
        content: 'final',
        createdAt: reply.createdAt,
        model: 'openai:gpt-4o',
        finishReason: 'length',
        usage: { inputTokens: 10, outputTokens: 20 },
        tokens: 1,
      });
      expect(recent[0]).not.toHaveProperty('finishReason');
    });

    it('counts a message’s tokens when none are given, and keeps a given count', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-tokens', ownerId: 'u1', title: 't' });
      const content = 'Tokens are counted once, when the message is written.';
      const counted = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content });
      const given = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content, tokens: 3 });
      expect(counted.tokens).toBe(countTokens(content));
      expect(counted.tokens).toBeGreaterThan(5);
      expect((await store.recentMessages(conversation.key, 10)).map((m) => [m.id, m.tokens])).toEqual([
        [counted.id, countTokens(content)],
        [given.id, 3],
      ]);
    });

    it('refuses a message for a conversation that does not exist, and stores nothing', async () => {
      const key = conversationKey('u1', 'c-never-made');
      await expect(store.appendMessage({ conversationKey: key, role: 'user', content: 'orphan', remember: true })).rejects.toThrow();
      expect(await store.recentMessages(key, 10)).toEqual([]);
      expect((await store.pendingMemories(100, Date.now() + 60_000)).map((p) => p.message.content)).not.toContain('orphan');
    });

    it('a reply stored while its conversation is deleted (another node) leaves nothing behind, and the memory queue keeps moving', async () => {
      // More than a batch of the memory writer (64): orphaned writes, the oldest due, must not stop it.
      for (let i = 0; i < 70; i++) {
        const id = `c-race-${i}`;
        const key = conversationKey('u-race', id);
        await store.appendMessage({ conversationKey: key, role: 'user', content: `race q ${i}`, conversation: { ownerId: 'u-race', id, title: 't' } });
        await Promise.allSettled([
          store.appendMessage({ conversationKey: key, role: 'assistant', content: `race reply ${i}`, remember: true }),
          store.deleteConversation('u-race', id),
        ]);
        expect(await store.recentMessages(key, 10)).toEqual([]);
      }
      const { conversation } = await store.ensureConversation({ id: 'c-after-race', ownerId: 'u-race-2', title: 't' });
      await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'remember me after the races', remember: true });
      const due = (await store.pendingMemories(64, Date.now() + 60_000)).map((p) => p.message.content);
      expect(due.filter((c) => c.startsWith('race reply'))).toEqual([]);
      expect(due).toContain('remember me after the races');
      // Nothing of this test stays queued for the ones after it.
      await store.deleteConversation('u-race-2', 'c-after-race');
    });

    it('paginates messages oldest first with an opaque cursor', async () => {
      const key = conversationKey('u1', 'c-msgs');
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 10; page++) {
        const res = await store.listMessages(key, { limit: 7, after });
        seen.push(...res.items.map((m) => m.content));
        if (!res.nextCursor) break;
        after = res.nextCursor;
      }
      expect(seen).toEqual([...Array.from({ length: 25 }, (_, i) => `m${i}`), 'final']);
      expect((await store.listMessages(key, { limit: 100 })).nextCursor).toBeNull();
    });

    it('a burst of messages: dated by the clock (never ahead of it), in order, paginated across equal dates', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-burst', ownerId: 'u1', title: 't' });
      const N = 300;
      const stored = [];
      for (let i = 0; i < N; i++) stored.push(await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: `b${i}` }));
      const after = Date.now();
      // The old clock added 1 ms per message written in the same millisecond, and ran ahead of the real one.
      expect(Math.max(...stored.map((m) => m.createdAt))).toBeLessThanOrEqual(after);
      for (let i = 1; i < N; i++) expect(stored[i]!.createdAt).toBeGreaterThanOrEqual(stored[i - 1]!.createdAt);
      // And 40 more in one millisecond (as many would be on a fast store): their ids keep them in order.
      const tied = Date.now();
      for (let i = N; i < N + 40; i++) stored.push(await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: `b${i}`, createdAt: tied }));
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 100; page++) {
        const res = await store.listMessages(conversation.key, { limit: 9, after: cursor });
        seen.push(...res.items.map((m) => m.content));
        if (!res.nextCursor) break;
        cursor = res.nextCursor;
      }
      expect(seen).toEqual(Array.from({ length: N + 40 }, (_, i) => `b${i}`));
      expect((await store.recentMessages(conversation.key, 3)).map((m) => m.content)).toEqual(['b337', 'b338', 'b339']);
    });

    it('a conversation’s messages keep the order they were written in when the clock steps back; their memory writes are due at the clock’s time', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-clock', ownerId: 'clock-user', title: 't' });
      // Dated a minute ahead: a clock set ahead and then corrected, or an earlier version that ran its dates ahead under load.
      const ahead = Date.now() + 60_000;
      const first = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'dated ahead', createdAt: ahead });
      const second = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'written after', remember: true });
      expect(first.createdAt).toBe(ahead);
      expect(second.createdAt).toBe(ahead + 1); // not before the conversation's latest message: just after it
      expect((await store.recentMessages(conversation.key, 10)).map((m) => [m.content, m.createdAt])).toEqual([
        ['dated ahead', ahead],
        ['written after', ahead + 1],
      ]);
      const page1 = await store.listMessages(conversation.key, { limit: 1 });
      const page2 = await store.listMessages(conversation.key, { limit: 1, after: page1.nextCursor! });
      expect([...page1.items, ...page2.items].map((m) => m.content)).toEqual(['dated ahead', 'written after']);
      expect((await store.getConversation('clock-user', 'c-clock'))?.updatedAt).toBe(ahead + 1);
      // The memory write is not held back until the date the message carries.
      expect((await store.pendingMemories(10, Date.now())).map((p) => p.message.id)).toContain(second.id);
      await store.deleteConversation('clock-user', 'c-clock');
    });

    it('a message written by a node whose clock is behind comes after the ones written before it, its id notwithstanding', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-skew', ownerId: 'skew-user', title: 't' });
      // Node A: the question and the reply of turn 1.
      await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'turn 1 question' });
      const reply = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'turn 1 reply' });
      // Node B, its clock 1 s behind: turn 2's question, its id and date from B's clock.
      const behind = reply.createdAt - 1_000;
      const question = await store.appendMessage({ id: uuidV7At(behind), createdAt: behind, conversationKey: conversation.key, role: 'user', content: 'turn 2 question' });
      expect(question.id < reply.id).toBe(true); // what used to decide the order
      expect(question.createdAt).toBeGreaterThan(reply.createdAt);
      const order = ['turn 1 question', 'turn 1 reply', 'turn 2 question'];
      expect((await store.listMessages(conversation.key, { limit: 10 })).items.map((m) => m.content)).toEqual(order);
      expect((await store.recentMessages(conversation.key, 10)).map((m) => m.content)).toEqual(order);
      await store.deleteConversation('skew-user', 'c-skew');
    });

    it('lists an owner’s conversations newest activity first, paginated, never another owner’s', async () => {
      // Activity is dated to the millisecond (conversations active in the same one are listed by
      // id): each write here waits for the next millisecond, so their order is the writes' order.
      for (const id of ['o-1', 'o-2', 'o-3']) {
        const { conversation } = await store.ensureConversation({ id, ownerId: 'lister', title: id });
        await nextMillisecond();
        await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'x' });
      }
      // The same id under another owner never shows up in this owner's list.
      await store.ensureConversation({ id: 'o-2', ownerId: 'someone-else', title: 'x' });
      await store.ensureConversation({ id: 'o-other', ownerId: 'someone-else', title: 'x' });
      await nextMillisecond();
      await store.appendMessage({ conversationKey: conversationKey('lister', 'o-1'), role: 'user', content: 'bump' });
      const first = await store.listConversations('lister', { limit: 2 });
      expect(first.items.map((c) => c.id)).toEqual(['o-1', 'o-3']);
      expect(first.nextCursor).not.toBeNull();
      const second = await store.listConversations('lister', { limit: 2, before: first.nextCursor! });
      expect(second.items.map((c) => [c.id, c.ownerId])).toEqual([['o-2', 'lister']]);
      expect(second.nextCursor).toBeNull();
    });

    it('deletes a conversation with its messages and returns their ids', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-del', ownerId: 'u1', title: 't' });
      const m1 = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'a' });
      const m2 = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'b' });
      expect((await store.deleteConversation('u1', 'c-del')).sort()).toEqual([m1.id, m2.id].sort());
      expect(await store.getConversation('u1', 'c-del')).toBeUndefined();
      expect(await store.recentMessages(conversation.key, 10)).toEqual([]);
      expect(await store.deleteConversation('u1', 'c-del')).toEqual([]);
    });

    it('moves a conversation with its messages to another owner under the same id; never onto one that owner has', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-move', ownerId: 'ip:10.9.9.9', title: 'first turn' });
      const m1 = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'hello from the IP' });
      const m2 = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'hi' });
      const before = await store.getConversation('ip:10.9.9.9', 'c-move');
      const moved = await store.moveConversation('ip:10.9.9.9', 'c-move', 'anon:cookie-1');
      expect(moved).toEqual({ ...before, key: conversationKey('anon:cookie-1', 'c-move'), ownerId: 'anon:cookie-1' });
      expect(await store.getConversation('ip:10.9.9.9', 'c-move')).toBeUndefined();
      expect(await store.getConversation('anon:cookie-1', 'c-move')).toEqual(moved);
      const messages = await store.recentMessages(moved!.key, 10);
      expect(messages.map((m) => [m.id, m.content, m.conversationKey])).toEqual([
        [m1.id, 'hello from the IP', moved!.key],
        [m2.id, 'hi', moved!.key],
      ]);
      expect(await store.recentMessages(conversation.key, 10)).toEqual([]);
      // It goes on there; the old key takes nothing.
      await store.appendMessage({ conversationKey: moved!.key, role: 'user', content: 'and now with my cookie' });
      await expect(store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'lost?' })).rejects.toThrow();
      expect((await store.listConversations('ip:10.9.9.9', { limit: 10 })).items.map((c) => c.id)).not.toContain('c-move');
      expect((await store.listConversations('anon:cookie-1', { limit: 10 })).items.map((c) => c.id)).toContain('c-move');

      // Nothing to move, or the target owner has one under that id already: nothing changes.
      expect(await store.moveConversation('ip:10.9.9.9', 'c-move', 'anon:cookie-2')).toBeUndefined();
      await store.ensureConversation({ id: 'c-move', ownerId: 'ip:10.9.9.9', title: 'another' });
      expect(await store.moveConversation('ip:10.9.9.9', 'c-move', 'anon:cookie-1')).toBeUndefined();
      expect(await store.getConversation('ip:10.9.9.9', 'c-move')).toMatchObject({ title: 'another' });
      expect((await store.recentMessages(moved!.key, 10)).map((m) => m.content)).toEqual(['hello from the IP', 'hi', 'and now with my cookie']);
      await store.deleteConversation('ip:10.9.9.9', 'c-move');
      expect((await store.deleteConversation('anon:cookie-1', 'c-move')).length).toBe(3);
    });

    it('two moves of one conversation at once (two browsers behind one address): one moves it, the other answers undefined and leaves nothing', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-move-race', ownerId: 'ip:10.1.1.1', title: 't' });
      await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'q' });
      await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'a' });
      const [a, b] = await Promise.all([store.moveConversation('ip:10.1.1.1', 'c-move-race', 'anon:race-a'), store.moveConversation('ip:10.1.1.1', 'c-move-race', 'anon:race-b')]);
      expect([a, b].filter((m) => m !== undefined)).toHaveLength(1);
      const winner = (a ?? b)!;
      const loser = a ? 'anon:race-b' : 'anon:race-a';
      expect(await store.getConversation(loser, 'c-move-race')).toBeUndefined();
      expect(await store.getConversation('ip:10.1.1.1', 'c-move-race')).toBeUndefined();
      expect((await store.recentMessages(winner.key, 10)).map((m) => m.content)).toEqual(['q', 'a']);
      await store.deleteConversation(winner.ownerId, 'c-move-race');
    });

    it('deletes chosen messages of a conversation (and their queued memory writes), never another conversation’s', async () => {
      const { conversation } = await store.ensureConversation({ id: 'c-cut', ownerId: 'u-cut', title: 't' });
      const { conversation: other } = await store.ensureConversation({ id: 'c-cut-other', ownerId: 'u-cut', title: 't' });
      const kept = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'q1' });
      const cut1 = await store.appendMessage({ conversationKey: conversation.key, role: 'assistant', content: 'a1', remember: true });
      const cut2 = await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'q2' });
      const elsewhere = await store.appendMessage({ conversationKey: other.key, role: 'user', content: 'not yours' });
      const queued = async () => (await store.pendingMemories(1000, Date.now() + 60_000)).map((p) => p.message.id);
      expect(await queued()).toContain(cut1.id);
      expect((await store.deleteMessages(conversation.key, [cut1.id, cut2.id, elsewhere.id, 'no-such-id'])).sort()).toEqual([cut1.id, cut2.id].sort());
      expect((await store.recentMessages(conversation.key, 10)).map((m) => m.id)).toEqual([kept.id]);
      expect((await store.recentMessages(other.key, 10)).map((m) => m.id)).toEqual([elsewhere.id]);
      expect(await queued()).not.toContain(cut1.id);
      expect(await store.deleteMessages(conversation.key, [])).toEqual([]);
      await store.deleteConversation('u-cut', 'c-cut');
      await store.deleteConversation('u-cut', 'c-cut-other');
    });

    it('users: unique email (case-insensitive), lookup by email and id', async () => {
      const u = await store.createUser({ email: 'Ada@Example.com', name: 'Ada', passwordHash: '$argon2id$x' });
      expect(u).toMatchObject({ email: 'ada@example.com', name: 'Ada', passwordHash: '$argon2id$x' });
      await expect(store.createUser({ email: 'ada@example.COM', name: null, passwordHash: 'h' })).rejects.toBeInstanceOf(DuplicateEmailError);
      expect(await store.findUserByEmail('ADA@example.com')).toEqual(u);
      expect(await store.findUserById(u.id)).toEqual(u);
      expect(await store.findUserById('nope')).toBeUndefined();
      expect(await store.findUserByEmail('nobody@example.com')).toBeUndefined();
      await store.updateUserPassword(u.id, '$argon2id$new');
      expect((await store.findUserById(u.id))?.passwordHash).toBe('$argon2id$new');
    });

    it('sessions: create, read, delete one, delete all of a user but one', async () => {
      const u = await store.createUser({ email: 'sessions@example.com', name: null, passwordHash: 'h' });
      const other = await store.createUser({ email: 'sessions-other@example.com', name: null, passwordHash: 'h' });
      const expiresAt = Date.now() + 3_600_000;
      for (const id of ['s1', 's2', 's3']) await store.createSession({ id, userId: u.id, createdAt: Date.now(), expiresAt });
      await store.createSession({ id: 's-other', userId: other.id, createdAt: Date.now(), expiresAt });
      expect(await store.getSession('s1')).toMatchObject({ id: 's1', userId: u.id, expiresAt });
      await store.deleteSession('s1');
      expect(await store.getSession('s1')).toBeUndefined();
      expect((await store.deleteUserSessions(u.id, 's3')).sort()).toEqual(['s2']);
      expect(await store.getSession('s3')).toBeDefined();
      expect((await store.deleteUserSessions(u.id)).sort()).toEqual(['s3']);
      expect(await store.getSession('s-other')).toBeDefined();
    });

    it('deleting a user deletes their sessions, conversations and messages, and nobody else\'s', async () => {
      const u = await store.createUser({ email: 'leaving@example.com', name: null, passwordHash: 'h' });
      const stays = await store.createUser({ email: 'staying@example.com', name: null, passwordHash: 'h' });
      await store.createSession({ id: 'leaving-s', userId: u.id, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
      await store.createSession({ id: 'staying-s', userId: stays.id, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
      const gone = await store.ensureConversation({ id: 'shared-id', ownerId: u.id, title: 't' });
      await store.appendMessage({ conversationKey: gone.conversation.key, role: 'user', content: 'bye' });
      const kept = await store.ensureConversation({ id: 'shared-id', ownerId: stays.id, title: 't' });
      await store.appendMessage({ conversationKey: kept.conversation.key, role: 'user', content: 'hi' });
      expect(await store.deleteUser(u.id)).toBe(true);
      expect(await store.deleteUser(u.id)).toBe(false);
      expect(await store.findUserById(u.id)).toBeUndefined();
      expect(await store.findUserByEmail('leaving@example.com')).toBeUndefined();
      expect(await store.getSession('leaving-s')).toBeUndefined();
      expect(await store.getConversation(u.id, 'shared-id')).toBeUndefined();
      expect(await store.recentMessages(gone.conversation.key, 10)).toEqual([]);
      expect(await store.getSession('staying-s')).toBeDefined();
      expect((await store.recentMessages(kept.conversation.key, 10)).map((m) => m.content)).toEqual(['hi']);
      // The email is free again.
      await expect(store.createUser({ email: 'leaving@example.com', name: null, passwordHash: 'h' })).resolves.toMatchObject({ email: 'leaving@example.com' });
    });

    it('the memory queue: written with its message, due oldest first, retried, discarded per owner, gone with the conversation', async () => {
      const a = await store.ensureConversation({ id: 'mem-q', ownerId: 'mq-user', title: 't' });
      const b = await store.ensureConversation({ id: 'mem-q2', ownerId: 'mq-other', title: 't' });
      const m1 = await store.appendMessage({ conversationKey: a.conversation.key, role: 'user', content: 'remember me', remember: true });
      const m2 = await store.appendMessage({ conversationKey: a.conversation.key, role: 'assistant', content: 'noted', remember: true });
      await store.appendMessage({ conversationKey: a.conversation.key, role: 'user', content: 'not this one' });
      const m4 = await store.appendMessage({ conversationKey: b.conversation.key, role: 'user', content: 'theirs', remember: true });
      const due = await store.pendingMemories(10, Date.now() + 1000);
      expect(due.map((p) => [p.message.id, p.ownerId, p.conversationId, p.attempts])).toEqual([
        [m1.id, 'mq-user', 'mem-q', 0],
        [m2.id, 'mq-user', 'mem-q', 0],
        [m4.id, 'mq-other', 'mem-q2', 0],
      ]);
      expect(due[0]!.message).toMatchObject({ content: 'remember me', role: 'user' });
      expect(await store.pendingMemories(1, Date.now() + 1000)).toHaveLength(1);

      await store.settleMemories([m1.id], [{ messageId: m2.id, nextAt: Date.now() + 60_000 }]);
      expect((await store.pendingMemories(10, Date.now() + 1000)).map((p) => p.message.id)).toEqual([m4.id]);
      expect((await store.pendingMemories(10, Date.now() + 120_000)).map((p) => [p.message.id, p.attempts])).toEqual([
        [m4.id, 0],
        [m2.id, 1],
      ]);
      await store.discardPendingMemories('mq-other');
      expect((await store.pendingMemories(10, Date.now() + 120_000)).map((p) => p.message.id)).toEqual([m2.id]);
      await store.deleteConversation('mq-user', 'mem-q');
      expect(await store.pendingMemories(10, Date.now() + 120_000)).toEqual([]);
    });

    it('the memory queue: a claimed batch is one writer’s until its claim ends; settling names the entries discarded meanwhile', async () => {
      const c = await store.ensureConversation({ id: 'mem-claim', ownerId: 'mc-user', title: 't' });
      const m1 = await store.appendMessage({ conversationKey: c.conversation.key, role: 'user', content: 'first', remember: true });
      const m2 = await store.appendMessage({ conversationKey: c.conversation.key, role: 'assistant', content: 'second', remember: true });
      const now = Date.now() + 1000;
      const mine = (await store.pendingMemories(10, now, { token: 'writer-1', until: now + 60_000 })).map((p) => p.message.id);
      expect(mine).toEqual([m1.id, m2.id]);
      // Another writer (another node) finds them taken, and so does a look at the queue, until the claim ends.
      expect(await store.pendingMemories(10, now, { token: 'writer-2', until: now + 60_000 })).toEqual([]);
      expect(await store.pendingMemories(10, now)).toEqual([]);
      expect((await store.pendingMemories(10, now + 60_000)).map((p) => p.message.id)).toEqual([m1.id, m2.id]);

      // A writer that outlived its claim: the entry went to another writer, and is left to it.
      const retaken = await store.pendingMemories(1, now + 60_000, { token: 'writer-2', until: now + 120_000 });
      expect(retaken.map((p) => p.message.id)).toEqual([m1.id]);
      expect(await store.settleMemories([m1.id], [], 'writer-1')).toEqual([]);
      expect((await store.pendingMemories(10, now + 120_000)).map((p) => p.message.id)).toEqual([m2.id, m1.id]);
      expect(await store.settleMemories([m1.id], [], 'writer-2')).toEqual([]);
      expect((await store.pendingMemories(10, now + 120_000)).map((p) => p.message.id)).toEqual([m2.id]);

      // Discarded while it was being written (the owner erased their memories): named, so what was written for it goes too.
      const m3 = await store.appendMessage({ conversationKey: c.conversation.key, role: 'user', content: 'third', remember: true });
      const batch = await store.pendingMemories(10, now + 60_000, { token: 'writer-3', until: now + 180_000 });
      expect(batch.map((p) => p.message.id)).toEqual([m3.id, m2.id]);
      await store.discardPendingMemories('mc-user');
      expect(await store.settleMemories([m2.id], [{ messageId: m3.id, nextAt: now }], 'writer-3')).toEqual([m2.id, m3.id]);

      // A failed write is due again at its retry time, for any writer.
      const m4 = await store.appendMessage({ conversationKey: c.conversation.key, role: 'user', content: 'fourth', remember: true });
      await store.pendingMemories(10, now, { token: 'writer-4', until: now + 600_000 });
      expect(await store.settleMemories([], [{ messageId: m4.id, nextAt: now + 5_000 }], 'writer-4')).toEqual([]);
      expect((await store.pendingMemories(10, now + 5_000, { token: 'writer-5', until: now + 600_000 })).map((p) => [p.message.id, p.attempts])).toEqual([[m4.id, 1]]);

      // Forgetting one memory drops its write alone, and only its owner's.
      const m5 = await store.appendMessage({ conversationKey: c.conversation.key, role: 'user', content: 'fifth', remember: true });
      await store.discardPendingMemories('someone-else', [m4.id, m5.id]);
      await store.discardPendingMemories('mc-user', [m5.id]);
      expect((await store.pendingMemories(10, now + 600_000)).map((p) => p.message.id)).toEqual([m4.id]);
    });

    it('user settings: memory on by default, per user, survive, and go with the user', async () => {
      expect(await store.getUserSettings('settings-a')).toEqual({ memoryEnabled: true });
      await store.setUserSettings('settings-a', { memoryEnabled: false });
      expect(await store.getUserSettings('settings-a')).toEqual({ memoryEnabled: false });
      expect(await store.getUserSettings('settings-b')).toEqual({ memoryEnabled: true });
      await store.setUserSettings('settings-a', { memoryEnabled: true });
      expect(await store.getUserSettings('settings-a')).toEqual({ memoryEnabled: true });
      const u = await store.createUser({ email: 'settings@example.com', name: null, passwordHash: 'h' });
      await store.setUserSettings(u.id, { memoryEnabled: false });
      await store.deleteUser(u.id);
      expect(await store.getUserSettings(u.id)).toEqual({ memoryEnabled: true });
    });

    it('realtime sessions: recorded with their usage, listed newest first per owner, paginated', async () => {
      const usage = { responses: 2, inputTokens: 30, outputTokens: 40, inputAudioTokens: 20, outputAudioTokens: 35, inputTextTokens: 10, outputTextTokens: 5 };
      for (let i = 0; i < 3; i++) {
        await store.recordRealtimeSession({ id: `rt-${i}`, ownerId: 'rt-user', provider: 'openai', startedAt: 1_000 + i, endedAt: 2_000 + i, endReason: 'client', usage });
      }
      await store.recordRealtimeSession({ id: 'rt-other', ownerId: 'rt-other-user', provider: 'gemini', startedAt: 5_000, endedAt: 6_000, endReason: 'idle', usage });
      const first = await store.listRealtimeSessions('rt-user', { limit: 2 });
      expect(first.items.map((r) => r.id)).toEqual(['rt-2', 'rt-1']);
      expect(first.items[0]).toEqual({ id: 'rt-2', ownerId: 'rt-user', provider: 'openai', startedAt: 1_002, endedAt: 2_002, endReason: 'client', usage });
      const second = await store.listRealtimeSessions('rt-user', { limit: 2, before: first.nextCursor! });
      expect(second.items.map((r) => r.id)).toEqual(['rt-0']);
      expect(second.nextCursor).toBeNull();
    });

    it('API keys: stored by hash, found by hash, listed newest first per user, bounded per user, deleted by their owner only', async () => {
      const ada = await store.createUser({ email: 'keys-ada@example.com', name: null, passwordHash: 'h' });
      const bob = await store.createUser({ email: 'keys-bob@example.com', name: null, passwordHash: 'h' });
      const key = (id: string, userId: string, createdAt: number, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
        id,
        userId,
        name: `key ${id}`,
        prefix: `gk_${id}`,
        keyHash: `hash-of-${id}`.padEnd(64, '0'),
        models: null,
        rateLimitPerMinute: null,
        createdAt,
        expiresAt: null,
        lastUsedAt: null,
        ...extra,
      });
      const first = key('k1', ada.id, 1_000, { models: ['local', 'openai:gpt-4o-mini'], rateLimitPerMinute: 5, expiresAt: 9_000_000_000_000 });
      expect(await store.createApiKey(first, 3)).toBe(true);
      expect(await store.createApiKey(key('k2', ada.id, 2_000), 3)).toBe(true);
      expect(await store.createApiKey(key('k-bob', bob.id, 1_500), 3)).toBe(true);
      expect(await store.findApiKeyByHash(first.keyHash)).toEqual(first);
      expect(await store.findApiKeyByHash('no-such-hash'.padEnd(64, '0'))).toBeUndefined();
      expect((await store.listApiKeys(ada.id)).map((k) => k.id)).toEqual(['k2', 'k1']);
      expect((await store.listApiKeys(bob.id)).map((k) => k.id)).toEqual(['k-bob']);

      // The bound: a third key fits, a fourth does not; another user's count is their own.
      expect(await store.createApiKey(key('k3', ada.id, 3_000), 3)).toBe(true);
      expect(await store.createApiKey(key('k4', ada.id, 4_000), 3)).toBe(false);
      expect(await store.findApiKeyByHash(key('k4', ada.id, 4_000).keyHash)).toBeUndefined();
      expect(await store.createApiKey(key('k-bob-2', bob.id, 4_000), 3)).toBe(true);

      // lastUsedAt moves forward only.
      await store.touchApiKey('k1', 50_000);
      await store.touchApiKey('k1', 40_000);
      expect((await store.findApiKeyByHash(first.keyHash))?.lastUsedAt).toBe(50_000);

      // Another user's id is not theirs to delete.
      expect(await store.deleteApiKey(bob.id, 'k1')).toBe(false);
      expect(await store.findApiKeyByHash(first.keyHash)).toBeDefined();
      expect(await store.deleteApiKey(ada.id, 'k1')).toBe(true);
      expect(await store.deleteApiKey(ada.id, 'k1')).toBe(false);
      expect(await store.findApiKeyByHash(first.keyHash)).toBeUndefined();
      expect((await store.deleteUserApiKeys(ada.id)).sort()).toEqual(['k2', 'k3']);
      expect(await store.listApiKeys(ada.id)).toEqual([]);

      // Deleting the user deletes their keys.
      expect(await store.deleteUser(bob.id)).toBe(true);
      expect(await store.findApiKeyByHash(key('k-bob', bob.id, 0).keyHash)).toBeUndefined();
      expect(await store.listApiKeys(bob.id)).toEqual([]);
    });

    it('concurrent API key creations by one user never pass the bound (atomic adapters)', async () => {
      const u = await store.createUser({ email: 'keys-race@example.com', name: null, passwordHash: 'h' });
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          store.createApiKey(
            { id: `race-${i}`, userId: u.id, name: 'r', prefix: 'gk_r', keyHash: `race-${i}`.padEnd(64, '0'), models: null, rateLimitPerMinute: null, createdAt: i, expiresAt: null, lastUsedAt: null },
            2,
          ),
        ),
      );
      // MongoDB counts, then inserts (no transactions): the ApiKeys service serialises creations per user instead.
      if (store.kind === 'mongodb') return;
      expect(results.filter(Boolean)).toHaveLength(2);
      expect(await store.listApiKeys(u.id)).toHaveLength(2);
    });

    it('ping answers', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('data survives closing and reopening (durable adapters)', async () => {
      if (!handle.reopen) {
        expect(store.kind).toBe('memory');
        return;
      }
      const { conversation } = await store.ensureConversation({ id: 'c-durable', ownerId: 'u9', title: 'kept' });
      await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'still here' });
      await store.close();
      store = await handle.reopen();
      expect(await store.getConversation('u9', 'c-durable')).toMatchObject({ ownerId: 'u9', title: 'kept' });
      expect((await store.recentMessages(conversation.key, 5)).map((m) => m.content)).toEqual(['still here']);
      const u = await store.createUser({ email: 'keys-durable@example.com', name: null, passwordHash: 'h' });
      const k: ApiKeyRecord = { id: 'durable-key', userId: u.id, name: 'kept', prefix: 'gk_kept', keyHash: 'durable'.padEnd(64, '0'), models: ['local'], rateLimitPerMinute: 7, createdAt: 1, expiresAt: 2, lastUsedAt: null };
      expect(await store.createApiKey(k, 50)).toBe(true);
      await store.close();
      store = await handle.reopen();
      expect(await store.findApiKeyByHash(k.keyHash)).toEqual(k);
    });
  });
}
