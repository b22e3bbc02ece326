/**
 * Recall latency and quality of the embedded vector memory (SqliteMemoryStore: SQLite +
 * sqlite-vec; binary codes for a first stage, exact cosine rerank of the candidates) as one
 * user's memory grows, with other users' rows in the same tables.
 *
 *   npx tsx bench/memory-recall.ts [--dims 384,768] [--sizes 1000,10000,100000] [--queries 300]
 *       [--recall-queries 100] [--others 100000] [--corpus 30000] [--keep]
 *
 * For each dimension, one user grows to each size (random unit vectors) beside `--others` rows
 * of 100 other users. At each size, `--queries` recall queries run as the chat pipeline makes
 * them (topK 3, minScore -1, 20 excluded message ids of the user's own), each timed around
 * `store.query()`: with the user's codes in the store's code cache (the usual case), and on a
 * store without the cache (both stages in SQLite, as for a user too large for the cache); the
 * first query of a fresh store, which loads the codes, is timed too. Then `--recall-queries`
 * queries (half random directions, half "near a memory": one of the user's vectors plus noise,
 * cosine 0.6 to it) are answered both by the store, for several candidate counts, and by an
 * exact brute-force cosine scan of the user's vectors (timed too: it is what the store did
 * before); recall@3 is the share of the exact top 3 (ties counted as hits) that the store
 * returns, and the score loss what the misses cost: the exact top 3's mean cosine minus the
 * returned top 3's. Uniformly random vectors are the worst case for any quantised index: the
 * neighbours after the first are hardly nearer than hundreds of others.
 *
 * Realistic data: `--corpus` sentences of prose from the Markdown and .d.ts comments under
 * node_modules, embedded by the local embedder at that dimension, stored for another user;
 * queries are held-out sentences and memories cut to 60% of their words. Recall@3 and
 * latency at 10k memories and at all of them.
 *
 * Storage per memory and per single-memory user comes from SQLite's dbstat. Writes the table
 * to stdout and JSON to bench/results/memory-recall.json.
 */
import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sqliteVec from 'sqlite-vec';
import { LocalEmbedder } from '../src/memory/local-embedder.js';
import type { MemoryRecord } from '../src/memory/memory-store.js';
import { BinaryCodes, RECALL_CACHE_BYTES, RECALL_CANDIDATES, SqliteMemoryStore } from '../src/memory/sqlite-memory-store.js';
import { round2, summarize, type Summary } from './stats.js';
import { mulberry32 as rng } from '../src/memory/seeded-random.js';

const OTHER_USERS = 100;
const BATCH = 1_000;
const TOP_K = 3;
const EXCLUDED = 20;
const T0 = 1_700_000_000_000;
/** Candidate counts whose recall@3 is measured besides the store's default. */
const SWEEP = [64, 128, RECALL_CANDIDATES, 512];
const NEAR_COSINE = 0.6;
/** Queries of each kind on the text corpus. */
const TEXT_QUERIES = 150;

function arg(name: string, fallback: number[]): number[] {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = (process.argv[i + 1] ?? '').split(',').map(Number);
  if (v.length === 0 || v.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`--${name} needs non-negative integers`);
  return v;
}
const DIMS = arg('dims', [384, 768]);
const SIZES = arg('sizes', [1_000, 10_000, 100_000]);
const QUERIES = arg('queries', [300])[0]!;
const RECALL_QUERIES = arg('recall-queries', [100])[0]!;
const OTHERS = arg('others', [100_000])[0]!;
const CORPUS = arg('corpus', [30_000])[0]!;
const KEEP = process.argv.includes('--keep');

const random = rng(42);
const pick = (n: number) => Math.floor(random() * n);

function normalise(v: Float32Array): Float32Array {
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += v[i]! * v[i]!;
  const inv = 1 / Math.sqrt(norm);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
  return v;
}

/** A uniformly random direction: normalised Gaussian coordinates (Box–Muller). */
function unitVector(dims: number): Float32Array {
  const v = new Float32Array(dims);
  for (let i = 0; i < dims; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - random()));
    const t = 2 * Math.PI * random();
    v[i] = r * Math.cos(t);
    if (i + 1 < dims) v[i + 1] = r * Math.sin(t);
  }
  return normalise(v);
}

