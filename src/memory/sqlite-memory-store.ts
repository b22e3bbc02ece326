import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import * as sqliteVec from 'sqlite-vec';
import { decodeCursor, toPage, type Page } from '../stores/conversation-store.js';
import { MemoryStoreError } from './memory-store-error.js';
import type { MemoryMatch, MemoryQuery, MemoryRecord, MemoryStore } from './memory-store.js';

export interface SqliteMemoryStoreOptions {
  /** The embedder's vector length; the file refuses to open with another one. */
  dimensions: number;
  /** Which embedder makes the vectors (e.g. `local:local-hash-v1`); vectors of different embedders cannot be compared. */
  embedder: string;
  /** Tells an operator how to erase long-term memory; appended to the mismatch errors of `init()`. */
  eraseHint?: string;
}

/** sqlite-vec refuses KNN queries with a larger `k`. */
const MAX_K = 4096;
/** Rows deleted per transaction by the bulk deletes, so erasing a large account never stalls the event loop for long. */
const DELETE_CHUNK = 250;
/**
 * Vectors per vec0 chunk. Every partition allocates whole chunks, so sqlite-vec's default
 * (1024) costs each user with a single memory 3 MB at 768 dimensions; 32 costs about 100 KB,
 * and a KNN over a 100k-memory partition is measured only about 8% slower.
 */
const CHUNK_SIZE = 32;

interface MemoryRow {
  seq: number;
  owner_id: string;
  id: string;
  conversation_id: string;
  message_id: string;
  role: 'user' | 'assistant';
  text: string;
  created_at: number;
}

const toRecord = (r: MemoryRow): MemoryRecord => ({
  id: r.id,
  ownerId: r.owner_id,
  conversationId: r.conversation_id,
  messageId: r.message_id,
  role: r.role,
  text: r.text,
  createdAt: r.created_at,
});

const byCreated = (m: MemoryRecord): number => m.createdAt;

function schema(dimensions: number): string {
  // `seq` aliases the rowid, so VACUUM never renumbers it: it is the vector's rowid in vec0.
  // Records live in a plain table (indexed for newest-first listing); vectors in vec0, one
  // partition per user, so a KNN query reads only that user's vectors.
  return `
CREATE TABLE IF NOT EXISTS memories (
  seq INTEGER PRIMARY KEY,
  owner_id TEXT NOT NULL,
  id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  role TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_owner_id ON memories (owner_id, id);
CREATE INDEX IF NOT EXISTS memories_owner_recent ON memories (owner_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS memories_owner_conversation ON memories (owner_id, conversation_id);
CREATE VIRTUAL TABLE IF NOT EXISTS memory_vectors USING vec0(
  user_id TEXT PARTITION KEY,
  embedding FLOAT[${dimensions}] distance_metric=cosine,
  chunk_size=${CHUNK_SIZE}
);`;
}

/** Creates the file owner-only if it does not exist yet (SQLite gives its -wal and -shm files the same mode). */
function createPrivateFile(file: string): void {
  if (file === ':memory:') return;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    closeSync(openSync(file, 'wx', 0o600));
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'EEXIST')) throw err;
  }
}

