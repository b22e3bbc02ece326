import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as sqliteVec from 'sqlite-vec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEmbedder } from '../../src/memory/local-embedder.js';
import { MemoryStoreError } from '../../src/memory/memory-store-error.js';
import type { MemoryRecord } from '../../src/memory/memory-store.js';
import { BinaryCodes, MEMORY_FORMAT, SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { tempDataDir } from '../helpers/gateway.js';
import { mulberry32 as rng } from '../../src/memory/seeded-random.js';

// What the contract suite cannot see: the two-stage recall against exact search, the file
// layout and its conversion from the layout-1 (float vec0) files, and the binary codes.

const DIM = 8;
const EMBEDDER = 'test:hash-v1';
const T0 = 1_700_000_000_000;

type Item = MemoryRecord & { vector: Float32Array };

function angled(degrees: number, dims = DIM): Float32Array {
  const v = new Float32Array(dims);
  v[0] = Math.cos((degrees * Math.PI) / 180);
  v[1] = Math.sin((degrees * Math.PI) / 180);
  return v;
}

function memory(ownerId: string, id: string, vector: Float32Array, text = `text of ${id}`): Item {
  return { id, ownerId, conversationId: 'c1', messageId: `msg-${id}`, role: 'user', text, createdAt: T0, vector };
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(aa * bb);
}


/** Sentences of a small made-up language, with shared words as real messages have. */
function sentences(n: number, seed: number): string[] {
  const random = rng(seed);
  const syllables = ['ka', 'lo', 'mi', 'ren', 'tas', 'vo', 'qui', 'sel', 'dor', 'ap', 'nu', 'zet'];
  const vocabulary = Array.from({ length: 600 }, () =>
    Array.from({ length: 2 + Math.floor(random() * 3) }, () => syllables[Math.floor(random() * syllables.length)]).join(''),
  );
  // Zipf-like: a few common words, a long tail.
  const word = () => vocabulary[Math.floor(vocabulary.length * random() ** 2.5)]!;
  return Array.from({ length: n }, () => Array.from({ length: 5 + Math.floor(random() * 15) }, word).join(' '));
}

/** The layout-1 schema, as the previous version of the store created it. */
function createLayout1(file: string, dims: number, withMeta: boolean): Database.Database {
  const db = new Database(file);
  sqliteVec.load(db);
  db.exec(`
CREATE TABLE memories (seq INTEGER PRIMARY KEY, owner_id TEXT NOT NULL, id TEXT NOT NULL, conversation_id TEXT NOT NULL,
  message_id TEXT NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE UNIQUE INDEX memories_owner_id ON memories (owner_id, id);
CREATE INDEX memories_owner_recent ON memories (owner_id, created_at DESC, id);
CREATE INDEX memories_owner_conversation ON memories (owner_id, conversation_id);
CREATE VIRTUAL TABLE memory_vectors USING vec0(user_id TEXT PARTITION KEY, embedding FLOAT[${dims}] distance_metric=cosine, chunk_size=32);`);
  if (withMeta) {
    db.exec('CREATE TABLE memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    db.prepare("INSERT INTO memory_meta VALUES ('dimensions', ?), ('embedder', ?)").run(String(dims), EMBEDDER);
  }
  return db;
}

function addLayout1(db: Database.Database, item: Item, withVector = true): number {
  const seq = Number(
    db
      .prepare('INSERT INTO memories (owner_id, id, conversation_id, message_id, role, text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(item.ownerId, item.id, item.conversationId, item.messageId, item.role, item.text, item.createdAt).lastInsertRowid,
  );
  if (withVector) {
    db.prepare('INSERT INTO memory_vectors (rowid, user_id, embedding) VALUES (?, ?, ?)').run(BigInt(seq), item.ownerId, Buffer.from(item.vector.buffer));
  }
  return seq;
}

function tables(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'memor%' ORDER BY name")
      .all()
      .map((r) => r.name);
  } finally {
    db.close();
  }
}

function meta(file: string): Record<string, string> {
  const db = new Database(file, { readonly: true });
  try {
    return Object.fromEntries(db.prepare<[], { key: string; value: string }>('SELECT key, value FROM memory_meta').all().map((r) => [r.key, r.value]));
  } finally {
    db.close();
  }
}

describe('SqliteMemoryStore: two-stage recall', () => {
  let dir: string;
  let store: SqliteMemoryStore;
  let exhaustive: SqliteMemoryStore;
  const embedder = new LocalEmbedder();
  const texts = sentences(3000, 1);
  const vectors = texts.map((t) => embedder.embedText(t));

  beforeAll(async () => {
    dir = tempDataDir();
    const file = join(dir, 'recall.sqlite');
    store = new SqliteMemoryStore(file, { dimensions: embedder.dimensions, embedder: 'local:test' });
    await store.init();
    // Another user with the same texts: their memories must never be candidates.
    await store.upsert(texts.map((t, i) => memory('reader', `m${i}`, vectors[i]!, t)));
    await store.upsert(texts.slice(0, 500).map((t, i) => memory('someone-else', `m${i}`, vectors[i]!, t)));
    exhaustive = new SqliteMemoryStore(file, { dimensions: embedder.dimensions, embedder: 'local:test', recallCandidates: 1_000_000 });
    await exhaustive.init();
  });
  afterAll(async () => {
    await store.close();
    await exhaustive.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const queries = sentences(200, 2).map((t) => embedder.embedText(t));

  it('with every memory a candidate it is exact search: same ids, order and cosine scores', async () => {
    for (const q of queries.slice(0, 40)) {
      const exact = vectors.map((v, i) => ({ id: `m${i}`, score: cosine(q, v) })).sort((a, b) => b.score - a.score || a.id.localeCompare(b.id));
      const got = await exhaustive.query('reader', q, { topK: 5, minScore: -1 });
      expect(got.map((m) => m.score)).toEqual(exact.slice(0, 5).map((e) => expect.closeTo(e.score, 5)));
      // Ids agree except where two memories score the same.
      got.forEach((m, i) => expect(cosine(q, vectors[Number(m.id.slice(1))]!)).toBeCloseTo(exact[i]!.score, 5));
      expect(got.every((m) => m.ownerId === 'reader')).toBe(true);
    }
  });

  it('with the default candidates it finds the exact top 3 (recall@3 >= 0.99), with exact scores', async () => {
    let hits = 0;
    for (const q of queries) {
      const third = vectors.map((v) => cosine(q, v)).sort((a, b) => b - a)[2]!;
      const got = await store.query('reader', q, { topK: 3, minScore: -1 });
      expect(got).toHaveLength(3);
      for (const m of got) expect(m.score).toBeCloseTo(cosine(q, vectors[Number(m.id.slice(1))]!), 5);
      hits += got.filter((m) => m.score >= third - 1e-6).length;
    }
    expect(hits / (3 * queries.length)).toBeGreaterThanOrEqual(0.99);
  });

  it('excluded messages widen the search: topK of the others still come back, best first', async () => {
    const q = vectors[7]!;
    const best = await exhaustive.query('reader', q, { topK: 40, minScore: -1 });
    const excludeMessageIds = best.slice(0, 30).map((m) => m.messageId);
    const narrow = new SqliteMemoryStore(join(dir, 'recall.sqlite'), { dimensions: embedder.dimensions, embedder: 'local:test', recallCandidates: 10 });
    await narrow.init();
    try {
      const exact = await exhaustive.query('reader', q, { topK: 3, minScore: -1, excludeMessageIds });
      expect(exact.map((m) => m.id)).toEqual(best.slice(30, 33).map((m) => m.id));
      // 10 candidates and 30 exclusions: 40 candidates, so 3 of the others still come back.
      const got = await narrow.query('reader', q, { topK: 3, minScore: -1, excludeMessageIds });
      expect(got).toHaveLength(3);
      expect(got.some((m) => excludeMessageIds.includes(m.messageId))).toBe(false);
      expect(got.map((m) => m.score)).toEqual([...got.map((m) => m.score)].sort((x, y) => y - x));
    } finally {
      await narrow.close();
    }
  });

  it('a zero vector (a text without letters) scores 0, never NaN', async () => {
    const zero = new Float32Array(embedder.dimensions);
    await store.upsert([memory('zero-owner', 'z', zero), memory('zero-owner', 'a', vectors[0]!)]);
    const got = await store.query('zero-owner', vectors[0]!, { topK: 5, minScore: -1 });
    expect(got.map((m) => [m.id, Math.round(m.score * 1000) / 1000])).toEqual([
      ['a', 1],
      ['z', 0],
    ]);
    expect((await store.query('zero-owner', zero, { topK: 5, minScore: -1 })).map((m) => m.score)).toEqual([0, 0]);
  });
});

describe('SqliteMemoryStore: layout', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDataDir();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps one vector and one code per memory; an owner with nothing left leaves no trace', async () => {
    const file = join(dir, 'layout.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    await store.upsert([memory('tracy', 'a', angled(0)), memory('tracy', 'b', angled(10)), memory('other', 'a', angled(20))]);
    await store.upsert([memory('tracy', 'a', angled(90))]);
    const raw = new Database(file, { readonly: true });
    const count = (sql: string) => raw.prepare<[], { n: number }>(sql).get()!.n;
    try {
      expect(count('SELECT count(*) AS n FROM memories WHERE length(vector) = 4 * 8')).toBe(3);
      expect(count('SELECT count(*) AS n FROM memory_codes')).toBe(3);
      expect(meta(file)).toEqual({ dimensions: String(DIM), embedder: EMBEDDER, format: String(MEMORY_FORMAT), codes: new BinaryCodes(DIM).id });
      await store.deleteAll('tracy');
      expect(count('SELECT count(*) AS n FROM memories')).toBe(1);
      expect(count('SELECT count(*) AS n FROM memory_codes')).toBe(1);
      expect(raw.prepare('SELECT owner_id FROM memory_owners').all()).toEqual([{ owner_id: 'other' }]);
      await store.delete('other', ['a']);
      expect(count('SELECT count(*) AS n FROM memory_owners')).toBe(0);
      // A returning owner gets a fresh key, never one that was used before.
      await store.upsert([memory('tracy', 'c', angled(0))]);
      expect(raw.prepare<[], { owner_key: number }>('SELECT owner_key FROM memory_owners').get()!.owner_key).toBe(3);
      expect(store.cacheStats().owners).toBe(0);
      expect((await store.query('tracy', angled(0), { topK: 5, minScore: -1 })).map((m) => m.id)).toEqual(['c']);
    } finally {
      raw.close();
      await store.close();
    }
  });

  it('converts a layout-1 file (float vectors in vec0): same records, same answers, vec0 table gone', async () => {
    const file = join(dir, 'layout1.sqlite');
    const old = createLayout1(file, DIM, true);
    const degrees = [0, 15, 30, 45, 60, 120];
    for (const d of degrees) addLayout1(old, { ...memory('alice', `r${d}`, angled(d)), createdAt: T0 + d });
    addLayout1(old, memory('bob', 'b1', angled(5)));
    addLayout1(old, memory('bob', 'no-vector', angled(0)), false);
    // A vector without its record (never written by the old store, but harmless).
    old.prepare('INSERT INTO memory_vectors (rowid, user_id, embedding) VALUES (999, ?, ?)').run('alice', Buffer.from(angled(1).buffer));
    old.close();

    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    try {
      expect(tables(file)).toEqual(['memories', 'memory_codes', 'memory_meta', 'memory_owners']);
      expect(meta(file)).toMatchObject({ format: String(MEMORY_FORMAT), dimensions: String(DIM), embedder: EMBEDDER });
      const top = await store.query('alice', angled(0), { topK: 10, minScore: -1 });
      expect(top.map((m) => m.id)).toEqual(degrees.map((d) => `r${d}`));
      top.forEach((m, i) => expect(m.score).toBeCloseTo(Math.cos((degrees[i]! * Math.PI) / 180), 5));
      expect((await store.query('bob', angled(0), { topK: 10, minScore: -1 })).map((m) => m.id)).toEqual(['b1']);
      // A record that had no vector is still listed (as before), and never recalled.
      expect((await store.list('bob', { limit: 10 })).items.map((m) => m.id).sort()).toEqual(['b1', 'no-vector']);
      // Writes and deletes work on the converted file, and a reopen converts nothing again.
      await store.upsert([memory('alice', 'new', angled(1))]);
      await store.close();
      const reopened = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
      await reopened.init();
      expect((await reopened.query('alice', angled(0), { topK: 2, minScore: -1 })).map((m) => m.id)).toEqual(['r0', 'new']);
      await reopened.deleteAll('alice');
      expect(await reopened.query('alice', angled(0), { topK: 2, minScore: -1 })).toEqual([]);
      await reopened.close();
    } finally {
      await store.close();
    }
  });

  it('converts a layout-1 file without memory_meta, taking the dimension from the vec0 declaration', async () => {
    const file = join(dir, 'layout1-nometa.sqlite');
    const old = createLayout1(file, DIM, false);
    addLayout1(old, memory('carol', 'c1', angled(0)));
    old.close();

    const wrong = new SqliteMemoryStore(file, { dimensions: 12, embedder: EMBEDDER });
    await expect(wrong.init()).rejects.toThrow(/holds 8-dimension vectors.*EMBEDDING_DIMENSIONS=8/);
    await wrong.close();
    expect(tables(file)).toContain('memory_vectors'); // refused before any change

    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    expect((await store.query('carol', angled(0), { topK: 1, minScore: 0 }))[0]).toMatchObject({ id: 'c1', ownerId: 'carol' });
    expect(tables(file)).not.toContain('memory_vectors');
    await store.close();
  });

  it('refuses a layout it does not know, with the erase hint, and leaves the file alone', async () => {
    const file = join(dir, 'future.sqlite');
    const first = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await first.init();
    await first.upsert([memory('f', 'f1', angled(0))]);
    await first.close();
    const raw = new Database(file);
    raw.prepare("UPDATE memory_meta SET value = '99' WHERE key = 'format'").run();
    raw.close();

    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, eraseHint: 'or run `npm run memory:erase`' });
    const err = await store.init().then(
      () => undefined,
      (e: unknown) => e,
    );
    await store.close();
    expect(err).toBeInstanceOf(MemoryStoreError);
    expect((err as Error).message).toMatch(/layout version 99.*versions 1 to 2.*npm run memory:erase/);
    expect(meta(file).format).toBe('99');

    SqliteMemoryStore.erase(file);
    expect(tables(file)).toEqual([]);
  });

  it('rebuilds every code from the float vectors when the file’s codes were made by another rotation', async () => {
    const file = join(dir, 'recode.sqlite');
    const first = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await first.init();
    await first.upsert([0, 30, 60, 90].map((d) => memory('r', `d${d}`, angled(d))));
    await first.close();
    const raw = new Database(file);
    raw.prepare("UPDATE memory_meta SET value = 'srht0-old' WHERE key = 'codes'").run();
    raw.prepare('UPDATE memory_codes SET code = zeroblob(length(code))').run();
    raw.close();

    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, recallCandidates: 1 });
    await store.init();
    expect(meta(file).codes).toBe(new BinaryCodes(DIM).id);
    expect((await store.query('r', angled(88), { topK: 1, minScore: -1 })).map((m) => m.id)).toEqual(['d90']);
    expect((await store.query('r', angled(2), { topK: 1, minScore: -1 })).map((m) => m.id)).toEqual(['d0']);
    await store.close();
  });
});

