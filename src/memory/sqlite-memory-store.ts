import Database from 'better-sqlite3';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import * as sqliteVec from 'sqlite-vec';
import { decodeCursor, toPage, type Page } from '../stores/conversation-store.js';
import { offLoopCheckpoints, type CheckpointOptions, type CheckpointStats, type WalCheckpointer } from '../stores/wal-checkpointer.js';
import { READ_BUSY_TIMEOUT_MS, WriteLock } from '../stores/sqlite-write-lock.js';
import { InvalidCursorError, MemoryStoreError } from './memory-store-error.js';
import type { MemoryMatch, MemoryQuery, MemoryRecord, MemoryStore } from './memory-store.js';
import { mulberry32 } from './seeded-random.js';

export interface SqliteMemoryStoreOptions extends CheckpointOptions {
  /** The embedder's vector length; the file refuses to open with another one. */
  dimensions: number;
  /** Which embedder makes the vectors (e.g. `local:local-hash-v1`); vectors of different embedders cannot be compared. */
  embedder: string;
  /** Tells an operator how to erase long-term memory; appended to the mismatch errors of `init()`. */
  eraseHint?: string;
  /**
   * How many of the owner's memories the binary first stage of `query()` hands to the exact
   * rerank (plus one per excluded message id). Default {@link RECALL_CANDIDATES}; larger is
   * closer to exact and slower. Benchmarks and tests change it; a server keeps the default.
   */
  recallCandidates?: number;
  /**
   * Memory for the binary codes of recently searched owners, so that the first stage of
   * recall scans an array instead of SQLite rows (about 3 times faster). Default
   * {@link RECALL_CACHE_BYTES}; 0 turns the cache off. An owner too large for it is searched in
   * SQLite.
   */
  recallCacheBytes?: number;
}

/**
 * Layout of the memory tables, kept in `memory_meta` under `format`.
 * 1 (files without the key): float vectors in a vec0 table partitioned by user, searched by
 * brute force. 2: float vectors in `memories.vector`, binary codes in `memory_codes`.
 * `init()` converts a layout-1 file and refuses a layout it does not know.
 */
export const MEMORY_FORMAT = 2;

/**
 * Candidates per query from the binary stage. On 30k sentences of technical prose embedded by
 * the local embedder (384 and 768 dimensions, 10k and 30k memories of one user), recall@3 of
 * the two-stage search against exact search was 0.982-1.000 with 64 candidates, 0.991-1.000
 * with 128 and 0.998-1.000 with 256, where a miss costs at most 0.003 of cosine
 * (bench/memory-recall.ts); the rerank of 256 takes well under a millisecond.
 */
export const RECALL_CANDIDATES = 256;

/**
 * Default budget of the code cache: about 330k memories of 1024-bit codes (a code costs its
 * bytes, 8 for its seq and about 64 of bookkeeping).
 */
export const RECALL_CACHE_BYTES = 64 * 1024 * 1024;

/** Rows deleted per transaction by the bulk deletes, so erasing a large account never stalls the event loop for long. */
const DELETE_CHUNK = 250;
/** Memories whose codes are (re)built per statement when a file is converted. */
const REBUILD_BATCH = 1000;

/** The shortest binary code: a code this long separates the top matches of a short text reliably. */
const MIN_CODE_BITS = 1024;
const CODE_ROUNDS = 3;
const CODE_SEED = 0x5eed_c0de;

/**
 * Binary codes for the first stage of recall: the sign bits of a fixed pseudo-random rotation
 * of the vector (zero-padded to `bits`, the least power of two that is at least the dimension
 * and 1024; three rounds of random sign flips, each followed by a Walsh–Hadamard transform, a
 * fast stand-in for a random orthogonal matrix). Each bit then tells on which side of a random
 * hyperplane the vector lies, so the Hamming distance between two codes estimates the angle
 * between the vectors (bits differ with probability angle / π) whatever the embedder.
 *
 * The plain sign bits of the coordinates (`vec_quantize_binary`) fail on the local embedder:
 * its vectors are sparse (about two thirds zeros at 384 dimensions) and a zero gets the bit of
 * a negative value. Measured on realistic text, recall@3 was 0.76 with 400 candidates, against
 * 1.00 with 200 candidates of these codes.
 *
 * Stored codes must match query codes: any change to the rotation must change `id`, which
 * `init()` compares with the file's and then rebuilds every code from the float vectors.
 */
export class BinaryCodes {
  /** Code length in bits (a power of two, so always whole 64-bit words). */
  readonly bits: number;
  /** Names the rotation; stored in `memory_meta` under `codes`. */
  readonly id: string;
  readonly #dimensions: number;
  readonly #signs: Float64Array;
  readonly #work: Float64Array;

