import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../src/logger.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { WalCheckpointer, offLoopCheckpoints } from '../../src/stores/wal-checkpointer.js';
import { SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { loadConfig } from '../../src/config.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { scrape } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';
import { bearer, register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';

const PAGE = 4096;
const REPLY = 'r'.repeat(2000);

/**
 * `loops` chat turns at a time (user message in a new conversation, then a reply) until `until`
 * says stop; returns the turns stored. `perSecond`: at most that many turns a second in all.
 */
async function writeTurns(store: SqliteConversationStore, prefix: string, loops: number, until: () => boolean, perSecond?: number): Promise<number> {
  let turns = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (!until()) {
        const id = `${prefix}-${next++}`;
        const key = conversationKey('u', id);
        await store.appendMessage({ conversationKey: key, role: 'user', content: `question ${id}`, conversation: { ownerId: 'u', id, title: 't' } });
        await store.appendMessage({ conversationKey: key, role: 'assistant', content: REPLY, model: 'local', finishReason: 'stop' });
        turns++;
        const ahead = perSecond ? started + (turns / perSecond) * 1000 - performance.now() : 0;
        if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
      }
    }),
  );
  return turns;
}

function walBytes(file: string): number {
  try {
    return statSync(`${file}-wal`).size;
  } catch {
    return 0;
  }
}