/** A unit vector at cosine `cos` (about) to the unit vector `v`. */
function near(v: Float32Array, cos: number): Float32Array {
  const noise = unitVector(v.length);
  const t = Math.sqrt(1 / (cos * cos) - 1);
  return normalise(v.map((x, i) => x + t * noise[i]!));
}

type Item = MemoryRecord & { vector: Float32Array };

function item(ownerId: string, n: number, vector: Float32Array, text?: string): Item {
  return {
    id: `${ownerId}-m${n}`,
    ownerId,
    conversationId: `${ownerId}-c${Math.floor(n / 50)}`,
    messageId: `${ownerId}-msg${n}`,
    role: n % 2 ? 'assistant' : 'user',
    text: text ?? `memory ${n} of ${ownerId}: some words that a chat message might hold, about as long as a short reply.`,
    createdAt: T0 + n,
    vector,
  };
}

/** Inserts memories `from..to-1` of `ownerId` in batches of one transaction each; returns seconds. */
async function fill(store: SqliteMemoryStore, ownerId: string, from: number, to: number, vector: (n: number) => Float32Array, text?: (n: number) => string): Promise<number> {
  const started = performance.now();
  for (let n = from; n < to; n += BATCH) {
    const batch = [];
    for (let k = n; k < Math.min(to, n + BATCH); k++) batch.push(item(ownerId, k, vector(k), text?.(k)));
    await store.upsert(batch);
  }
  return (performance.now() - started) / 1000;
}