  constructor(dimensions: number) {
    let bits = MIN_CODE_BITS;
    while (bits < dimensions) bits *= 2;
    this.bits = bits;
    this.id = `srht${CODE_ROUNDS}-${bits}-${CODE_SEED.toString(16)}`;
    this.#dimensions = dimensions;
    this.#work = new Float64Array(bits);
    this.#signs = new Float64Array(CODE_ROUNDS * bits);
    const random = mulberry32(CODE_SEED);
    for (let i = 0; i < this.#signs.length; i++) this.#signs[i] = random() < 0.5 ? -1 : 1;
  }

  /** The code of one vector: `bits / 8` bytes, bit i of the rotation in byte i >> 3. */
  encode(vector: Float32Array): Buffer {
    const n = this.bits;
    const a = this.#work;
    a.fill(0);
    for (let i = 0; i < this.#dimensions; i++) a[i] = vector[i]!;
    for (let round = 0; round < CODE_ROUNDS; round++) {
      const offset = round * n;
      for (let i = 0; i < n; i++) a[i]! *= this.#signs[offset + i]!;
      walshHadamard(a);
    }
    const code = Buffer.alloc(n >> 3);
    for (let i = 0; i < n; i++) if (a[i]! > 0) code[i >> 3]! |= 1 << (i & 7);
    return code;
  }
}

/** In-place unnormalised fast Walsh–Hadamard transform (the length is a power of two). */
function walshHadamard(a: Float64Array): void {
  const n = a.length;
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const x = a[j]!;
        const y = a[j + h]!;
        a[j] = x + y;
        a[j + h] = x - y;
      }
    }
  }
}


/** Bookkeeping per cached code besides its bytes and its seq (mostly the seq's Map entry). */
const CACHED_CODE_OVERHEAD = 64;

/** The 32-bit words of a code (copied: a Buffer need not be 4-byte aligned). */
function codeWords(code: Uint8Array): Int32Array {
  const words = new Int32Array(code.byteLength >> 2);
  new Uint8Array(words.buffer).set(code);
  return words;
}

/** One owner's codes in memory: their 32-bit words one code after another, and the seq of each. */
class OwnerCodes {
  /** The owner's `version` in `memory_owners` that these codes reflect. */
  version: number;
  readonly #wordsPerCode: number;
  readonly #slotOf = new Map<number, number>();
  #words: Int32Array;
  #seqs: Float64Array;
  #size = 0;

  constructor(codeBytes: number, version: number, capacity = 16) {
    this.#wordsPerCode = codeBytes >> 2;
    this.version = version;
    this.#words = new Int32Array(capacity * this.#wordsPerCode);
    this.#seqs = new Float64Array(capacity);
  }

