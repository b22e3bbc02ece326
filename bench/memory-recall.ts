/**
 * Recall latency of the embedded vector memory (SqliteMemoryStore: SQLite + sqlite-vec, vec0
 * partitioned per user) as one user's memory grows, with other users' rows in the same table.
 *
 *   npx tsx bench/memory-recall.ts [--queries 300] [--others 100000] [--keep]
 *
 * One user grows to 1k, 10k and 100k memories (768-dimension random unit vectors) beside
 * `--others` rows of 100 other users. At each size, `--queries` recall queries run as the chat
 * pipeline makes them (topK 3, minScore -1, 20 excluded message ids of the user's own); each is
 * timed around `store.query()`. For scale, the same KNN without the partition constraint (a
 * scan of every user's vectors) is timed on a raw connection. Writes the table to stdout and
 * JSON to bench/results/memory-recall.json.
 */
import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sqliteVec from 'sqlite-vec';
import type { MemoryRecord } from '../src/memory/memory-store.js';
import { SqliteMemoryStore } from '../src/memory/sqlite-memory-store.js';
import { round2, summarize, type Summary } from './stats.js';

const DIMS = 768;
const SIZES = [1_000, 10_000, 100_000];
const OTHER_USERS = 100;
const BATCH = 1_000;
const TOP_K = 3;
const EXCLUDED = 20;
const T0 = 1_700_000_000_000;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} needs a non-negative integer`);
  return v;
}
const QUERIES = arg('queries', 300);
const OTHERS = arg('others', 100_000);
const KEEP = process.argv.includes('--keep');

/** mulberry32: reproducible runs. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(42);

/** A uniformly random direction: normalised Gaussian coordinates (Box–Muller). */
function unitVector(): Float32Array {
  const v = new Float32Array(DIMS);
  let norm = 0;
  for (let i = 0; i < DIMS; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - random()));
    const t = 2 * Math.PI * random();
    v[i] = r * Math.cos(t);
    if (i + 1 < DIMS) v[i + 1] = r * Math.sin(t);
  }
  for (let i = 0; i < DIMS; i++) norm += v[i]! * v[i]!;
  const inv = 1 / Math.sqrt(norm);
  for (let i = 0; i < DIMS; i++) v[i]! *= inv;
  return v;
}

function item(ownerId: string, n: number): MemoryRecord & { vector: Float32Array } {
  return {
    id: `${ownerId}-m${n}`,
    ownerId,
    conversationId: `${ownerId}-c${Math.floor(n / 50)}`,
    messageId: `${ownerId}-msg${n}`,
    role: n % 2 ? 'assistant' : 'user',
    text: `memory ${n} of ${ownerId}: some words that a chat message might hold, about as long as a short reply.`,
    createdAt: T0 + n,
    vector: unitVector(),
  };
}

/** Inserts memories `from..to-1` of `ownerId` in batches of one transaction each; returns seconds. */
async function fill(store: SqliteMemoryStore, ownerId: string, from: number, to: number): Promise<number> {
  const started = performance.now();
  for (let n = from; n < to; n += BATCH) {
    const batch = [];
    for (let k = n; k < Math.min(to, n + BATCH); k++) batch.push(item(ownerId, k));
    await store.upsert(batch);
  }
  return (performance.now() - started) / 1000;
}

const pick = (n: number) => Math.floor(random() * n);

interface Level {
  memories: number;
  totalRows: number;
  insertSeconds: number;
  insertRowsPerSecond: number;
  recall: Summary;
  unpartitioned: Summary;
}

async function main() {
  const loadBefore = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'memory-recall-'));
  const file = join(dir, 'memory.sqlite');
  const store = new SqliteMemoryStore(file, { dimensions: DIMS, embedder: 'bench:random' });
  const openStarted = performance.now();
  await store.init();
  const openMs = performance.now() - openStarted;
  const raw = new Database(file, { readonly: true });
  sqliteVec.load(raw);
  const vecVersion = raw.prepare<[], { v: string }>('SELECT vec_version() AS v').get()?.v ?? 'unknown';
  const unpartitioned = raw.prepare<[Buffer, bigint]>('SELECT rowid, distance FROM memory_vectors WHERE embedding MATCH ? AND k = ?');

  console.log(`memory-recall: ${DIMS} dims, ${OTHERS} rows of ${OTHER_USERS} other users, ${QUERIES} queries per size (topK ${TOP_K}, ${EXCLUDED} excluded)`);
  const perOther = Math.ceil(OTHERS / OTHER_USERS);
  let othersSeconds = 0;
  for (let u = 0; u < OTHER_USERS && u * perOther < OTHERS; u++) {
    othersSeconds += await fill(store, `other-${u}`, 0, Math.min(perOther, OTHERS - u * perOther));
  }
  console.log(`  other users' rows inserted in ${othersSeconds.toFixed(1)} s (${Math.round(OTHERS / othersSeconds)} rows/s)`);

  const levels: Level[] = [];
  let have = 0;
  for (const size of SIZES) {
    const insertSeconds = await fill(store, 'target', have, size);
    const added = size - have;
    have = size;

    const query = () => {
      const vector = unitVector();
      const excludeMessageIds = Array.from({ length: EXCLUDED }, () => `target-msg${pick(size)}`);
      return { vector, excludeMessageIds };
    };
    for (let i = 0; i < 20; i++) {
      const q = query();
      await store.query('target', q.vector, { topK: TOP_K, minScore: -1, ...q });
    }
    const samples: number[] = [];
    for (let i = 0; i < QUERIES; i++) {
      const q = query();
      const started = performance.now();
      const res = await store.query('target', q.vector, { topK: TOP_K, minScore: -1, excludeMessageIds: q.excludeMessageIds });
      samples.push(performance.now() - started);
      if (res.length !== TOP_K || res.some((m) => m.ownerId !== 'target')) throw new Error('recall returned the wrong memories');
    }
    const scanSamples: number[] = [];
    for (let i = 0; i < Math.max(5, Math.floor(QUERIES / 10)); i++) {
      const v = unitVector();
      const started = performance.now();
      unpartitioned.all(Buffer.from(v.buffer), BigInt(TOP_K + EXCLUDED));
      scanSamples.push(performance.now() - started);
    }
    const level: Level = {
      memories: size,
      totalRows: size + OTHERS,
      insertSeconds: round2(insertSeconds),
      insertRowsPerSecond: Math.round(added / insertSeconds),
      recall: roundSummary(summarize(samples)),
      unpartitioned: roundSummary(summarize(scanSamples)),
    };
    levels.push(level);
    console.log(
      `  ${String(size).padStart(7)} memories: p50 ${level.recall.p50.toFixed(2)} ms, p99 ${level.recall.p99.toFixed(2)} ms ` +
        `(unpartitioned scan of ${level.totalRows} rows: p50 ${level.unpartitioned.p50.toFixed(1)} ms)`,
    );
  }

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

  const widths = [10, 11, 9, 9, 9, 14, 13];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('');
  console.log(line(['memories', 'table rows', 'p50 ms', 'p99 ms', 'max ms', 'scan p50 ms', 'insert rows/s']));
  for (const l of levels) {
    console.log(
      line([
        String(l.memories),
        String(l.totalRows),
        l.recall.p50.toFixed(2),
        l.recall.p99.toFixed(2),
        l.recall.max.toFixed(2),
        l.unpartitioned.p50.toFixed(1),
        String(l.insertRowsPerSecond),
      ]),
    );
  }
  console.log(`deleteAll of 100k memories: ${deleteAllSeconds.toFixed(1)} s, longest event-loop stall ${longestStallMs.toFixed(0)} ms; file ${(fileBytes / 1e6).toFixed(0)} MB; init ${openMs.toFixed(1)} ms`);

  const result = {
    bench: 'memory-recall',
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    /** One-minute load average before and after: other work on the machine inflates the tails. */
    loadAverage: { before: round2(loadBefore ?? Number.NaN), after: round2(loadavg()[0] ?? Number.NaN) },
    sqliteVec: vecVersion,
    dimensions: DIMS,
    otherUsers: OTHER_USERS,
    otherRows: OTHERS,
    queriesPerSize: QUERIES,
    topK: TOP_K,
    excludedPerQuery: EXCLUDED,
    initMs: round2(openMs),
    levels,
    deleteAll: { memories: SIZES.at(-1), seconds: round2(deleteAllSeconds), longestEventLoopStallMs: Math.round(longestStallMs) },
    fileBytes,
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