/** Prose sentences from the Markdown files and the doc comments of .d.ts files under node_modules. */
function corpusSentences(limit: number): string[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        if (depth < 4) walk(p, depth + 1);
      } else if (/\.(md|d\.ts)$/i.test(e) && st.size < 3_000_000) files.push(p);
    }
  };
  walk('node_modules', 0);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of files) {
    let text = readFileSync(f, 'utf8');
    if (f.endsWith('.ts')) {
      text = (text.match(/\/\*\*[\s\S]*?\*\//g) ?? []).map((c) => c.replace(/^\s*\/?\*+\/?/gm, '').replace(/@\w+[^\n]*/g, '')).join('\n\n');
    }
    text = text
      .replace(/```[\s\S]*?```/g, ' ')
      .replace(/`[^`]*`/g, ' ')
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, ' ');
    for (const para of text.split(/\n\s*\n/)) {
      if (/^\s*(\||#| {4})/.test(para)) continue;
      const flat = para.replace(/\s+/g, ' ').replace(/^[-*>\d.\s]+/, '').trim();
      for (const s of flat.split(/(?<=[.!?])\s+(?=[A-Z])/)) {
        const words = s.match(/[A-Za-z]{2,}/g) ?? [];
        if (s.includes('![') || s.includes('http') || s.length < 30 || s.length > 400 || words.length < 6) continue;
        if (words.join('').length / s.length < 0.6) continue;
        const key = s.toLowerCase();
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(s);
        if (out.length >= limit) return out;
      }
    }
  }
  return out;
}

interface Query {
  vector: Float32Array;
  excludeMessageIds: string[];
}

interface Exact {
  /** Cosines of the three best non-excluded memories (a returned memory scoring at least the third is a hit). */
  scores: number[];
  ms: number;
}

/** Exact top 3 by brute force over the owner's float vectors (what the store did before). */
function exactTop(raw: Database.Database, ownerId: string, q: Query): Exact {
  const started = performance.now();
  const rows = raw
    .prepare<[Buffer, string, number], { message_id: string; d: number }>(
      `SELECT m.message_id, vec_distance_cosine(m.vector, ?) AS d FROM memories AS m
       WHERE m.owner_id = ? ORDER BY d LIMIT ?`,
    )
    .all(Buffer.from(q.vector.buffer, q.vector.byteOffset, q.vector.byteLength), ownerId, TOP_K + q.excludeMessageIds.length);
  const ms = performance.now() - started;
  const excluded = new Set(q.excludeMessageIds);
  const kept = rows.filter((r) => !excluded.has(r.message_id));
  return { scores: kept.slice(0, TOP_K).map((r) => 1 - r.d), ms };
}

interface Quality {
  /** Share of the exact top 3 the store returns; a tie with the exact third counts as a hit. */
  recall: number;
  /** What a miss costs: the exact top 3's mean cosine minus the returned top 3's, mean and worst over the queries. */
  scoreLoss: { mean: number; max: number };
}

async function quality(store: SqliteMemoryStore, ownerId: string, queries: Query[], exact: Exact[]): Promise<Quality> {
  let hits = 0;
  let lossSum = 0;
  let lossMax = 0;
  for (let i = 0; i < queries.length; i++) {
    const q = queries[i]!;
    const want = exact[i]!.scores;
    const res = await store.query(ownerId, q.vector, { topK: TOP_K, minScore: -1, excludeMessageIds: q.excludeMessageIds });
    hits += res.filter((m) => m.score >= want[TOP_K - 1]! - 1e-5).length;
    const loss = Math.max(0, (want.reduce((a, b) => a + b, 0) - res.reduce((a, m) => a + m.score, 0)) / TOP_K);
    lossSum += loss;
    lossMax = Math.max(lossMax, loss);
  }
  const r4 = (x: number) => Math.round(x * 10_000) / 10_000;
  return { recall: r4(hits / (TOP_K * queries.length)), scoreLoss: { mean: r4(lossSum / queries.length), max: r4(lossMax) } };
}

async function timeQueries(store: SqliteMemoryStore, ownerId: string, make: () => Query, n: number): Promise<Summary> {
  for (let i = 0; i < 20; i++) {
    const q = make();
    await store.query(ownerId, q.vector, { topK: TOP_K, minScore: -1, excludeMessageIds: q.excludeMessageIds });
  }
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const q = make();
    const started = performance.now();
    const res = await store.query(ownerId, q.vector, { topK: TOP_K, minScore: -1, excludeMessageIds: q.excludeMessageIds });
    samples.push(performance.now() - started);
    if (res.length !== TOP_K || res.some((m) => m.ownerId !== ownerId)) throw new Error('recall returned the wrong memories');
  }
  return roundSummary(summarize(samples));
}

/** Bytes of each memory table and its indexes, from dbstat. */
function tableBytes(raw: Database.Database): Record<string, number> {
  const rows = raw
    .prepare<[], { name: string; bytes: number }>(
      `SELECT coalesce(i.tbl_name, s.name) AS name, sum(s.pgsize) AS bytes FROM dbstat AS s
       LEFT JOIN sqlite_master AS i ON i.name = s.name AND i.type = 'index'
       WHERE coalesce(i.tbl_name, s.name) LIKE 'memor%' GROUP BY 1`,
    )
    .all();
  return Object.fromEntries(rows.map((r) => [r.name, r.bytes]));
}

interface Level {
  memories: number;
  totalRows: number;
  insertSeconds: number;
  insertRowsPerSecond: number;
  /** Codes in the cache. */
  recall: Summary;
  /** A store without the code cache: both stages in SQLite. */
  recallUncached: Summary;
  /** The first query of a fresh store: loads the user's codes into the cache. */
  firstQueryMs: number;
  cacheBytes: number;
  exactScan: Summary;
  /** recall@3 by candidate count, for random-direction queries and queries near one of the user's memories. */
  recallAt3: { random: Record<string, number>; nearMemory: Record<string, number> };
  scoreLossAt3: { random: Record<string, Quality['scoreLoss']>; nearMemory: Record<string, Quality['scoreLoss']> };
}

interface CorpusLevel {
  memories: number;
  recall: Summary;
  recallAt3: { heldOutSentences: Record<string, number>; partialMemories: Record<string, number> };
  scoreLossAt3: { heldOutSentences: Record<string, Quality['scoreLoss']>; partialMemories: Record<string, Quality['scoreLoss']> };
}

/** Quality for each candidate count of SWEEP: recall@3 and score loss, keyed by the count. */
async function sweep(file: string, dims: number, ownerId: string, queries: Query[], exact: Exact[]) {
  const recall: Record<string, number> = {};
  const loss: Record<string, Quality['scoreLoss']> = {};
  for (const candidates of SWEEP) {
    const store = new SqliteMemoryStore(file, { dimensions: dims, embedder: 'bench', recallCandidates: candidates });
    await store.init();
    const q = await quality(store, ownerId, queries, exact);
    recall[String(candidates)] = q.recall;
    loss[String(candidates)] = q.scoreLoss;
    await store.close();
  }
  return { recall, loss };
}

async function runDimension(dims: number) {
  const loadBefore = loadavg()[0] ?? Number.NaN;
  const dir = mkdtempSync(join(tmpdir(), 'memory-recall-'));
  const file = join(dir, 'memory.sqlite');
  const store = new SqliteMemoryStore(file, { dimensions: dims, embedder: 'bench' });
  const openStarted = performance.now();
  await store.init();
  const initMs = performance.now() - openStarted;
  const raw = new Database(file, { readonly: true });
  sqliteVec.load(raw);
  const vecVersion = raw.prepare<[], { v: string }>('SELECT vec_version() AS v').get()?.v ?? 'unknown';
  const vectorOf = raw.prepare<[string, string], { vector: Buffer }>(
    'SELECT vector FROM memories WHERE owner_id = ? AND id = ?',
  );
  const stored = (ownerId: string, n: number): Float32Array => {
    const b = vectorOf.get(ownerId, `${ownerId}-m${n}`)!.vector;
    return new Float32Array(new Uint8Array(b).buffer);
  };

  console.log(`\n${dims} dims: ${OTHERS} rows of ${OTHER_USERS} other users, ${QUERIES} timed queries per size (topK ${TOP_K}, ${EXCLUDED} excluded)`);
  const perOther = Math.ceil(OTHERS / OTHER_USERS);
  let othersSeconds = 0;
  for (let u = 0; u < OTHER_USERS && u * perOther < OTHERS; u++) {
    othersSeconds += await fill(store, `other-${u}`, 0, Math.min(perOther, OTHERS - u * perOther), () => unitVector(dims));
  }
  console.log(`  other users' rows inserted in ${othersSeconds.toFixed(1)} s (${Math.round(OTHERS / othersSeconds)} rows/s)`);

  const levels: Level[] = [];
  let have = 0;
  for (const size of SIZES) {
    const insertSeconds = await fill(store, 'target', have, size, () => unitVector(dims));
    const added = size - have;
    have = size;
    const excludes = () => Array.from({ length: EXCLUDED }, () => `target-msg${pick(size)}`);
    const makeQuery = () => ({ vector: unitVector(dims), excludeMessageIds: excludes() });
    const fresh = new SqliteMemoryStore(file, { dimensions: dims, embedder: 'bench' });
    await fresh.init();
    const firstQuery = makeQuery();
    const firstStarted = performance.now();
    await fresh.query('target', firstQuery.vector, { topK: TOP_K, minScore: -1, excludeMessageIds: firstQuery.excludeMessageIds });
    const firstQueryMs = performance.now() - firstStarted;
    await fresh.close();
    const recall = await timeQueries(store, 'target', makeQuery, QUERIES);
    const uncachedStore = new SqliteMemoryStore(file, { dimensions: dims, embedder: 'bench', recallCacheBytes: 0 });
    await uncachedStore.init();
    const recallUncached = await timeQueries(uncachedStore, 'target', makeQuery, Math.max(20, Math.floor(QUERIES / 3)));
    await uncachedStore.close();

    const half = Math.max(1, Math.floor(RECALL_QUERIES / 2));
    const randomQueries = Array.from({ length: half }, () => ({ vector: unitVector(dims), excludeMessageIds: excludes() }));
    const nearQueries = Array.from({ length: half }, () => ({ vector: near(stored('target', pick(size)), NEAR_COSINE), excludeMessageIds: excludes() }));
    const randomExact = randomQueries.map((q) => exactTop(raw, 'target', q));
    const nearExact = nearQueries.map((q) => exactTop(raw, 'target', q));
    const random = await sweep(file, dims, 'target', randomQueries, randomExact);
    const nearMemory = await sweep(file, dims, 'target', nearQueries, nearExact);
    const level: Level = {
      memories: size,
      totalRows: size + OTHERS,
      insertSeconds: round2(insertSeconds),
      insertRowsPerSecond: Math.round(added / insertSeconds),
      recall,
      recallUncached,
      firstQueryMs: round2(firstQueryMs),
      cacheBytes: store.cacheStats().bytes,
      exactScan: roundSummary(summarize([...randomExact, ...nearExact].map((e) => e.ms))),
      recallAt3: { random: random.recall, nearMemory: nearMemory.recall },
      scoreLossAt3: { random: random.loss, nearMemory: nearMemory.loss },
    };
    levels.push(level);
    console.log(
      `  ${String(size).padStart(7)} memories: p50 ${level.recall.p50.toFixed(2)} ms, p99 ${level.recall.p99.toFixed(2)} ms ` +
        `(uncached p50 ${level.recallUncached.p50.toFixed(2)} ms, first query ${level.firstQueryMs.toFixed(1)} ms); ` +
        `recall@3 (${RECALL_CANDIDATES} candidates) random ${level.recallAt3.random[RECALL_CANDIDATES]}, near ${level.recallAt3.nearMemory[RECALL_CANDIDATES]} ` +
        `(score loss ${JSON.stringify(level.scoreLossAt3.random[RECALL_CANDIDATES])}, ${JSON.stringify(level.scoreLossAt3.nearMemory[RECALL_CANDIDATES])}); ` +
        `exact scan p50 ${level.exactScan.p50.toFixed(1)} ms`,
    );
  }

  // Realistic text: the local embedder at this dimension, for a user of its own.
  const corpus: CorpusLevel[] = [];
  let corpusSentencesUsed = 0;
  if (CORPUS > 0) {
    const embedder = new LocalEmbedder({ dimensions: dims });
    const sentences = corpusSentences(CORPUS + TEXT_QUERIES);
    const heldOut = sentences.splice(sentences.length - TEXT_QUERIES);
    corpusSentencesUsed = sentences.length;
    const textRandom = rng(7);
    const vectors = sentences.map((s) => embedder.embedText(s));
    const heldOutVectors = heldOut.map((s) => embedder.embedText(s));
    let filled = 0;
    for (const size of [Math.min(10_000, sentences.length), sentences.length]) {
      if (size <= filled) continue;
      await fill(store, 'reader', filled, size, (n) => vectors[n]!, (n) => sentences[n]!);
      filled = size;
      const excludes = () => Array.from({ length: EXCLUDED }, () => `reader-msg${Math.floor(textRandom() * size)}`);
      const held = heldOutVectors.map((vector) => ({ vector, excludeMessageIds: excludes() }));
      const partial = Array.from({ length: TEXT_QUERIES }, () => {
        const words = sentences[Math.floor(textRandom() * size)]!.split(/\s+/);
        const kept = words.filter(() => textRandom() < 0.6);
        return { vector: embedder.embedText((kept.length ? kept : words).join(' ')), excludeMessageIds: excludes() };
      });
      const recall = await timeQueries(store, 'reader', () => held[Math.floor(textRandom() * held.length)]!, Math.min(QUERIES, 300));
      const heldOutSentences = await sweep(file, dims, 'reader', held, held.map((q) => exactTop(raw, 'reader', q)));
      const partialMemories = await sweep(file, dims, 'reader', partial, partial.map((q) => exactTop(raw, 'reader', q)));
      const level: CorpusLevel = {
        memories: size,
        recall,
        recallAt3: { heldOutSentences: heldOutSentences.recall, partialMemories: partialMemories.recall },
        scoreLossAt3: { heldOutSentences: heldOutSentences.loss, partialMemories: partialMemories.loss },
      };
      corpus.push(level);
      console.log(
        `  text, ${String(size).padStart(5)} memories: p50 ${level.recall.p50.toFixed(2)} ms, p99 ${level.recall.p99.toFixed(2)} ms; recall@3 ` +
          `held-out ${JSON.stringify(level.recallAt3.heldOutSentences)}, partial ${JSON.stringify(level.recallAt3.partialMemories)}`,
      );
    }
  }

  // Storage: per memory over the whole file, and what a user with a single memory adds.
  const before = tableBytes(raw);
  const rowsBefore = raw.prepare<[], { n: number }>('SELECT count(*) AS n FROM memories').get()!.n;
  const singles = 1000;
  for (let u = 0; u < singles; u += BATCH) {
    await store.upsert(Array.from({ length: Math.min(BATCH, singles - u) }, (_, k) => item(`single-${u + k}`, 0, unitVector(dims))));
  }
  const after = tableBytes(raw);
  const sum = (t: Record<string, number>) => Object.values(t).reduce((a, b) => a + b, 0);
  const storage = {
    memories: rowsBefore,
    bytesPerMemory: Object.fromEntries(Object.entries(before).map(([k, v]) => [k, Math.round(v / rowsBefore)])),
    bytesPerMemoryTotal: Math.round(sum(before) / rowsBefore),
    bytesPerSingleMemoryUser: Math.round((sum(after) - sum(before)) / singles),
    codeBytes: new BinaryCodes(dims).bits / 8,
    vectorBytes: dims * 4,
  };
  console.log(
    `  storage: ${storage.bytesPerMemoryTotal} bytes per memory (${JSON.stringify(storage.bytesPerMemory)}), ` +
      `a user with one memory ${storage.bytesPerSingleMemoryUser} bytes`,
  );

  const deleteStarted = performance.now();
  let longestStallMs = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    longestStallMs = Math.max(longestStallMs, now - last - 1);
    last = now;
  }, 1);
  await store.deleteAll('target');
  clearInterval(ticker);
  const deleteAllSeconds = (performance.now() - deleteStarted) / 1000;
  const fileBytes = statSync(file).size;

  raw.close();
  await store.close();
  if (!KEEP) rmSync(dir, { recursive: true, force: true });
  return {
    dimensions: dims,
    codeBits: new BinaryCodes(dims).bits,
    loadAverage: { before: round2(loadBefore), after: round2(loadavg()[0] ?? Number.NaN) },
    sqliteVec: vecVersion,
    initMs: round2(initMs),
    levels,
    corpus: { sentences: corpusSentencesUsed, queriesPerKind: TEXT_QUERIES, levels: corpus },
    storage,
    deleteAll: { memories: SIZES.at(-1), seconds: round2(deleteAllSeconds), longestEventLoopStallMs: Math.round(longestStallMs) },
    fileBytes,
  };
}