describe('SqliteMemoryStore: code cache', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDataDir();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // With one candidate, a query finds the right memory only if the code it searched is right
  // (30 degrees apart is about 170 of 1024 bits); a stale code of a deleted memory would leave
  // the answer empty.
  const nearest = async (store: SqliteMemoryStore, ownerId: string, degrees: number) =>
    (await store.query(ownerId, angled(degrees), { topK: 1, minScore: -1 })).map((m) => m.id);

  it('follows its own writes without reloading, and reloads after another process writes', async () => {
    const file = join(dir, 'follow.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, recallCandidates: 1 });
    await store.init();
    try {
      await store.upsert([0, 60, 120].map((d) => ({ ...memory('u', `d${d}`, angled(d)), conversationId: `c${d}` })));
      expect(await nearest(store, 'u', 2)).toEqual(['d0']);
      expect(store.cacheStats()).toMatchObject({ owners: 1, codes: 3, loads: 1 });

      await store.upsert([memory('u', 'd180', angled(180))]);
      expect(await nearest(store, 'u', 178)).toEqual(['d180']);
      await store.upsert([memory('u', 'd0', angled(240))]); // d0 moves to 240 degrees
      expect(await nearest(store, 'u', 238)).toEqual(['d0']);
      expect(await nearest(store, 'u', 5)).toEqual(['d60']);
      await store.delete('u', ['d60']);
      expect(await nearest(store, 'u', 62)).toEqual(['d120']);
      await store.deleteByConversation('u', 'c120');
      expect(await nearest(store, 'u', 118)).toEqual(['d180']);
      expect(store.cacheStats()).toMatchObject({ owners: 1, codes: 2, loads: 1 });

      const other = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, recallCacheBytes: 0 });
      await other.init();
      await other.upsert([memory('u', 'd300', angled(300))]);
      await other.close();
      expect(await nearest(store, 'u', 298)).toEqual(['d300']);
      expect(store.cacheStats()).toMatchObject({ owners: 1, codes: 3, loads: 2 });

      await store.deleteAll('u');
      expect(await nearest(store, 'u', 298)).toEqual([]);
      expect(store.cacheStats().owners).toBe(0);
      await store.upsert([memory('u', 'again', angled(90))]);
      expect(await nearest(store, 'u', 0)).toEqual(['again']);
    } finally {
      await store.close();
    }
  });

  it('evicts the least recently used owner beyond its budget, and searches an owner too large for it in SQLite', async () => {
    const file = join(dir, 'budget.sqlite');
    const small = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, recallCandidates: 1, recallCacheBytes: 3000 });
    await small.init();
    try {
      await small.upsert(['a', 'b'].flatMap((owner) => [0, 90].map((d) => memory(owner, `${owner}${d}`, angled(d)))));
      expect(await nearest(small, 'a', 85)).toEqual(['a90']);
      expect(await nearest(small, 'b', 5)).toEqual(['b0']);
      expect(small.cacheStats()).toMatchObject({ owners: 1, loads: 2 });
      expect(await nearest(small, 'a', 5)).toEqual(['a0']);
      expect(small.cacheStats()).toMatchObject({ owners: 1, loads: 3 });
    } finally {
      await small.close();
    }

    const tiny = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER, recallCandidates: 1, recallCacheBytes: 100 });
    await tiny.init();
    try {
      expect(await nearest(tiny, 'a', 85)).toEqual(['a90']);
      expect(await nearest(tiny, 'a', 5)).toEqual(['a0']);
      await tiny.upsert([memory('a', 'a45', angled(45))]);
      expect(await nearest(tiny, 'a', 44)).toEqual(['a45']);
      expect(tiny.cacheStats()).toMatchObject({ owners: 0, loads: 1, hits: 0 });
    } finally {
      await tiny.close();
    }
  });

  it('answers the same with and without the cache', async () => {
    const file = join(dir, 'same.sqlite');
    const embedder = new LocalEmbedder();
    const texts = sentences(1500, 5);
    const cached = new SqliteMemoryStore(file, { dimensions: embedder.dimensions, embedder: 'local:test' });
    const uncached = new SqliteMemoryStore(file, { dimensions: embedder.dimensions, embedder: 'local:test', recallCacheBytes: 0 });
    await cached.init();
    await uncached.init();
    try {
      await cached.upsert(texts.map((t, i) => memory('s', `m${i}`, embedder.embedText(t), t)));
      await cached.delete('s', ['m3', 'm30', 'm300']);
      for (const q of sentences(50, 6).map((t) => embedder.embedText(t))) {
        const a = await cached.query('s', q, { topK: 3, minScore: -1 });
        const b = await uncached.query('s', q, { topK: 3, minScore: -1 });
        // The same scores; ids may differ only between memories of equal score.
        expect(a.map((m) => m.score)).toEqual(b.map((m) => expect.closeTo(m.score, 6)));
      }
      expect(cached.cacheStats()).toMatchObject({ owners: 1, codes: 1497, loads: 1, hits: 49 });
    } finally {
      await cached.close();
      await uncached.close();
    }
  });
});