  /** From `seqs.length` codes laid end to end in `codes`. */
  static of(codeBytes: number, version: number, seqs: readonly number[], codes: Uint8Array): OwnerCodes {
    const owner = new OwnerCodes(codeBytes, version, Math.max(16, seqs.length));
    new Uint8Array(owner.#words.buffer).set(codes);
    owner.#seqs.set(seqs);
    seqs.forEach((seq, slot) => owner.#slotOf.set(seq, slot));
    owner.#size = seqs.length;
    return owner;
  }

  get size(): number {
    return this.#size;
  }

  /** What it costs in memory, near enough. */
  get bytes(): number {
    return this.#seqs.length * (this.#wordsPerCode * 4 + 8) + this.#size * CACHED_CODE_OVERHEAD;
  }

  /** Adds a seq's code, or replaces it. */
  put(seq: number, code: Uint8Array): void {
    let slot = this.#slotOf.get(seq);
    if (slot === undefined) {
      if (this.#size === this.#seqs.length) this.#grow();
      slot = this.#size++;
      this.#slotOf.set(seq, slot);
      this.#seqs[slot] = seq;
    }
    new Uint8Array(this.#words.buffer, slot * this.#wordsPerCode * 4, this.#wordsPerCode * 4).set(code);
  }

  /** Removes a seq's code (the last code takes its slot). */
  remove(seq: number): void {
    const slot = this.#slotOf.get(seq);
    if (slot === undefined) return;
    this.#slotOf.delete(seq);
    const last = --this.#size;
    if (slot === last) return;
    const w = this.#wordsPerCode;
    this.#words.copyWithin(slot * w, last * w, (last + 1) * w);
    const moved = this.#seqs[last]!;
    this.#seqs[slot] = moved;
    this.#slotOf.set(moved, slot);
  }

  #grow(): void {
    const capacity = this.#seqs.length * 2;
    const words = new Int32Array(capacity * this.#wordsPerCode);
    words.set(this.#words);
    const seqs = new Float64Array(capacity);
    seqs.set(this.#seqs);
    this.#words = words;
    this.#seqs = seqs;
  }

  /**
   * The seqs of the `k` codes nearest to `query` in Hamming distance (all of them when there
   * are no more than `k`), in no particular order; ties at the cut are taken in slot order.
   */
  nearest(query: Int32Array, k: number): number[] {
    const n = this.#size;
    if (k >= n) return Array.from(this.#seqs.subarray(0, n));
    const perCode = this.#wordsPerCode;
    const words = this.#words;
    const distances = new Uint16Array(n);
    const counts = new Uint32Array(perCode * 32 + 1);
    for (let v = 0, o = 0; v < n; v++, o += perCode) {
      // Population count of the XOR, two words at a time (codes are whole 64-bit words): bit
      // pairs, then nibbles (a sum of two stays below 16), then bytes, summed by a multiply.
      let distance = 0;
      for (let w = 0; w < perCode; w += 2) {
        let x = words[o + w]! ^ query[w]!;
        let y = words[o + w + 1]! ^ query[w + 1]!;
        x -= (x >>> 1) & 0x55555555;
        y -= (y >>> 1) & 0x55555555;
        x = (x & 0x33333333) + ((x >>> 2) & 0x33333333) + (y & 0x33333333) + ((y >>> 2) & 0x33333333);
        x = (x & 0x0f0f0f0f) + ((x >>> 4) & 0x0f0f0f0f);
        distance += Math.imul(x, 0x01010101) >>> 24;
      }
      distances[v] = distance;
      counts[distance]!++;
    }
    // The cut: the smallest distance with at least k codes at or below it.
    let cut = 0;
    let below = 0;
    while (below + counts[cut]! < k) below += counts[cut++]!;
    let atCut = k - below;
    const out: number[] = [];
    for (let v = 0; v < n; v++) {
      const d = distances[v]!;
      if (d < cut || (d === cut && atCut-- > 0)) out.push(this.#seqs[v]!);
    }
    return out;
  }
}

export interface CodeCacheStats {
  /** Owners whose codes are held, how many codes and about how many bytes. */
  owners: number;
  codes: number;
  bytes: number;
  /** Queries answered from held codes; owners' codes loaded from the file (first use, or after another process wrote). */
  hits: number;
  loads: number;
}

/** What one committed write changed in one owner's codes, for the cache. */
interface CodeChange {
  ownerKey: number;
  /** The owner's version before and after the write. */
  from: number;
  to: number;
  put: [seq: number, code: Buffer][];
  removed: number[];
  /** The owner has nothing left and its row is gone. */
  dropped: boolean;
}

/**
 * Recently searched owners' codes, least recently used first, within a byte budget. An entry
 * is used only while its version is the owner's version in the file: this store's own writes
 * update the entries they touch after they commit; a write by anyone else (another process
 * on the same file) leaves the entry behind, and the next query reloads it.
 */
class CodeCache {
  readonly #budget: number;
  readonly #owners = new Map<number, OwnerCodes>();
  /** Owners whose codes alone exceed the budget (or cannot be loaded): searched in SQLite. */
  readonly #refused = new Set<number>();
  #bytes = 0;
  #hits = 0;
  #loads = 0;

  constructor(budget: number) {
    this.#budget = budget;
  }

  get(ownerKey: number, version: number): OwnerCodes | undefined {
    const entry = this.#owners.get(ownerKey);
    if (entry === undefined) return undefined;
    this.#drop(ownerKey);
    if (entry.version !== version) return undefined;
    this.#owners.set(ownerKey, entry);
    this.#bytes += entry.bytes;
    this.#hits++;
    return entry;
  }

  wants(ownerKey: number): boolean {
    return !this.#refused.has(ownerKey);
  }

  refuse(ownerKey: number): void {
    this.#drop(ownerKey);
    this.#refused.add(ownerKey);
  }

  set(ownerKey: number, entry: OwnerCodes): void {
    this.#loads++;
    this.#drop(ownerKey);
    if (entry.bytes > this.#budget) {
      this.#refused.add(ownerKey);
      return;
    }
    this.#owners.set(ownerKey, entry);
    this.#bytes += entry.bytes;
    this.#evict();
  }

  apply(change: CodeChange): void {
    const entry = this.#owners.get(change.ownerKey);
    if (entry === undefined || entry.version >= change.to) return;
    if (change.dropped || entry.version !== change.from) {
      this.#drop(change.ownerKey);
      return;
    }
    const before = entry.bytes;
    for (const seq of change.removed) entry.remove(seq);
    for (const [seq, code] of change.put) entry.put(seq, code);
    entry.version = change.to;
    this.#bytes += entry.bytes - before;
    this.#evict();
  }

  clear(): void {
    this.#owners.clear();
    this.#refused.clear();
    this.#bytes = 0;
  }

  stats(): CodeCacheStats {
    let codes = 0;
    for (const entry of this.#owners.values()) codes += entry.size;
    return { owners: this.#owners.size, codes, bytes: this.#bytes, hits: this.#hits, loads: this.#loads };
  }

  #drop(ownerKey: number): void {
    const entry = this.#owners.get(ownerKey);
    if (entry === undefined) return;
    this.#owners.delete(ownerKey);
    this.#bytes -= entry.bytes;
  }

  #evict(): void {
    for (const ownerKey of this.#owners.keys()) {
      if (this.#bytes <= this.#budget) return;
      this.#drop(ownerKey);
    }
  }
}

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

/** A float32 vector read back from a BLOB (copied: the Buffer need not be 4-byte aligned). */
function floats(blob: Buffer): Float32Array {
  const out = new Float32Array(blob.byteLength >> 2);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

// `seq` aliases the rowid, so VACUUM never renumbers it; it keys a memory's code. Records and
// their float vectors live in `memories` (indexed for newest-first listing; one row, as a
// separate table of vectors wastes more of each page), and binary codes in `memory_codes`,
// clustered by owner so that the
// first stage of recall reads only that owner's codes, in order, and nothing else. Owners get
// a small integer key there (never reused) to keep the rows short, and a version that every
// write to their codes increments (the code cache checks it).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS memories (
  seq INTEGER PRIMARY KEY,
  owner_id TEXT NOT NULL,
  id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  role TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  vector BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_owner_id ON memories (owner_id, id);
CREATE INDEX IF NOT EXISTS memories_owner_recent ON memories (owner_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS memories_owner_conversation ON memories (owner_id, conversation_id);
CREATE TABLE IF NOT EXISTS memory_owners (
  owner_key INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_id TEXT NOT NULL UNIQUE,
  version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS memory_codes (
  owner_key INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  code BLOB NOT NULL,
  PRIMARY KEY (owner_key, seq)
) WITHOUT ROWID;`;

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

interface RecallParams {
  ownerKey: number;
  ownerId: string;
  code: Buffer;
  vector: Buffer;
  candidates: number;
  limit: number;
}

interface RerankParams {
  /** JSON array of the candidates' seqs. */
  seqs: string;
  ownerId: string;
  vector: Buffer;
  limit: number;
}

/** A memory's record: every column but the vector. */
const RECORD = 'seq, owner_id, id, conversation_id, message_id, role, text, created_at';

/**
 * The second stage of recall, after the CTE `candidates(seq)`: the exact cosine distance of
 * the candidates' float vectors, best first. A zero vector has no direction: its cosine (NULL)
 * counts as 0. The owner is checked again on the records. CROSS JOIN keeps the candidates the
 * outer loop (the planner would otherwise walk all the owner's records by index).
 */
const RERANK = `ranked AS MATERIALIZED (
  SELECT m.seq, coalesce(vec_distance_cosine(m.vector, @vector), 1.0) AS distance
  FROM candidates AS c CROSS JOIN memories AS m ON m.seq = c.seq
  WHERE m.owner_id = @ownerId AND m.vector IS NOT NULL
  ORDER BY distance, m.seq LIMIT @limit
)
SELECT ${RECORD.split(', ').map((column) => `m.${column}`).join(', ')}, r.distance FROM ranked AS r CROSS JOIN memories AS m ON m.seq = r.seq
ORDER BY r.distance, m.seq`;

function prepareStatements(db: Database.Database) {
  return {
    owner: db.prepare<[string], { owner_key: number; version: number }>('SELECT owner_key, version FROM memory_owners WHERE owner_id = ?'),
    ownerVersion: db.prepare<[number], { version: number }>('SELECT version FROM memory_owners WHERE owner_key = ?'),
    bumpVersion: db.prepare<[number], { version: number }>('UPDATE memory_owners SET version = version + 1 WHERE owner_key = ? RETURNING version'),
    // One row with all the owner's codes end to end (a BLOB: group_concat keeps every byte) and
    // their seqs in the same order: far faster than a row per code.
    ownerCodes: db.prepare<[number], { n: number; seqs: string; codes: Buffer | null }>(
      "SELECT count(*) AS n, json_group_array(seq) AS seqs, CAST(group_concat(code, '') AS BLOB) AS codes FROM memory_codes WHERE owner_key = ?",
    ),
    addOwner: db.prepare<[string]>('INSERT INTO memory_owners (owner_id) VALUES (?)'),
    // Keys are AUTOINCREMENT, so a dropped key is never handed to another owner.
    dropOwnerIfEmpty: db.prepare<[number, number]>(
      'DELETE FROM memory_owners WHERE owner_key = ? AND NOT EXISTS (SELECT 1 FROM memory_codes WHERE owner_key = ?)',
    ),
    insertRecord: db.prepare<[string, string, string, string, string, string, number, Buffer]>(
      'INSERT INTO memories (owner_id, id, conversation_id, message_id, role, text, created_at, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    updateRecord: db.prepare<[string, string, string, string, number, Buffer, number]>(
      'UPDATE memories SET conversation_id = ?, message_id = ?, role = ?, text = ?, created_at = ?, vector = ? WHERE seq = ?',
    ),
    putCode: db.prepare<[number, number, Buffer]>(
      'INSERT INTO memory_codes (owner_key, seq, code) VALUES (?, ?, ?) ON CONFLICT (owner_key, seq) DO UPDATE SET code = excluded.code',
    ),
    deleteCode: db.prepare<[number, number]>('DELETE FROM memory_codes WHERE owner_key = ? AND seq = ?'),
    deleteRecord: db.prepare<[number]>('DELETE FROM memories WHERE seq = ?'),
    // Both stages in SQLite (an owner not in the code cache): the `candidates` codes of the
    // owner nearest to the query's code in Hamming distance, a scan of the owner's codes only.
    recall: db.prepare<[RecallParams], MemoryRow & { distance: number }>(
      `WITH candidates AS MATERIALIZED (
         SELECT seq FROM memory_codes WHERE owner_key = @ownerKey
         ORDER BY vec_distance_hamming(vec_bit(code), vec_bit(@code)) LIMIT @candidates
       ), ${RERANK}`,
    ),
    // The second stage only, for candidates the code cache found.
    rerank: db.prepare<[RerankParams], MemoryRow & { distance: number }>(
      `WITH candidates(seq) AS (SELECT value FROM json_each(@seqs)), ${RERANK}`,
    ),
    get: db.prepare<[string, string], MemoryRow>(`SELECT ${RECORD} FROM memories WHERE owner_id = ? AND id = ?`),
    seqOf: db.prepare<[string, string], { seq: number }>('SELECT seq FROM memories WHERE owner_id = ? AND id = ?'),
    list: db.prepare<[string, number], MemoryRow>(`SELECT ${RECORD} FROM memories WHERE owner_id = ? ORDER BY created_at DESC, id LIMIT ?`),
    listAfter: db.prepare<[string, number, number, string, number], MemoryRow>(
      `SELECT ${RECORD} FROM memories WHERE owner_id = ? AND (created_at < ? OR (created_at = ? AND id > ?))
       ORDER BY created_at DESC, id LIMIT ?`,
    ),
    ownerChunk: db.prepare<[string, number], { seq: number }>('SELECT seq FROM memories WHERE owner_id = ? LIMIT ?'),
    conversationChunk: db.prepare<[string, string, number], { seq: number }>(
      'SELECT seq FROM memories WHERE owner_id = ? AND conversation_id = ? LIMIT ?',
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

interface StoredShape {
  dimensions: number | undefined;
  embedder: string | undefined;
  /** Undefined for a file without memory tables. */
  format: number | undefined;
  codes: string | undefined;
  /** Whether the layout-1 vec0 table is there, and the records table. */
  hasVec0: boolean;
  hasMemories: boolean;
}

/** The dimension, embedder, layout and codes a file was built with, if it holds memory already. */
function storedShape(db: Database.Database): StoredShape {
  const tables = new Set(
    db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE name IN ('memory_meta', 'memory_vectors', 'memories')")
      .all()
      .map((r) => r.name),
  );
  const meta = (key: string) =>
    tables.has('memory_meta')
      ? db.prepare<[string], { value: string }>('SELECT value FROM memory_meta WHERE key = ?').get(key)?.value
      : undefined;
  const hasVec0 = tables.has('memory_vectors');
  let dimensions = meta('dimensions') === undefined ? undefined : Number(meta('dimensions'));
  if (dimensions === undefined && hasVec0) {
    // No meta row (an older or hand-edited file): the vec0 declaration is the truth.
    const sql = db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE name = 'memory_vectors'").get()?.sql ?? '';
    const m = /float\[(\d+)\]/i.exec(sql);
    dimensions = m ? Number(m[1]) : undefined;
  }
  const formatValue = meta('format');
  // Layout 1 never wrote its version.
  const format = formatValue !== undefined ? Number(formatValue) : hasVec0 || tables.has('memories') ? 1 : undefined;
  return { dimensions, embedder: meta('embedder'), format, codes: meta('codes'), hasVec0, hasMemories: tables.has('memories') };
}

/** A write queued for the next group commit; `run` reports what it changed in owners' codes, for the cache. */
interface PendingWrite {
  run: (changes: CodeChange[]) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}
interface WriteResult {
  ok: boolean;
  value: unknown;
  changes: CodeChange[];
}

/**
 * The embedded vector memory: a SQLite file (it may be the conversation store's) with the
 * sqlite-vec extension. Records and their float vectors sit in `memories`, and a
 * 1024-bit (or longer) binary code of each vector in `memory_codes`, clustered by owner.
 * Recall is two-stage: a scan of the owner's codes by Hamming distance picks a few hundred
 * candidates, whose float vectors are then ranked by exact cosine similarity; scores are
 * exact, and the top results match an exact search's (see {@link RECALL_CANDIDATES}). The
 * codes of recently searched owners are also kept in memory (see {@link RECALL_CACHE_BYTES}),
 * where the scan is about three times faster than in SQLite.
 * `memory_meta` remembers the dimension and embedder the file was built with, the layout
 * version and the code rotation. Writes are group-committed like the conversation store's:
 * every write queued in one turn of the event loop shares one transaction.
 */
export class SqliteMemoryStore implements MemoryStore {
  readonly kind = 'sqlite';
  readonly #file: string;
  readonly #options: SqliteMemoryStoreOptions;
  readonly #db: Database.Database;
  readonly #codes: BinaryCodes;
  readonly #candidates: number;
  readonly #cache: CodeCache | undefined;
  #stmt: Statements | undefined;
  #pending: PendingWrite[] = [];
  /** Takes the write lock for each group commit without waiting on the event loop. */
  readonly #lock: WriteLock;
  /** Runs the WAL's checkpoints off the event loop (see WalCheckpointer). */
  readonly #checkpointer: WalCheckpointer | undefined;
  /** One group commit: each write in a savepoint of its own. Made once (better-sqlite3 builds a transaction's four variants each time). */
  readonly #commitBatch: Database.Transaction<(batch: readonly PendingWrite[], results: WriteResult[]) => void>;
  readonly #savepoint: Database.Transaction<(run: PendingWrite['run'], changes: CodeChange[]) => unknown>;

  constructor(file: string, options: SqliteMemoryStoreOptions) {
    if (!Number.isInteger(options.dimensions) || options.dimensions < 1) {
      throw new MemoryStoreError(`Vector memory needs a positive integer dimension, got ${options.dimensions}`);
    }
    const candidates = options.recallCandidates ?? RECALL_CANDIDATES;
    if (!Number.isInteger(candidates) || candidates < 1) {
      throw new MemoryStoreError(`Vector memory needs a positive integer number of recall candidates, got ${candidates}`);
    }
    const cacheBytes = options.recallCacheBytes ?? RECALL_CACHE_BYTES;
    if (!(cacheBytes >= 0)) throw new MemoryStoreError(`Vector memory needs a non-negative code cache size, got ${cacheBytes}`);
    createPrivateFile(file);
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
    sqliteVec.load(db);
    this.#lock = new WriteLock(db);
    this.#checkpointer = offLoopCheckpoints(db, file, options);
    this.#savepoint = db.transaction((run: PendingWrite['run'], changes: CodeChange[]) => run(changes));
    this.#commitBatch = db.transaction((batch: readonly PendingWrite[], results: WriteResult[]) => {
      for (const op of batch) {
        // Each write is its own savepoint: a failing one is undone alone, the rest still commit.
        const changes: CodeChange[] = [];
        try {
          results.push({ ok: true, value: this.#savepoint(op.run, changes), changes });
        } catch (err) {
          results.push({ ok: false, value: err, changes: [] });
        }
      }
    });
    this.#file = file;
    this.#options = options;
    this.#db = db;
    this.#codes = new BinaryCodes(options.dimensions);
    this.#candidates = candidates;
    this.#cache = cacheBytes > 0 ? new CodeCache(cacheBytes) : undefined;
  }

  /** Drops the memory tables (and nothing else) from a file, e.g. before switching to another embedder. */
  static erase(file: string): void {
    const db = new Database(file, { fileMustExist: true });
    try {
      sqliteVec.load(db);
      db.exec(
        `DROP TABLE IF EXISTS memory_vectors; DROP TABLE IF EXISTS memory_codes;
         DROP TABLE IF EXISTS memory_owners; DROP TABLE IF EXISTS memories; DROP TABLE IF EXISTS memory_meta;`,
      );
    } finally {
      db.close();
    }
  }

  /**
   * The dimension and embedder of the long-term memory a file holds; undefined when the file
   * does not exist or holds none (it is not created). For opening a file without an embedder,
   * to delete from it while memory is switched off: a store made with these passes `init()`.
   * Only reads; the embedder is undefined in a file of layout 1 that never recorded it.
   */
  static storedSettings(file: string): { dimensions: number; embedder: string | undefined } | undefined {
    if (!existsSync(file)) return undefined;
    // Not read-only: a read-only connection cannot open a WAL file whose -shm is gone.
    const db = new Database(file, { fileMustExist: true });
    try {
      const stored = storedShape(db);
      return stored.format !== undefined && stored.dimensions !== undefined ? { dimensions: stored.dimensions, embedder: stored.embedder } : undefined;
    } finally {
      db.close();
    }
  }

  async init(): Promise<void> {
    const { dimensions, embedder } = this.#options;
    const stored = storedShape(this.#db);
    const hint = this.#options.eraseHint ?? 'or erase long-term memory (SqliteMemoryStore.erase on this file drops only the memory tables; conversations stay)';
    if (stored.format !== undefined && !(stored.format >= 1 && stored.format <= MEMORY_FORMAT)) {
      throw new MemoryStoreError(
        `Long-term memory in ${this.#file} has the layout version ${String(stored.format)}, which this version of the ` +
          `gateway does not know (it reads versions 1 to ${MEMORY_FORMAT}): a newer version wrote it. Run that version again, ${hint}.`,
      );
    }
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
    try {
      db.transaction(() => {
        db.exec('CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
        if (stored.format === 1) this.#convertFromVec0(stored);
        db.exec(SCHEMA);
        if (stored.format === 1 || stored.codes !== this.#codes.id) this.#rebuildCodes();
        const set = db.prepare<[string, string]>('INSERT INTO memory_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
        set.run('dimensions', String(dimensions));
        set.run('embedder', embedder);
        set.run('format', String(MEMORY_FORMAT));
        set.run('codes', this.#codes.id);
      }).immediate();
    } catch (err) {
      if (stored.format !== 1) throw err;
      // The transaction is undone: the file keeps its old layout.
      throw new MemoryStoreError(
        `Long-term memory in ${this.#file} has the layout version 1 and could not be converted to version ${MEMORY_FORMAT} ` +
          `(${err instanceof Error ? err.message : String(err)}); the file is unchanged. Remove the cause (e.g. a full disk) and start again, ${hint}.`,
      );
    }
    this.#stmt = prepareStatements(db);
  }

  /** Layout 1 to 2, inside init's transaction: moves the float vectors out of vec0 and drops it. */
  #convertFromVec0(stored: StoredShape): void {
    const db = this.#db;
    if (stored.hasMemories) db.exec('ALTER TABLE memories ADD COLUMN vector BLOB');
    db.exec(SCHEMA);
    db.exec('INSERT INTO memory_owners (owner_id) SELECT DISTINCT owner_id FROM memories WHERE true ORDER BY owner_id ON CONFLICT (owner_id) DO NOTHING');
    // A vector without its record (never written, but harmless) goes with the vec0 table.
    if (stored.hasVec0) db.exec('UPDATE memories SET vector = v.embedding FROM memory_vectors AS v WHERE v.rowid = memories.seq; DROP TABLE memory_vectors;');
  }

  /** Computes every memory's code from its float vector again, inside init's transaction. */
  #rebuildCodes(): void {
    const db = this.#db;
    db.exec('DELETE FROM memory_codes; UPDATE memory_owners SET version = version + 1;');
    const batch = db.prepare<[number, number], { seq: number; owner_key: number; vector: Buffer }>(
      `SELECT m.seq, o.owner_key, m.vector FROM memories AS m JOIN memory_owners AS o ON o.owner_id = m.owner_id
       WHERE m.seq > ? AND m.vector IS NOT NULL ORDER BY m.seq LIMIT ?`,
    );
    const put = db.prepare<[number, number, Buffer]>('INSERT INTO memory_codes (owner_key, seq, code) VALUES (?, ?, ?)');
    for (let after = 0; ; ) {
      const rows = batch.all(after, REBUILD_BATCH);
      for (const r of rows) put.run(r.owner_key, r.seq, this.#codes.encode(floats(r.vector)));
      if (rows.length < REBUILD_BATCH) return;
      after = rows.at(-1)!.seq;
    }
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

  /** Queues a write; `run` reports what it changed in owners' codes, for the cache. */
  #write<T>(run: (changes: CodeChange[]) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#pending.length === 0 && !this.#lock.waiting) setImmediate(this.#flushNow);
      this.#pending.push({ run, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** `final`: the last commit, at close, may wait for the lock (shutting down, not serving). */
  #flush(final = false) {
    const batch = this.#pending;
    this.#pending = [];
    if (!this.#db.open) {
      for (const op of batch) op.reject(new MemoryStoreError('The memory store is closed'));
      return;
    }
    const results: WriteResult[] = [];
    const commit = () => this.#commitBatch.immediate(batch, results);
    try {
      if (final) commit();
      else if (!this.#lock.commit(commit, this.#flushNow)) {
        // The lock is taken: these writes go first when it is tried again.
        this.#pending = batch.concat(this.#pending);
        return;
      }
    } catch (err) {
      for (const op of batch) op.reject(err);
      this.#more();
      return;
    }
    // The last commit, at close, needs no checkpoint: the last connection's close folds the WAL in.
    if (!final) this.#checkpointer?.committed();
    this.#more();
    // Committed: the cache follows, in commit order.
    if (this.#cache) for (const r of results) for (const change of r.changes) this.#cache.apply(change);
    batch.forEach((op, i) => (results[i]!.ok ? op.resolve(results[i]!.value) : op.reject(results[i]!.value)));
  }

  /** Bumps the owner's version; runs inside a write. */
  #changed(ownerKey: number, put: [number, Buffer][], removed: number[]): CodeChange {
    const to = this.#s.bumpVersion.get(ownerKey)!.version;
    return { ownerKey, from: to - 1, to, put, removed, dropped: false };
  }

  /** Deletes an owner's records with their vectors and codes; runs inside a write. */
  #deleteSeqs(ownerId: string, seqs: number[], changes: CodeChange[]): void {
    const s = this.#s;
    if (seqs.length === 0) return;
    const ownerKey = s.owner.get(ownerId)?.owner_key;
    for (const seq of seqs) {
      if (ownerKey !== undefined) s.deleteCode.run(ownerKey, seq);
      s.deleteRecord.run(seq);
    }
    if (ownerKey === undefined) return;
    const change = this.#changed(ownerKey, [], seqs);
    // An owner with nothing left leaves no trace, not even the id.
    change.dropped = s.dropOwnerIfEmpty.run(ownerKey, ownerKey).changes > 0;
    changes.push(change);
  }

  async upsert(items: readonly (MemoryRecord & { vector: Float32Array })[]): Promise<void> {
    if (items.length === 0) return;
    const s = this.#s;
    // A copy of the vector: the write runs later, and must store the vector the code was made of.
    const rows = items.map((item) => ({ item, blob: Buffer.from(this.#blob(item.vector)), code: this.#codes.encode(item.vector) }));
    await this.#write((changes) => {
      const owners = new Map<string, { key: number; put: [number, Buffer][] }>();
      const ownerOf = (ownerId: string) => {
        let owner = owners.get(ownerId);
        if (owner === undefined) {
          let key = s.owner.get(ownerId)?.owner_key;
          if (key === undefined) key = Number(s.addOwner.run(ownerId).lastInsertRowid);
          owner = { key, put: [] };
          owners.set(ownerId, owner);
        }
        return owner;
      };
      for (const { item, blob, code } of rows) {
        const owner = ownerOf(item.ownerId);
        let seq = s.seqOf.get(item.ownerId, item.id)?.seq;
        if (seq === undefined) {
          seq = Number(s.insertRecord.run(item.ownerId, item.id, item.conversationId, item.messageId, item.role, item.text, item.createdAt, blob).lastInsertRowid);
        } else {
          s.updateRecord.run(item.conversationId, item.messageId, item.role, item.text, item.createdAt, blob, seq);
        }
        s.putCode.run(owner.key, seq, code);
        owner.put.push([seq, code]);
      }
      for (const owner of owners.values()) changes.push(this.#changed(owner.key, owner.put, []));
    });
  }

  async query(ownerId: string, vector: Float32Array, query: MemoryQuery): Promise<MemoryMatch[]> {
    const s = this.#s;
    const blob = this.#blob(vector);
    if (query.topK <= 0) return [];
    const owner = s.owner.get(ownerId);
    if (owner === undefined) return [];
    const excluded = new Set(query.excludeMessageIds ?? []);
    const code = this.#codes.encode(vector);
    // Every excluded memory may be among the candidates and the ranked rows: ask for that many
    // more of each, so that topK of the others still come back.
    const candidates = this.#candidates + excluded.size;
    const limit = query.topK + excluded.size;
    const cached = this.#cachedCodes(owner.owner_key, owner.version);
    const rows = cached
      ? s.rerank.all({ seqs: JSON.stringify(cached.nearest(codeWords(code), candidates)), ownerId, vector: blob, limit })
      : s.recall.all({ ownerKey: owner.owner_key, ownerId, code, vector: blob, candidates, limit });
    const matches: MemoryMatch[] = [];
    for (const row of rows) {
      if (excluded.has(row.message_id)) continue;
      const score = 1 - row.distance;
      if (score < query.minScore) break; // rows come best first
      matches.push({ ...toRecord(row), score });
      if (matches.length === query.topK) break;
    }
    return matches;
  }

  /** The owner's codes from the cache, loaded if need be; undefined without a cache or for an owner too large for it. */
  #cachedCodes(ownerKey: number, version: number): OwnerCodes | undefined {
    const cache = this.#cache;
    if (cache === undefined || !cache.wants(ownerKey)) return undefined;
    const hit = cache.get(ownerKey, version);
    if (hit) return hit;
    // One read transaction: the version and the codes agree even if another process writes.
    const load = this.#db.transaction(() => {
      const now = this.#s.ownerVersion.get(ownerKey)?.version;
      const row = this.#s.ownerCodes.get(ownerKey);
      if (now === undefined || row === undefined) return undefined;
      const codeBytes = this.#codes.bits >> 3;
      const codes = row.codes ?? Buffer.alloc(0);
      // Not one code per seq (a file in UTF-16, where text is not bytes): search in SQLite.
      if (codes.byteLength !== row.n * codeBytes) return null;
      return OwnerCodes.of(codeBytes, now, JSON.parse(row.seqs) as number[], codes);
    });
    let loaded: OwnerCodes | null | undefined;
    try {
      loaded = load();
    } catch {
      loaded = null; // e.g. more codes than SQLite puts in one value: search in SQLite
    }
    if (loaded === undefined) return undefined;
    if (loaded === null) {
      cache.refuse(ownerKey);
      return undefined;
    }
    cache.set(ownerKey, loaded);
    return loaded;
  }

  /** What the code cache holds and did (for benchmarks and tests). */
  cacheStats(): CodeCacheStats {
    return this.#cache?.stats() ?? { owners: 0, codes: 0, bytes: 0, hits: 0, loads: 0 };
  }

  async list(ownerId: string, options: { limit: number; cursor?: string | undefined }): Promise<Page<MemoryRecord>> {
    const s = this.#s;
    const after = decodeCursor(options.cursor);
    if (options.cursor && !after) throw new InvalidCursorError();
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
    return this.#write((changes) => {
      const seqs = unique.map((id) => s.seqOf.get(ownerId, id)?.seq).filter((seq): seq is number => seq !== undefined);
      this.#deleteSeqs(ownerId, seqs, changes);
      return seqs.length;
    });
  }

  async deleteByConversation(ownerId: string, conversationId: string): Promise<void> {
    const s = this.#s;
    await this.#deleteInChunks(ownerId, () => s.conversationChunk.all(ownerId, conversationId, DELETE_CHUNK));
  }

  async deleteAll(ownerId: string): Promise<void> {
    const s = this.#s;
    await this.#deleteInChunks(ownerId, () => s.ownerChunk.all(ownerId, DELETE_CHUNK));
  }

  /** Deletes chunk after chunk, each in its own transaction, until nothing matches. */
  async #deleteInChunks(ownerId: string, nextChunk: () => { seq: number }[]): Promise<void> {
    for (;;) {
      const deleted = await this.#write((changes) => {
        const seqs = nextChunk().map((r) => r.seq);
        this.#deleteSeqs(ownerId, seqs, changes);
        return seqs.length;
      });
      if (deleted < DELETE_CHUNK) return;
    }
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  /** Writes that arrived while a batch waited for the lock: the next pass commits them. */
  #more(): void {
    if (this.#pending.length > 0 && !this.#lock.waiting) setImmediate(this.#flushNow);
  }

  readonly #flushNow = () => this.#flush();

  /** What the WAL checkpointer did (undefined once it was lost: checkpoints run inside commits). */
  get checkpoints(): Readonly<CheckpointStats> | undefined {
    return this.#checkpointer?.running ? this.#checkpointer.stats : undefined;
  }

  async close(): Promise<void> {
    this.#lock.closing();
    if (this.#pending.length && this.#db.open) this.#flush(true);
    if (this.#db.open) this.#db.close();
    this.#cache?.clear();
    // After the connection above: the checkpointer's is then the last, and its close removes the WAL.
    await this.#checkpointer?.close();
  }
}