async function main() {
  const loadBefore = loadavg()[0];
  const runs = [];
  for (const dims of DIMS) runs.push(await runDimension(dims));

  const widths = [6, 9, 8, 8, 12, 9, 9, 12, 12, 8];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('');
  console.log(line(['dims', 'memories', 'p50 ms', 'p99 ms', 'uncached p50', 'first ms', 'exact ms', 'r@3 random', 'r@3 near', 'rows/s']));
  for (const r of runs) {
    for (const l of r.levels) {
      console.log(
        line([
          String(r.dimensions),
          String(l.memories),
          l.recall.p50.toFixed(2),
          l.recall.p99.toFixed(2),
          l.recallUncached.p50.toFixed(2),
          l.firstQueryMs.toFixed(1),
          l.exactScan.p50.toFixed(1),
          String(l.recallAt3.random[RECALL_CANDIDATES]),
          String(l.recallAt3.nearMemory[RECALL_CANDIDATES]),
          String(l.insertRowsPerSecond),
        ]),
      );
    }
  }

  const result = {
    bench: 'memory-recall',
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    /** One-minute load average before and after: other work on the machine inflates the tails. */
    loadAverage: { before: round2(loadBefore ?? Number.NaN), after: round2(loadavg()[0] ?? Number.NaN) },
    otherUsers: OTHER_USERS,
    otherRows: OTHERS,
    queriesPerSize: QUERIES,
    recallQueriesPerSize: RECALL_QUERIES,
    topK: TOP_K,
    excludedPerQuery: EXCLUDED,
    recallCandidates: RECALL_CANDIDATES,
    recallCacheBytes: RECALL_CACHE_BYTES,
    nearMemoryCosine: NEAR_COSINE,
    runs,
  };
  const out = join('bench', 'results', 'memory-recall.json');
  mkdirSync(join('bench', 'results'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

function roundSummary(s: Summary): Summary {
  return { n: s.n, min: round2(s.min), p50: round2(s.p50), p90: round2(s.p90), p99: round2(s.p99), max: round2(s.max), mean: round2(s.mean) };
}

await main();
