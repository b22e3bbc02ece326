import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';

describe('SQLite group commit', () => {
  const dir = tempDataDir();
  const key = conversationKey('ip:127.0.0.1', 'gc');
  /** Each test its own file and store, so no test depends on what another wrote or closed. */
  const opened: SqliteConversationStore[] = [];
  let files = 0;
  const openStore = () => {
    const file = join(dir, `gc-${++files}.sqlite`);
    const store = new SqliteConversationStore(file);
    opened.push(store);
    return { file, store };
  };
  afterAll(async () => {
    for (const store of opened) await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes queued in one turn share a transaction; a failing one fails alone and the rest commit', async () => {
    const { file, store } = openStore();
    await store.ensureConversation({ id: 'gc', ownerId: 'ip:127.0.0.1', title: 't' });
    const results = await Promise.allSettled([
      store.appendMessage({ conversationKey: key, role: 'user', content: 'one' }),
      store.appendMessage({ conversationKey: conversationKey('u', 'no-such-conversation'), role: 'user', content: 'orphan' }),
      store.appendMessage({ conversationKey: key, role: 'assistant', content: 'two' }),
      store.ensureConversation({ id: 'gc-2', ownerId: 'u', title: 't' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    expect((await store.recentMessages(key, 10)).map((m) => m.content)).toEqual(['one', 'two']);

    // Committed: another connection sees exactly the successful writes.
    const reader = new Database(file, { readonly: true });
    const rows = reader.prepare('SELECT content FROM messages ORDER BY created_at').all() as { content: string }[];
    reader.close();
    expect(rows.map((r) => r.content)).toEqual(['one', 'two']);
  });

  it('a burst is committed in bounded batches, oldest first, with a pass of the event loop between two commits', async () => {
    const burst = new SqliteConversationStore(join(dir, 'burst.sqlite'));
    const bkey = conversationKey('u', 'burst');
    await burst.ensureConversation({ id: 'burst', ownerId: 'u', title: 't' });
    const committedBy = async (writes: Promise<unknown>[]) => {
      let settled = 0;
      for (const w of writes) void w.then(() => settled++);
      // Queued after the flush: runs once the first commit settled its writes, before the next commit.
      const afterFirst = await new Promise<number>((resolve) => setImmediate(() => resolve(settled)));
      await Promise.all(writes);
      return afterFirst;
    };

    const short = Array.from({ length: 200 }, (_, i) => burst.appendMessage({ conversationKey: bkey, role: 'user', content: `m${i}` }));
    expect(await committedBy(short)).toBe(64);
    // Each message's tokens are counted in its commit; a long one weighs more (1 + 1 per 4,096 characters).
    const long = Array.from({ length: 20 }, (_, i) => burst.appendMessage({ conversationKey: bkey, role: 'user', content: `${i} ${'word '.repeat(6_500)}` }));
    expect(await committedBy(long)).toBe(8); // ~32,500 characters: 8 units each
    const stored = await burst.listMessages(bkey, { limit: 300 });
    expect(stored.items.map((m) => m.content.split(' ')[0])).toEqual([...Array.from({ length: 200 }, (_, i) => `m${i}`), ...Array.from({ length: 20 }, (_, i) => `${i}`)]);
    expect(stored.items.at(-1)!.tokens).toBeGreaterThan(6_000);
    await burst.close();
  });

  it('a write settles only after its commit, and close flushes what is queued', async () => {
    const { file, store } = openStore();
    await store.ensureConversation({ id: 'gc', ownerId: 'ip:127.0.0.1', title: 't' });
    const pending = store.appendMessage({ conversationKey: key, role: 'user', content: 'last' });
    await store.close();
    await expect(pending).resolves.toMatchObject({ content: 'last' });
    const reopened = new SqliteConversationStore(file);
    expect((await reopened.recentMessages(key, 1))[0]!.content).toBe('last');
    await reopened.close();
  });

  it('creates the database owner-only and migrates a version-1 file, hiding its anonymous conversations', async () => {
    const { file } = openStore();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const oldDir = tempDataDir();
    const old = join(oldDir, 'v1.sqlite');
    const v1 = new Database(old);
    v1.exec(`
      CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE conversations (id TEXT PRIMARY KEY, owner_id TEXT, title TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE messages (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE, role TEXT NOT NULL,
        content TEXT NOT NULL, created_at INTEGER NOT NULL, model TEXT, finish_reason TEXT, input_tokens INTEGER, output_tokens INTEGER);
      INSERT INTO users VALUES ('u1', 'a@example.com', NULL, 'h', 1);
      INSERT INTO conversations VALUES ('mine', 'u1', 'Mine', 1, 2), ('my-session', NULL, 'Anonymous', 1, 2);
      INSERT INTO messages VALUES ('m1', 'mine', 'user', 'kept', 1, NULL, NULL, NULL, NULL), ('m2', 'my-session', 'user', 'SECRET', 1, NULL, NULL, NULL, NULL);
    `);
    v1.close();
    const migrated = new SqliteConversationStore(old);
    expect(await migrated.getConversation('u1', 'mine')).toMatchObject({ title: 'Mine' });
    expect((await migrated.recentMessages(conversationKey('u1', 'mine'), 5)).map((m) => m.content)).toEqual(['kept']);
    for (const owner of ['ip:127.0.0.1', 'anon:x', 'u1']) expect(await migrated.getConversation(owner, 'my-session')).toBeUndefined();
    await migrated.close();
    // Opening it again is a no-op.
    const again = new SqliteConversationStore(old);
    expect((await again.listConversations('u1', { limit: 5 })).items.map((c) => c.id)).toEqual(['mine']);
    await again.close();
    rmSync(oldDir, { recursive: true, force: true });
  });

  /**
   * A file as a server of schema `version` left it: written by the current store (`fill`), then
   * `downgrade` (SQL) takes away what later versions added.
   */
  async function olderFile<T>(version: number, downgrade: string, fill: (store: SqliteConversationStore) => Promise<T>) {
    const dir = tempDataDir();
    const file = join(dir, `v${version}.sqlite`);
    const current = new SqliteConversationStore(file);
    const filled = await fill(current);
    await current.close();
    const db = new Database(file);
    db.exec(downgrade);
    db.pragma(`user_version = ${version}`);
    db.close();
    const schemaVersion = () => {
      const check = new Database(file, { readonly: true });
      try {
        return check.pragma('user_version', { simple: true });
      } finally {
        check.close();
      }
    };
    return { file, filled, schemaVersion, remove: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it('migrates a version-4 file (before API keys): its data stays and keys can be stored', async () => {
    // What a version-4 server left behind: everything but the api_keys table.
    const old = await olderFile(4, 'DROP TABLE api_keys', async (current) => {
      const user = await current.createUser({ email: 'v4@example.com', name: null, passwordHash: 'h' });
      await current.ensureConversation({ id: 'kept', ownerId: user.id, title: 'Kept' });
      return user;
    });
    const user = old.filled;
    const migrated = new SqliteConversationStore(old.file);
    expect(await migrated.getConversation(user.id, 'kept')).toMatchObject({ title: 'Kept' });
    const key = { id: 'k', userId: user.id, name: 'n', prefix: 'gk_x', keyHash: 'f'.repeat(64), models: null, rateLimitPerMinute: null, createdAt: 1, expiresAt: null, lastUsedAt: null };
    expect(await migrated.createApiKey(key, 50)).toBe(true);
    expect(await migrated.findApiKeyByHash('f'.repeat(64))).toEqual(key);
    await migrated.close();
    expect(old.schemaVersion()).toBe(6);
    old.remove();
  });

  it('migrates a version-5 file (memory writes not claimed): what it queued is still written, by one writer', async () => {
    // What a version-5 server left behind: the memory queue without its claim column.
    const old = await olderFile(5, 'ALTER TABLE memory_outbox DROP COLUMN claim', async (current) => {
      const { conversation } = await current.ensureConversation({ id: 'queued', ownerId: 'v5-user', title: 'Queued' });
      return current.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'remember this', remember: true });
    });
    const message = old.filled;
    const migrated = new SqliteConversationStore(old.file);
    const now = Date.now() + 1000;
    expect((await migrated.pendingMemories(10, now, { token: 'w', until: now + 60_000 })).map((p) => p.message.id)).toEqual([message.id]);
    expect(await migrated.pendingMemories(10, now, { token: 'other', until: now + 60_000 })).toEqual([]);
    expect(await migrated.settleMemories([message.id], [], 'w')).toEqual([]);
    await migrated.close();
    expect(old.schemaVersion()).toBe(6);
    old.remove();
  });
});

describe('SQLite writes while another process holds the write lock', () => {
  it('wait off the event loop and commit once the lock is free; reads go on meanwhile', async () => {
    const dir = tempDataDir();
    const file = join(dir, 'shared.sqlite');
    const store = new SqliteConversationStore(file);
    const key = conversationKey('u1', 'c1');
    try {
      await store.ensureConversation({ id: 'c1', ownerId: 'u1', title: 't' });
      // Another process (a second connection: the lock is the file's) takes the write lock and keeps it.
      const other = new Database(file);
      other.prepare('BEGIN IMMEDIATE').run();
      let settled = false;
      const write = store.appendMessage({ conversationKey: key, role: 'user', content: 'waits' }).then((m) => ((settled = true), m));
      // The event loop keeps turning: a 5 ms timer fires on time while the write waits (SQLite's
      // own busy handler would have slept on this thread for up to busy_timeout).
      const started = performance.now();
      await new Promise((r) => setTimeout(r, 5));
      expect(performance.now() - started).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 150));
      expect(settled).toBe(false);
      expect(await store.getConversation('u1', 'c1')).toBeDefined(); // reads are not blocked
      // Writes queued meanwhile go in the same retried batch, in order.
      const second = store.appendMessage({ conversationKey: key, role: 'assistant', content: 'after' });
      other.prepare('COMMIT').run();
      other.close();
      await Promise.all([write, second]);
      expect((await store.recentMessages(key, 10)).map((m) => m.content)).toEqual(['waits', 'after']);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