describe('BinaryCodes', () => {
  it('is fixed: the codes in existing files depend on it (change the id when changing the rotation)', () => {
    const codes = new BinaryCodes(384);
    expect(codes.bits).toBe(1024);
    expect(codes.id).toBe('srht3-1024-5eedc0de');
    const v = new LocalEmbedder().embedText('The quick brown fox jumps over the lazy dog.');
    expect(createHash('sha256').update(codes.encode(v)).digest('hex').slice(0, 16)).toMatchInlineSnapshot(`"065e621fa38bc0c1"`);
    expect(new BinaryCodes(8).bits).toBe(1024);
    expect(new BinaryCodes(768).bits).toBe(1024);
    expect(new BinaryCodes(1536).bits).toBe(2048);
  });

  it('Hamming distance estimates the angle: bits differ with probability angle / π', () => {
    const codes = new BinaryCodes(384);
    const random = rng(3);
    const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const a = Float32Array.from({ length: 384 }, gaussian);
    const ca = codes.encode(a);
    for (const mix of [0.1, 0.5, 1, 3]) {
      const b = a.map((x) => x + mix * gaussian());
      const cb = codes.encode(b);
      let differ = 0;
      for (let i = 0; i < ca.length; i++) for (let x = ca[i]! ^ cb[i]!; x; x &= x - 1) differ++;
      const angle = Math.acos(cosine(a, b)) / Math.PI;
      expect(Math.abs(differ / codes.bits - angle)).toBeLessThan(0.04);
    }
  });
});