function prepareStatements(db: Database.Database) {
  return {
    insertRecord: db.prepare<[string, string, string, string, string, string, number]>(
      'INSERT INTO memories (owner_id, id, conversation_id, message_id, role, text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    updateRecord: db.prepare<[string, string, string, string, number, number]>(
      'UPDATE memories SET conversation_id = ?, message_id = ?, role = ?, text = ?, created_at = ? WHERE seq = ?',
    ),
    updateVector: db.prepare<[Buffer, bigint]>('UPDATE memory_vectors SET embedding = ? WHERE rowid = ?'),
    // vec0 wants BigInt rowids from better-sqlite3: a JS number binds as REAL, which vec0
    // refuses on insert and silently matches nothing on delete.
    deleteVector: db.prepare<[bigint]>('DELETE FROM memory_vectors WHERE rowid = ?'),
    insertVector: db.prepare<[bigint, string, Buffer]>('INSERT INTO memory_vectors (rowid, user_id, embedding) VALUES (?, ?, ?)'),
    deleteRecord: db.prepare<[number]>('DELETE FROM memories WHERE seq = ?'),
    // MATERIALIZED keeps the KNN scan (with its partition constraint) in one piece instead of
    // letting the planner drive it from the join.
    knn: db.prepare<[Buffer, bigint, string, string], MemoryRow & { distance: number }>(
      `WITH knn AS MATERIALIZED (
         SELECT rowid, distance FROM memory_vectors WHERE embedding MATCH ? AND k = ? AND user_id = ?
       )
       SELECT m.*, knn.distance FROM knn JOIN memories AS m ON m.seq = knn.rowid
       WHERE m.owner_id = ? ORDER BY knn.distance, m.seq`,
    ),
    get: db.prepare<[string, string], MemoryRow>('SELECT * FROM memories WHERE owner_id = ? AND id = ?'),
    seqOf: db.prepare<[string, string], { seq: number }>('SELECT seq FROM memories WHERE owner_id = ? AND id = ?'),
    list: db.prepare<[string, number], MemoryRow>('SELECT * FROM memories WHERE owner_id = ? ORDER BY created_at DESC, id LIMIT ?'),
    listAfter: db.prepare<[string, number, number, string, number], MemoryRow>(
      `SELECT * FROM memories WHERE owner_id = ? AND (created_at < ? OR (created_at = ? AND id > ?))
       ORDER BY created_at DESC, id LIMIT ?`,
    ),
    ownerChunk: db.prepare<[string, number], { seq: number }>('SELECT seq FROM memories WHERE owner_id = ? LIMIT ?'),
    conversationChunk: db.prepare<[string, string, number], { seq: number }>(
      'SELECT seq FROM memories WHERE owner_id = ? AND conversation_id = ? LIMIT ?',
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/**
 * The embedded vector memory: a SQLite file (it may be the conversation store's) with the
 * sqlite-vec extension. Records sit in `memories`, vectors in the vec0 table `memory_vectors`
 * partitioned by user, and `memory_meta` remembers the dimension and embedder the file was
 * built with. Writes are group-committed like the conversation store's: every write queued in
 * one turn of the event loop shares one transaction.
 */
export class SqliteMemoryStore implements MemoryStore {
  readonly kind = 'sqlite';
  readonly #file: string;
  readonly #options: SqliteMemoryStoreOptions;
  readonly #db: Database.Database;
  #stmt: Statements | undefined;
  #pending: { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];

  constructor(file: string, options: SqliteMemoryStoreOptions) {
    if (!Number.isInteger(options.dimensions) || options.dimensions < 1) {
      throw new MemoryStoreError(`Vector memory needs a positive integer dimension, got ${options.dimensions}`);
    }
    createPrivateFile(file);
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    sqliteVec.load(db);
    this.#file = file;
    this.#options = options;
    this.#db = db;
  }

  /** Drops the memory tables (and nothing else) from a file, e.g. before switching to another embedder. */
  static erase(file: string): void {
    const db = new Database(file, { fileMustExist: true });
    try {
      sqliteVec.load(db);
      db.exec('DROP TABLE IF EXISTS memory_vectors; DROP TABLE IF EXISTS memories; DROP TABLE IF EXISTS memory_meta;');
    } finally {
      db.close();
    }
  }

  async init(): Promise<void> {
    const { dimensions, embedder } = this.#options;
    const stored = this.#storedShape();
    const hint = this.#options.eraseHint ?? 'or erase long-term memory (SqliteMemoryStore.erase on this file drops only the memory tables; conversations stay)';
    if (stored.dimensions !== undefined && stored.dimensions !== dimensions) {
      throw new MemoryStoreError(
        `Long-term memory in ${this.#file} holds ${stored.dimensions}-dimension vectors` +
          `${stored.embedder ? ` made by ${stored.embedder}` : ''}, but the configured embedder (${embedder}) makes ` +
          `${dimensions}-dimension vectors. Set EMBEDDING_DIMENSIONS=${stored.dimensions} with the embedder that made them, ${hint}.`,
      );
    }
    if (stored.embedder !== undefined && stored.embedder !== embedder) {
      throw new MemoryStoreError(
        `Long-term memory in ${this.#file} was made by the embedder ${stored.embedder}, but the configured one is ${embedder}; ` +
          `vectors of different embedders cannot be compared. Configure ${stored.embedder} again, ${hint}.`,
      );
    }
    const db = this.#db;
    db.transaction(() => {
      db.exec('CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
      db.exec(schema(dimensions));
      const set = db.prepare<[string, string]>('INSERT INTO memory_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
      set.run('dimensions', String(dimensions));
      set.run('embedder', embedder);
    }).immediate();
    this.#stmt = prepareStatements(db);
  }

  /** The dimension and embedder the file was built with, if it holds memory already. */
  #storedShape(): { dimensions: number | undefined; embedder: string | undefined } {
    const db = this.#db;
    const tables = new Set(
      db
        .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE name IN ('memory_meta', 'memory_vectors')")
        .all()
        .map((r) => r.name),
    );
    const meta = (key: string) =>
      tables.has('memory_meta')
        ? db.prepare<[string], { value: string }>('SELECT value FROM memory_meta WHERE key = ?').get(key)?.value
        : undefined;
    let dimensions = meta('dimensions') === undefined ? undefined : Number(meta('dimensions'));
    if (dimensions === undefined && tables.has('memory_vectors')) {
      // No meta row (an older or hand-edited file): the vec0 declaration is the truth.
      const sql = db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE name = 'memory_vectors'").get()?.sql ?? '';
      const m = /float\[(\d+)\]/i.exec(sql);
      dimensions = m ? Number(m[1]) : undefined;
    }
    return { dimensions, embedder: meta('embedder') };
  }

  get #s(): Statements {
    if (!this.#stmt) throw new MemoryStoreError('SqliteMemoryStore: init() has not been called');
    return this.#stmt;
  }

  #blob(vector: Float32Array): Buffer {
    if (vector.length !== this.#options.dimensions) {
      throw new MemoryStoreError(`Vector memory expects ${this.#options.dimensions}-dimension vectors, got ${vector.length}`);
    }
    for (let i = 0; i < vector.length; i++) {
      if (!Number.isFinite(vector[i])) throw new MemoryStoreError('Vector memory got a vector with a non-finite value');
    }
    return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  }

  #write<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(() => this.#flush());
      this.#pending.push({ run, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  #flush() {
    const batch = this.#pending;
    this.#pending = [];
    if (!this.#db.open) {
      for (const op of batch) op.reject(new MemoryStoreError('The memory store is closed'));
      return;
    }
    const results: { ok: boolean; value: unknown }[] = [];
    try {
      this.#db.transaction(() => {
        for (const op of batch) {
          // Each write is its own savepoint: a failing one is undone alone, the rest still commit.
          try {
            results.push({ ok: true, value: this.#db.transaction(op.run)() });
          } catch (err) {
            results.push({ ok: false, value: err });
          }
        }
      })();
    } catch (err) {
      for (const op of batch) op.reject(err);
      return;
    }
    batch.forEach((op, i) => (results[i]!.ok ? op.resolve(results[i]!.value) : op.reject(results[i]!.value)));
  }

  /** Deletes records and their vectors; runs inside a write. */
  #deleteSeqs(seqs: readonly number[]): void {
    const s = this.#s;
    for (const seq of seqs) {
      s.deleteVector.run(BigInt(seq));
      s.deleteRecord.run(seq);
    }
  }

  async upsert(items: readonly (MemoryRecord & { vector: Float32Array })[]): Promise<void> {
    if (items.length === 0) return;
    const s = this.#s;
    const rows = items.map((item) => ({ item, blob: this.#blob(item.vector) }));
    await this.#write(() => {
      for (const { item, blob } of rows) {
        const existing = s.seqOf.get(item.ownerId, item.id)?.seq;
        if (existing === undefined) {
          const { lastInsertRowid } = s.insertRecord.run(item.ownerId, item.id, item.conversationId, item.messageId, item.role, item.text, item.createdAt);
          s.insertVector.run(BigInt(lastInsertRowid), item.ownerId, blob);
        } else {
          // Same owner, so the vector stays in its partition: update it in place.
          s.updateRecord.run(item.conversationId, item.messageId, item.role, item.text, item.createdAt, existing);
          s.updateVector.run(blob, BigInt(existing));
        }
      }
    });
  }

  async query(ownerId: string, vector: Float32Array, query: MemoryQuery): Promise<MemoryMatch[]> {
    const s = this.#s;
    const blob = this.#blob(vector);
    if (query.topK <= 0) return [];
    const excluded = new Set(query.excludeMessageIds ?? []);
    // Ask for enough neighbours that dropping the excluded ones still leaves topK.
    const k = Math.min(query.topK + excluded.size, MAX_K);
    const matches: MemoryMatch[] = [];
    for (const row of s.knn.all(blob, BigInt(k), ownerId, ownerId)) {
      if (excluded.has(row.message_id)) continue;
      const score = 1 - row.distance;
      if (score < query.minScore) break; // rows come best first
      matches.push({ ...toRecord(row), score });
      if (matches.length === query.topK) break;
    }
    return matches;
  }

  async list(ownerId: string, options: { limit: number; cursor?: string | undefined }): Promise<Page<MemoryRecord>> {
    const s = this.#s;
    const after = decodeCursor(options.cursor);
    const rows = after
      ? s.listAfter.all(ownerId, after.createdAt, after.createdAt, after.id, options.limit + 1)
      : s.list.all(ownerId, options.limit + 1);
    return toPage(rows.map(toRecord), options.limit, byCreated);
  }

  async get(ownerId: string, id: string): Promise<MemoryRecord | undefined> {
    const row = this.#s.get.get(ownerId, id);
    return row ? toRecord(row) : undefined;
  }

  async delete(ownerId: string, ids: readonly string[]): Promise<number> {
    const s = this.#s;
    const unique = [...new Set(ids)];
    if (unique.length === 0) return 0;
    return this.#write(() => {
      const seqs = unique.map((id) => s.seqOf.get(ownerId, id)?.seq).filter((seq): seq is number => seq !== undefined);
      this.#deleteSeqs(seqs);
      return seqs.length;
    });
  }

  async deleteByConversation(ownerId: string, conversationId: string): Promise<void> {
    const s = this.#s;
    await this.#deleteInChunks(() => s.conversationChunk.all(ownerId, conversationId, DELETE_CHUNK));
  }

  async deleteAll(ownerId: string): Promise<void> {
    const s = this.#s;
    await this.#deleteInChunks(() => s.ownerChunk.all(ownerId, DELETE_CHUNK));
  }

  /** Deletes chunk after chunk, each in its own transaction, until nothing matches. */
  async #deleteInChunks(nextChunk: () => { seq: number }[]): Promise<void> {
    for (;;) {
      const deleted = await this.#write(() => {
        const seqs = nextChunk().map((r) => r.seq);
        this.#deleteSeqs(seqs);
        return seqs.length;
      });
      if (deleted < DELETE_CHUNK) return;
    }
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#pending.length) this.#flush();
    if (this.#db.open) this.#db.close();
  }
}
