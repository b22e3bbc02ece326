import { rmSync } from 'node:fs';
import type * as WorkerThreads from 'node:worker_threads';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../src/logger.js';
import { SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';

// A platform where no thread can be started (a sandbox, a resource limit): `new Worker` throws.
vi.mock('node:worker_threads', async (importOriginal) => ({
  ...(await importOriginal<typeof WorkerThreads>()),
  Worker: class {
    constructor() {
      throw new Error('threads are not available here');
    }
  },
}));

describe('WAL checkpoints where no worker thread can start', () => {
  const dir = tempDataDir();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the commit that tried to start it still succeeds; the store checkpoints inline from then on, and says so once', async () => {
    const warn = vi.fn();
    const store = new SqliteConversationStore(join(dir, 'g.sqlite'), { logger: { warn } as unknown as Logger });
    const key = conversationKey('u', 'c');
    const first = await store.appendMessage({ conversationKey: key, role: 'user', content: 'one', conversation: { ownerId: 'u', id: 'c', title: 't' } });
    await store.appendMessage({ conversationKey: key, role: 'assistant', content: 'two' });
    expect(first.id).toBeTruthy();
    expect((await store.recentMessages(key, 10)).map((m) => m.content)).toEqual(['one', 'two']);
    expect(store.checkpoints).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![1])).toMatch(/checkpoint worker is gone/);
    await store.close();
  });

  it('the memory store too: its write lands and nothing escapes the event loop', async () => {
    const warn = vi.fn();
    const store = new SqliteMemoryStore(join(dir, 'm.sqlite'), { dimensions: 4, embedder: 'test:v1', logger: { warn } as unknown as Logger });
    await store.init();
    await store.upsert([{ id: 'a', ownerId: 'u', conversationId: 'c', messageId: 'm', role: 'user', text: 'remember', createdAt: 1, vector: new Float32Array([1, 0, 0, 0]) }]);
    expect((await store.get('u', 'a'))?.text).toBe('remember');
    expect(store.checkpoints).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    await store.close();
  });

  it('a memory store whose only commit is the last one, at close, does not try to start the worker for it', async () => {
    const warn = vi.fn();
    const file = join(dir, 'm-close.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: 4, embedder: 'test:v1', logger: { warn } as unknown as Logger });
    await store.init();
    // Queued, then committed by close itself: the last connection's close folds the WAL in.
    const write = store.upsert([{ id: 'b', ownerId: 'u', conversationId: 'c', messageId: 'm', role: 'user', text: 'kept', createdAt: 1, vector: new Float32Array([0, 1, 0, 0]) }]);
    await store.close();
    await write;
    expect(warn).not.toHaveBeenCalled();
    const reopened = new SqliteMemoryStore(file, { dimensions: 4, embedder: 'test:v1' });
    await reopened.init();
    expect((await reopened.get('u', 'b'))?.text).toBe('kept');
    await reopened.close();
  });
});