function countRows(file: string): number {
  const reader = new Database(file, { readonly: true });
  try {
    return (reader.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
  } finally {
    reader.close();
  }
}

describe('WAL checkpoints off the event loop', () => {
  const dir = tempDataDir();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('no commit checkpoints (the WAL outgrows SQLite’s 1,000 pages); the worker does, and restarts the WAL so it stays bounded', async () => {
    const file = join(dir, 'steady.sqlite');
    const store = new SqliteConversationStore(file);
    let walMax = 0;
    // 8 times the restart size (128 MiB): room for a disk that holds a checkpoint back a few seconds.
    const GIVE_UP_PAGES = 32_768;
    // Written until the WAL has started over twice: far more than it ever holds at once (or,
    // failing, until it is far too long, or time is up).
    const giveUpAt = performance.now() + 30_000;
    // At 1,500 turns a second, near what one gateway process serves at most (1,000-1,800 in the
    // bench's turns/s section, 16 clients on 2 cores). Flat out (~5,000 a second), a disk busy
    // with other work (another test file's fsyncs) held the worker's checkpoints back until the
    // WAL reached the give-up size: a race no gateway runs.
    const turns = await writeTurns(
      store,
      's',
      16,
      () => {
        walMax = Math.max(walMax, walBytes(file));
        return (store.checkpoints?.restarts ?? 0) >= 2 || walMax >= GIVE_UP_PAGES * PAGE || performance.now() > giveUpAt;
      },
      1_500,
    );
    const stats = store.checkpoints!;
    expect(stats.restarts).toBeGreaterThanOrEqual(2);
    expect(stats.runs).toBeGreaterThan(stats.restarts);
    // SQLite's automatic checkpoint would have held the WAL near 1,000 pages (4 MB).
    expect(walMax).toBeGreaterThan(2_000 * PAGE);
    // ...and without the restarts it would grow with everything written (~7 pages a turn), to the give-up size.
    expect(walMax).toBeLessThan(GIVE_UP_PAGES * PAGE);

    await store.close();
    // The worker's connection closed last: the WAL was checkpointed into the file and removed.
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(countRows(file)).toBe(turns * 2);
  }, 60_000);

  it('two stores on one file (two processes on one DATA_DIR) checkpoint side by side; every write lands', async () => {
    const file = join(dir, 'shared.sqlite');
    const a = new SqliteConversationStore(file);
    const b = new SqliteConversationStore(file);
    const endAt = performance.now() + 1_500;
    const [ta, tb] = await Promise.all([writeTurns(a, 'a', 8, () => performance.now() > endAt), writeTurns(b, 'b', 8, () => performance.now() > endAt)]);
    await waitFor(() => (a.checkpoints?.runs ?? 0) > 0 && (b.checkpoints?.runs ?? 0) > 0);
    expect(a.checkpoints).toBeDefined(); // neither worker was lost on the other's checkpoints
    expect(b.checkpoints).toBeDefined();
    await a.close();
    await b.close();
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(countRows(file)).toBe((ta + tb) * 2);
  }, 30_000);

  it('a worker that cannot run is reported once, and its connection checkpoints by itself again', async () => {
    const file = join(dir, 'lost.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    const warn = vi.fn();
    const logger = { warn } as unknown as Logger;
    // The worker opens its own connection to a file that must exist: this one does not.
    const checkpointer = offLoopCheckpoints(db, join(dir, 'no-such-dir', 'x.sqlite'), { logger })!;
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    checkpointer.committed(); // the first commit brings the worker in
    await waitFor(() => warn.mock.calls.length > 0);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    expect(String(warn.mock.calls[0]![1])).toMatch(/checkpoint worker is gone/);
    expect(checkpointer.running).toBe(false);
    checkpointer.committed(); // a no-op now
    await checkpointer.close();
    expect(warn).toHaveBeenCalledTimes(1);
    db.close();
  });

  it('a wake runs a checkpoint of what was committed; an orderly close is not a loss', async () => {
    const file = join(dir, 'orderly.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (x TEXT)');
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
    for (let i = 0; i < 50; i++) insert.run(REPLY);
    const lost = vi.fn();
    const checkpointer = new WalCheckpointer(file, lost);
    checkpointer.committed();
    checkpointer.committed(); // one wake for both
    await waitFor(() => checkpointer.stats.runs > 0);
    expect(checkpointer.stats.runs).toBe(1);
    expect(checkpointer.stats.walPages).toBeGreaterThan(20);
    expect(checkpointer.stats.checkpointedPages).toBe(checkpointer.stats.walPages);
    await checkpointer.close();
    expect(checkpointer.running).toBe(false);
    expect(lost).not.toHaveBeenCalled();
    db.close();
  });

  it('one worker thread serves every file of the process: none before the first commit, gone after the last close', async () => {
    const threads = () => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const a = new SqliteConversationStore(join(dir, 'thread-a.sqlite'));
    const b = new SqliteConversationStore(join(dir, 'thread-b.sqlite'));
    // libuv's thread pool starts all its threads at its first use: make sure that is not now.
    await stat(dir);
    // Workers of the tests above may still be winding down: wait until the count holds still.
    let before = threads();
    for (let still = 0; still < 4; ) {
      await new Promise((r) => setTimeout(r, 50));
      const now = threads();
      still = now === before ? still + 1 : 0;
      before = now;
    }
    for (const [i, store] of [a, b].entries()) {
      await store.appendMessage({ conversationKey: conversationKey('u', `t${i}`), role: 'user', content: 'hi', conversation: { ownerId: 'u', id: `t${i}`, title: 't' } });
    }
    await waitFor(() => (a.checkpoints?.runs ?? 0) > 0 && (b.checkpoints?.runs ?? 0) > 0);
    expect(threads()).toBe(before + 1);
    await a.close();
    expect(threads()).toBe(before + 1); // still serving b
    await b.close();
    await waitFor(() => threads() === before);
  });

  it('a file the worker cannot open is lost alone: the other files of the process keep their checkpoints', async () => {
    const store = new SqliteConversationStore(join(dir, 'neighbour.sqlite'));
    const write = (id: string) =>
      store.appendMessage({ conversationKey: conversationKey('u', id), role: 'user', content: 'hi', conversation: { ownerId: 'u', id, title: 't' } });
    await write('n1');
    await waitFor(() => (store.checkpoints?.runs ?? 0) > 0);
    const lost = vi.fn();
    const broken = new WalCheckpointer(join(dir, 'no-such-dir', 'x.sqlite'), lost);
    broken.committed();
    await waitFor(() => lost.mock.calls.length > 0);
    expect(broken.running).toBe(false);
    await write('n2');
    await waitFor(() => (store.checkpoints?.runs ?? 0) > 1);
    await store.close();
  });

  it('an in-memory store has no checkpointer', async () => {
    const store = new SqliteConversationStore(':memory:');
    expect(store.checkpoints).toBeUndefined();
    await store.close();
  });
});

describe('the memory store: the same checkpoints, and writes that never wait for the lock on the event loop', () => {
  const dir = tempDataDir();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const DIM = 8;
  const record = (id: string, i: number) => {
    const vector = new Float32Array(DIM);
    vector[i % DIM] = 1;
    vector[(i + 1) % DIM] = 0.5;
    return { id, ownerId: 'u', conversationId: 'c', messageId: `m-${id}`, role: 'user' as const, text: `memory ${id}`, createdAt: 1_700_000_000_000 + i, vector };
  };

  it('a write that finds the lock taken (another process, the restart) waits on a timer, not in SQLite, and lands once it is free', async () => {
    const file = join(dir, 'busy.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: 'test:v1' });
    await store.init();
    await store.upsert([record('first', 0)]);
    // Another connection (as another gateway process would) holds the write lock.
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    let settled = false;
    const write = store.upsert([record('second', 1)]).finally(() => (settled = true));
    // The event loop runs on: timers fire while the write waits (SQLite's own busy handler would
    // have slept on this thread for up to 5 s, and this commit could never have come).
    const started = performance.now();
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 10));
    expect(performance.now() - started).toBeLessThan(2_500); // not the 5 s of SQLite's busy wait
    expect(settled).toBe(false);
    other.exec('COMMIT');
    other.close();
    await write;
    expect((await store.get('u', 'second'))?.text).toBe('memory second');
    await store.close();
  });

  it('checkpoints run on the worker, and the WAL is folded in and removed at close', async () => {
    const file = join(dir, 'ckpt.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: 'test:v1' });
    await store.init();
    for (let i = 0; i < 20; i++) await store.upsert(Array.from({ length: 20 }, (_, k) => record(`r${i}-${k}`, i * 20 + k)));
    await waitFor(() => (store.checkpoints?.runs ?? 0) > 0);
    expect(store.checkpoints!.checkpointedPages).toBeGreaterThan(0);
    await store.close();
    expect(existsSync(`${file}-wal`)).toBe(false);
    const reader = new Database(file, { readonly: true });
    expect((reader.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n).toBe(400);
    reader.close();
  });

  it('an in-memory database keeps SQLite’s own checkpoints: there is no file for the worker to open', async () => {
    const warn = vi.fn();
    const store = new SqliteMemoryStore(':memory:', { dimensions: DIM, embedder: 'test:v1', logger: { warn } as unknown as Logger });
    await store.init();
    await store.upsert([record('in-memory', 0)]);
    expect(store.checkpoints).toBeUndefined();
    // A worker given ':memory:' would have failed to open it and been reported lost.
    await new Promise((r) => setTimeout(r, 300));
    expect(warn).not.toHaveBeenCalled();
    expect((await store.get('u', 'in-memory'))?.text).toBe('memory in-memory');
    await store.close();
  });
});

describe('SQLITE_CHECKPOINTS', () => {
  it('worker (default): a gateway’s first chat turn brings the checkpointer in; inline: SQLite’s own, no worker', async () => {
    for (const [setting, expected] of [[undefined, true], ['inline', false]] as const) {
      const gw = await startGateway(setting ? { SQLITE_CHECKPOINTS: setting } : {});
      try {
        const res = await fetch(`${gw.url}/api/v2/ai/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'hello' }) });
        expect(res.status).toBe(200);
        await res.text();
        const store = gw.server.services.store as SqliteConversationStore;
        if (expected) {
          await waitFor(() => (store.checkpoints?.runs ?? 0) > 0);
          await new Promise((r) => setTimeout(r, 300)); // the wake of the reply's commit, if it came after the first
          // What the last checkpoint found in the WAL, on /metrics (the turn's pages, copied back).
          const m = await scrape(gw.url);
          expect(m.value('gateway_sqlite_wal_pages', { database: 'gateway' })).toBe(store.checkpoints!.walPages);
          expect(store.checkpoints!.walPages).toBeGreaterThan(0);
          // Long-term memory is on, but nothing was written to it since the start: no checkpoint, no series.
          expect(m.family('gateway_sqlite_wal_pages')?.samples.map((x) => x.labels['database'])).toEqual(['gateway']);
        } else {
          expect(store.checkpoints).toBeUndefined();
          expect((await scrape(gw.url)).family('gateway_sqlite_wal_pages')?.samples ?? []).toHaveLength(0);
        }
      } finally {
        await gw.destroy();
      }
    }
  });

  it('a signed-in turn that is remembered brings the memory file into the gauge, beside the conversations', async () => {
    const gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
    try {
      const alice = await register(gw.url, 'alice-wal@example.com');
      const res = await fetch(`${gw.url}/api/v2/ai/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(alice) },
        body: JSON.stringify({ message: 'remember that my cat is called Pixel' }),
      });
      expect(res.status).toBe(200);
      await res.text();
      // The memory worker embeds the turn and writes DATA_DIR/memory.sqlite; its checkpointer then reports.
      let pages: Record<string, number | undefined> = {};
      await waitFor(async () => {
        const family = (await scrape(gw.url)).family('gateway_sqlite_wal_pages');
        pages = Object.fromEntries((family?.samples ?? []).map((x) => [x.labels['database'], x.value]));
        return pages['memory'] !== undefined;
      }, 10_000);
      expect(Object.keys(pages).sort()).toEqual(['gateway', 'memory']);
      expect(pages['memory']).toBeGreaterThan(0);
    } finally {
      await gw.destroy();
    }
  });

  it('refuses anything else, naming it', () => {
    expect(loadConfig({ SQLITE_CHECKPOINTS: 'inline' }).sqliteCheckpoints).toBe('inline');
    expect(loadConfig({}).sqliteCheckpoints).toBe('worker');
    expect(() => loadConfig({ SQLITE_CHECKPOINTS: 'thread' })).toThrow(/SQLITE_CHECKPOINTS/);
  });
});
