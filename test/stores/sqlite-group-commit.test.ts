import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';

describe('SQLite group commit', () => {
  const dir = tempDataDir();
  const file = join(dir, 'gc.sqlite');
  const store = new SqliteConversationStore(file);
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes queued in one turn share a transaction; a failing one fails alone and the rest commit', async () => {
    await store.ensureConversation({ id: 'gc', ownerId: null, title: 't' });
    const results = await Promise.allSettled([
      store.appendMessage({ conversationId: 'gc', role: 'user', content: 'one' }),
      store.appendMessage({ conversationId: 'no-such-conversation', role: 'user', content: 'orphan' }),
      store.appendMessage({ conversationId: 'gc', role: 'assistant', content: 'two' }),
      store.ensureConversation({ id: 'gc-2', ownerId: 'u', title: 't' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    expect((await store.recentMessages('gc', 10)).map((m) => m.content)).toEqual(['one', 'two']);

    // Committed: another connection sees exactly the successful writes.
    const reader = new Database(file, { readonly: true });
    const rows = reader.prepare('SELECT content FROM messages ORDER BY created_at').all() as { content: string }[];
    reader.close();
    expect(rows.map((r) => r.content)).toEqual(['one', 'two']);
  });

  it('a write settles only after its commit, and close flushes what is queued', async () => {
    const pending = store.appendMessage({ conversationId: 'gc', role: 'user', content: 'last' });
    await store.close();
    await expect(pending).resolves.toMatchObject({ content: 'last' });
    const reopened = new SqliteConversationStore(file);
    expect((await reopened.recentMessages('gc', 1))[0]!.content).toBe('last');
    await reopened.close();
  });
});
