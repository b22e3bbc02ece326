import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStoreError } from '../../src/memory/memory-store-error.js';
import type { MemoryRecord, MemoryStore } from '../../src/memory/memory-store.js';
import { PineconeMemoryStore } from '../../src/memory/pinecone-memory-store.js';
import { SqliteMemoryStore } from '../../src/memory/sqlite-memory-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from '../helpers/gateway.js';
import { startPineconeStandin, type PineconeRequest, type PineconeStandin } from '../standins/pinecone-standin.js';

const DIM = 8;
const OTHER_DIM = 12;
const EMBEDDER = 'test:hash-v1';
const API_KEY = 'pcsk_contract_test_key_5f2b9c';
const T0 = 1_700_000_000_000;

type Item = MemoryRecord & { vector: Float32Array };

interface Opened {
  store: MemoryStore;
  /** A second store over the same backend, configured for another dimension. */
  withDimension(dimensions: number): MemoryStore;
  cleanup(): Promise<void>;
}

interface Adapter {
  name: string;
  open(): Promise<Opened>;
}

const adapters: Adapter[] = [
  {
    name: 'sqlite (sqlite-vec, temp file)',
    async open() {
      const dir = tempDataDir();
      const file = join(dir, 'memory.sqlite');
      const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
      await store.init();
      return {
        store,
        withDimension: (dimensions) => new SqliteMemoryStore(file, { dimensions, embedder: EMBEDDER }),
        cleanup: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'pinecone (real client, local stand-in)',
    async open() {
      const standin = await startPineconeStandin({ dimension: DIM, apiKey: API_KEY });
      const make = (dimensions: number) =>
        new PineconeMemoryStore({ apiKey: API_KEY, indexName: standin.indexName, indexHost: standin.url, dimensions, maxRetries: 0 });
      const store = make(DIM);
      await store.init();
      return { store, withDimension: make, cleanup: () => standin.close() };
    },
  },
];

/** A unit vector at `degrees` from the x axis in the first two dimensions: its cosine to x is cos(degrees). */
function angled(degrees: number, dims = DIM): Float32Array {
  const v = new Float32Array(dims);
  v[0] = Math.cos((degrees * Math.PI) / 180);
  v[1] = Math.sin((degrees * Math.PI) / 180);
  return v;
}

const X_AXIS = angled(0);

function memory(ownerId: string, id: string, over: Partial<Item> & { degrees?: number } = {}): Item {
  const { degrees, ...rest } = over;
  return {
    id,
    ownerId,
    conversationId: 'c1',
    messageId: `msg-${id}`,
    role: 'user',
    text: `text of ${id}`,
    createdAt: T0,
    vector: angled(degrees ?? 90),
    ...rest,
  };
}

const strip = ({ vector: _vector, ...record }: Item): MemoryRecord => record;

async function listAll(store: MemoryStore, ownerId: string, limit = 100): Promise<MemoryRecord[]> {
  const out: MemoryRecord[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 100; i++) {
    const page = await store.list(ownerId, { limit, cursor });
    out.push(...page.items);
    if (!page.nextCursor) return out;
    cursor = page.nextCursor;
  }
  throw new Error('list never ended');
}

for (const adapter of adapters) {
  describe(`MemoryStore contract: ${adapter.name}`, () => {
    let opened: Opened;
    let store: MemoryStore;

    beforeAll(async () => {
      opened = await adapter.open();
      store = opened.store;
    });
    afterAll(async () => {
      await store.close();
      await opened.cleanup();
    });

    it('upserts and gets a record exactly; unknown ids are undefined', async () => {
      const item = memory('get-owner', 'g1', { role: 'assistant', text: 'Ünïcode ✓ "quoted"\nline', createdAt: T0 + 5, conversationId: 'conv-g' });
      await store.upsert([item]);
      expect(await store.get('get-owner', 'g1')).toEqual(strip(item));
      expect(await store.get('get-owner', 'nope')).toBeUndefined();
    });

    it('keeps owners apart on every operation', async () => {
      const alice = [
        memory('alice', 'shared', { degrees: 0, text: 'alice shared', conversationId: 'conv-both', createdAt: T0 + 1 }),
        memory('alice', 'a-only', { degrees: 10, conversationId: 'conv-both', createdAt: T0 + 2 }),
        memory('alice', 'a-other-conv', { degrees: 20, conversationId: 'conv-a', createdAt: T0 + 3 }),
      ];
      const bob = [
        memory('bob', 'shared', { degrees: 80, text: 'bob shared', conversationId: 'conv-both', createdAt: T0 + 4 }),
        memory('bob', 'b-only', { degrees: 85, conversationId: 'conv-b', createdAt: T0 + 5 }),
      ];
      await store.upsert([...alice, ...bob]);

      // The same id under two owners is two memories.
      expect((await store.get('alice', 'shared'))?.text).toBe('alice shared');
      expect((await store.get('bob', 'shared'))?.text).toBe('bob shared');
      expect(await store.get('bob', 'a-only')).toBeUndefined();

      // Bob's query for alice's exact vector finds only bob's memories.
      const bobs = await store.query('bob', X_AXIS, { topK: 10, minScore: -1 });
      expect(bobs.map((m) => m.id).sort()).toEqual(['b-only', 'shared']);
      expect(bobs.every((m) => m.ownerId === 'bob')).toBe(true);
      // topK 1 must come from bob's own memories, not be alice's best match filtered away afterwards.
      expect((await store.query('bob', X_AXIS, { topK: 1, minScore: -1 })).map((m) => `${m.ownerId}/${m.id}`)).toEqual(['bob/shared']);
      expect((await listAll(store, 'bob')).map((m) => m.id)).toEqual(['b-only', 'shared']);

      // Deleting another owner's id is a no-op.
      expect(await store.delete('bob', ['a-only', 'a-other-conv'])).toBe(0);
      expect(await store.get('alice', 'a-only')).toBeDefined();

      // Bob's deletes by conversation and of everything leave alice untouched.
      await store.deleteByConversation('bob', 'conv-both');
      expect((await listAll(store, 'bob')).map((m) => m.id)).toEqual(['b-only']);
      await store.deleteAll('bob');
      expect(await listAll(store, 'bob')).toEqual([]);
      expect((await listAll(store, 'alice')).map((m) => m.id)).toEqual(['a-other-conv', 'a-only', 'shared']);
      expect((await store.query('alice', X_AXIS, { topK: 1, minScore: -1 }))[0]?.id).toBe('shared');
      await store.deleteAll('alice');
    });

    /** Six memories at growing angles from the x axis (upsert: the same six however often it runs). */
    const RANKER_DEGREES = [0, 15, 30, 45, 60, 120];
    const seedRanker = () => store.upsert(RANKER_DEGREES.map((d) => memory('ranker', `r${d}`, { degrees: d })));

    it('ranks by cosine similarity, best first, honouring topK and minScore', async () => {
      const degrees = RANKER_DEGREES;
      await seedRanker();

      const top3 = await store.query('ranker', X_AXIS, { topK: 3, minScore: -1 });
      expect(top3.map((m) => m.id)).toEqual(['r0', 'r15', 'r30']);
      top3.forEach((m, i) => expect(m.score).toBeCloseTo(Math.cos((degrees[i]! * Math.PI) / 180), 4));
      expect(top3[0]).toMatchObject(strip(memory('ranker', 'r0', { degrees: 0 })));

      const aboveHalf = await store.query('ranker', X_AXIS, { topK: 10, minScore: 0.6 });
      expect(aboveHalf.map((m) => m.id)).toEqual(['r0', 'r15', 'r30', 'r45']);

      const all = await store.query('ranker', X_AXIS, { topK: 10, minScore: -1 });
      expect(all.map((m) => m.id)).toEqual(['r0', 'r15', 'r30', 'r45', 'r60', 'r120']);
      expect(all.at(-1)!.score).toBeCloseTo(-0.5, 4);
      expect(await store.query('ranker', X_AXIS, { topK: 10, minScore: 0.9999 })).toHaveLength(1);
      expect(await store.query('nobody', X_AXIS, { topK: 3, minScore: -1 })).toEqual([]);
    });

    it('skips excludeMessageIds and still returns topK', async () => {
      await seedRanker();
      const res = await store.query('ranker', X_AXIS, { topK: 3, minScore: -1, excludeMessageIds: ['msg-r0', 'msg-r15', 'msg-unknown'] });
      expect(res.map((m) => m.id)).toEqual(['r30', 'r45', 'r60']);
    });

    it('upsert replaces by id: text, vector and createdAt, without a duplicate', async () => {
      await store.upsert([memory('replacer', 'x', { degrees: 0, text: 'old', createdAt: T0 + 10 }), memory('replacer', 'y', { degrees: 45, createdAt: T0 + 20 })]);
      await store.upsert([memory('replacer', 'x', { degrees: 90, text: 'new', createdAt: T0 + 30, role: 'assistant', conversationId: 'c9' })]);
      expect(await store.get('replacer', 'x')).toEqual(strip(memory('replacer', 'x', { text: 'new', createdAt: T0 + 30, role: 'assistant', conversationId: 'c9' })));
      expect((await listAll(store, 'replacer')).map((m) => `${m.id}:${m.text}`)).toEqual(['x:new', 'y:text of y']);
      const best = await store.query('replacer', X_AXIS, { topK: 2, minScore: -1 });
      expect(best.map((m) => m.id)).toEqual(['y', 'x']);
      expect(best[1]!.score).toBeCloseTo(0, 4);

      // Within one call the last item of an id wins.
      await store.upsert([memory('replacer', 'z', { text: 'first', createdAt: T0 + 40 }), memory('replacer', 'z', { text: 'second', createdAt: T0 + 5 })]);
      expect((await listAll(store, 'replacer')).map((m) => `${m.id}:${m.text}`)).toEqual(['x:new', 'y:text of y', 'z:second']);
    });

    it('lists newest first with opaque cursors, across pages, without duplicates (ties by id)', async () => {
      // Inserted in scrambled order; pairs share a millisecond, to pin the order of ties.
      const items = Array.from({ length: 25 }, (_, n) => (n * 7) % 25).map((i) =>
        memory('lister', `m${String(i).padStart(2, '0')}`, { createdAt: T0 + 1000 * Math.floor(i / 2) }),
      );
      await store.upsert(items);
      const expected = [...items]
        .sort((a, b) => b.createdAt - a.createdAt || Buffer.compare(Buffer.from(a.id), Buffer.from(b.id)))
        .map((m) => m.id);
      expect(new Set(items.map((m) => m.createdAt)).size).toBeLessThan(items.length);

      const pages: string[][] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 10; i++) {
        const page = await store.list('lister', { limit: 7, cursor });
        pages.push(page.items.map((m) => m.id));
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      expect(pages.map((p) => p.length)).toEqual([7, 7, 7, 4]);
      expect(pages.flat()).toEqual(expected);
      expect((await store.list('lister', { limit: 100 })).nextCursor).toBeNull();
      expect(await store.list('nobody', { limit: 5 })).toEqual({ items: [], nextCursor: null });
      const first = (await store.list('lister', { limit: 1 })).items[0];
      expect(first).toEqual(strip(items.find((m) => m.id === expected[0])!));
    });

    it('deleteByConversation removes only that conversation', async () => {
      await store.upsert([
        memory('conv-owner', 'k1', { conversationId: 'keep' }),
        memory('conv-owner', 'd1', { conversationId: 'drop' }),
        memory('conv-owner', 'd2', { conversationId: 'drop', degrees: 0 }),
      ]);
      await store.deleteByConversation('conv-owner', 'drop');
      expect((await listAll(store, 'conv-owner')).map((m) => m.id)).toEqual(['k1']);
      expect((await store.query('conv-owner', X_AXIS, { topK: 5, minScore: -1 })).map((m) => m.id)).toEqual(['k1']);
      await store.deleteByConversation('conv-owner', 'never-existed');
      await store.deleteByConversation('nobody', 'drop');
    });

    it('delete returns how many of the owner’s memories existed and removes vector and record', async () => {
      await store.upsert([memory('deleter', 'a', { degrees: 0 }), memory('deleter', 'b'), memory('deleter', 'c')]);
      expect(await store.delete('deleter', ['a', 'a', 'b', 'zzz'])).toBe(2);
      expect(await store.get('deleter', 'a')).toBeUndefined();
      expect((await store.query('deleter', X_AXIS, { topK: 5, minScore: -1 })).map((m) => m.id)).toEqual(['c']);
      expect(await store.delete('deleter', [])).toBe(0);
      expect(await store.delete('nobody', ['a'])).toBe(0);
    });

    it('deleteAll erases everything the owner has; an owner with nothing is a no-op', async () => {
      await store.upsert(Array.from({ length: 12 }, (_, i) => memory('eraser', `e${i}`, { conversationId: `c${i % 3}` })));
      await store.deleteAll('eraser');
      expect(await listAll(store, 'eraser')).toEqual([]);
      expect(await store.query('eraser', X_AXIS, { topK: 5, minScore: -1 })).toEqual([]);
      await store.deleteAll('eraser');
      await store.deleteAll('nobody');
    });

    it('refuses vectors of another dimension', async () => {
      await expect(store.upsert([{ ...memory('dims', 'd'), vector: angled(0, DIM + 1) }])).rejects.toThrow(/8.*9|9.*8/);
      await expect(store.query('dims', angled(0, DIM - 1), { topK: 1, minScore: 0 })).rejects.toThrow(MemoryStoreError);
      expect(await store.get('dims', 'd')).toBeUndefined();
    });

    it('init() refuses a backend built for another dimension, naming both numbers', async () => {
      const other = opened.withDimension(OTHER_DIM);
      try {
        const err = await other.init().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(MemoryStoreError);
        expect((err as Error).message).toMatch(new RegExp(`\\b${DIM}\\b`));
        expect((err as Error).message).toMatch(new RegExp(`\\b${OTHER_DIM}\\b`));
        expect((err as Error).message).toMatch(/EMBEDDING_DIMENSIONS=8/);
      } finally {
        await other.close();
      }
      await store.ping();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Pinecone only
// ---------------------------------------------------------------------------------------------

const expectedNamespace = (ownerId: string) => `user-${createHash('sha256').update(ownerId).digest('hex').slice(0, 32)}`;

describe('PineconeMemoryStore on the wire', () => {
  let standin: PineconeStandin;
  let store: PineconeMemoryStore;

  const make = (over: Partial<ConstructorParameters<typeof PineconeMemoryStore>[0]> = {}) =>
    new PineconeMemoryStore({ apiKey: API_KEY, indexName: standin.indexName, indexHost: standin.url, dimensions: DIM, maxRetries: 0, ...over });

  beforeAll(async () => {
    standin = await startPineconeStandin({ dimension: DIM, apiKey: API_KEY, indexName: 'wire-index' });
    store = make();
    await store.init();
  });
  afterAll(async () => {
    await store.close();
    await standin.close();
  });

  /** Runs `fn` and returns the requests it made. */
  async function requestsOf(fn: () => Promise<unknown>): Promise<PineconeRequest[]> {
    const before = standin.requests.length;
    await fn();
    return standin.requests.slice(before);
  }

  it('every query, fetch-by-metadata and delete-by-filter carries the owner filter and the owner’s namespace', async () => {
    for (const owner of ['auth0|alice', 'bob@example.com']) {
      const ns = expectedNamespace(owner);
      const reqs = await requestsOf(async () => {
        await store.upsert([memory(owner, 'q1', { degrees: 0, conversationId: 'cv' }), memory(owner, 'q2', { createdAt: T0 + 1 })]);
        await store.query(owner, X_AXIS, { topK: 2, minScore: -1 });
        await store.query(owner, X_AXIS, { topK: 2, minScore: -1, excludeMessageIds: ['msg-q1'] });
        await store.list(owner, { limit: 10 });
        await store.get(owner, 'q1');
        await store.delete(owner, ['q2']);
        await store.deleteByConversation(owner, 'cv');
        await store.deleteAll(owner);
      });
      const kinds = reqs.map((r) => `${r.method} ${r.path}`);
      expect(new Set(kinds)).toEqual(
        new Set(['POST /vectors/upsert', 'POST /vectors/fetch_by_metadata', 'POST /query', 'GET /vectors/list', 'GET /vectors/fetch', 'POST /vectors/delete']),
      );
      for (const r of reqs) {
        const body = r.body as Record<string, unknown>;
        const namespace = r.method === 'GET' ? r.query['namespace']?.[0] : body['namespace'];
        expect(namespace, `${r.method} ${r.path}`).toBe(ns);
        if (r.path === '/query' || r.path === '/vectors/fetch_by_metadata') {
          expect(body['filter']).toMatchObject({ ownerId: { $eq: owner } });
        }
        if (r.path === '/vectors/delete' && body['filter'] !== undefined) {
          expect(body['filter']).toEqual({ ownerId: { $eq: owner }, conversationId: { $eq: 'cv' } });
        }
        if (r.path === '/vectors/upsert') {
          for (const v of body['vectors'] as { metadata: Record<string, unknown> }[]) expect(v.metadata['ownerId']).toBe(owner);
        }
      }
      const queries = reqs.filter((r) => r.path === '/query').map((r) => r.body as Record<string, unknown>);
      expect(queries[1]!['filter']).toEqual({ ownerId: { $eq: owner }, messageId: { $nin: ['msg-q1'] } });
      expect(queries[0]).toMatchObject({ topK: 2, includeMetadata: true, includeValues: false });
      const deletes = reqs.filter((r) => r.path === '/vectors/delete').map((r) => r.body as Record<string, unknown>);
      expect(deletes.some((d) => d['deleteAll'] === true)).toBe(true);
      expect(deletes.some((d) => Array.isArray(d['ids']))).toBe(true);
    }
  });

  it('one namespace per user; metadata carries the record; vector ids list newest first', async () => {
    const owner = 'layout-owner';
    const items = [0, 2, 1].map((i) => memory(owner, `id-${i}`, { createdAt: T0 + i * 60_000, conversationId: 'cz', role: i ? 'assistant' : 'user' }));
    await store.upsert(items);
    expect(standin.namespaces()).toContain(expectedNamespace(owner));
    const raw = standin.records(expectedNamespace(owner));
    expect(raw.map((r) => r.metadata!['memoryId'])).toEqual(['id-2', 'id-1', 'id-0']);
    expect(raw.map((r) => r.id.slice(10))).toEqual(['id-2', 'id-1', 'id-0']);
    expect(raw[0]!.id).toMatch(/^[0-9a-z]{9}\.id-2$/);
    expect(raw[2]!.metadata).toEqual({ ownerId: owner, memoryId: 'id-0', conversationId: 'cz', messageId: 'msg-id-0', role: 'user', text: 'text of id-0', createdAt: T0 });
    // A new createdAt moves the memory to a new vector id; the old vector goes.
    await store.upsert([memory(owner, 'id-0', { createdAt: T0 + 10 * 60_000 })]);
    expect(standin.records(expectedNamespace(owner)).map((r) => r.metadata!['memoryId'])).toEqual(['id-0', 'id-2', 'id-1']);
    await store.deleteAll(owner);
    expect(standin.namespaces()).not.toContain(expectedNamespace(owner));
  });

  it('with indexHost makes no control-plane call; with only a name it makes exactly one', async () => {
    const byHost = await requestsOf(async () => {
      const s = make();
      await s.init();
      await s.query('h', X_AXIS, { topK: 1, minScore: 0 });
    });
    expect(byHost.some((r) => r.path.startsWith('/indexes'))).toBe(false);

    const byName = await requestsOf(async () => {
      const s = make({ indexHost: undefined, controllerHostUrl: standin.url });
      await s.init();
      await s.upsert([memory('n', 'n1', { degrees: 0 })]);
      expect((await s.query('n', X_AXIS, { topK: 1, minScore: 0 }))[0]?.id).toBe('n1');
      await s.deleteAll('n');
    });
    expect(byName.filter((r) => r.path.startsWith('/indexes')).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /indexes/wire-index']);
  });

  it('init() refuses an index of another dimension (by host and by name) and a euclidean index', async () => {
    const other = await startPineconeStandin({ dimension: OTHER_DIM, apiKey: API_KEY, indexName: 'other-dim' });
    const euclid = await startPineconeStandin({ dimension: DIM, apiKey: API_KEY, indexName: 'euclid', metric: 'euclidean' });
    try {
      const byHost = new PineconeMemoryStore({ apiKey: API_KEY, indexName: 'other-dim', indexHost: other.url, dimensions: DIM, maxRetries: 0 });
      await expect(byHost.init()).rejects.toThrow(/other-dim.*dimension 12.*8-dimension/);
      const byName = new PineconeMemoryStore({ apiKey: API_KEY, indexName: 'other-dim', controllerHostUrl: other.url, dimensions: DIM, maxRetries: 0 });
      await expect(byName.init()).rejects.toThrow(/EMBEDDING_DIMENSIONS=12/);
      const e = new PineconeMemoryStore({ apiKey: API_KEY, indexName: 'euclid', controllerHostUrl: euclid.url, dimensions: DIM, maxRetries: 0 });
      await expect(e.init()).rejects.toThrow(/euclidean/);
      const missing = new PineconeMemoryStore({ apiKey: API_KEY, indexName: 'missing', controllerHostUrl: euclid.url, dimensions: DIM, maxRetries: 0 });
      await expect(missing.init()).rejects.toMatchObject({ name: 'MemoryStoreError', status: 404 });
    } finally {
      await other.close();
      await euclid.close();
    }
  });

  it('a 5xx surfaces as a MemoryStoreError; with maxRetries it is retried, as the stand-in saw', async () => {
    const noRetry = await requestsOf(async () => {
      standin.failNext(1, { status: 503 });
      await expect(store.query('r', X_AXIS, { topK: 1, minScore: 0 })).rejects.toMatchObject({
        name: 'MemoryStoreError',
        message: expect.stringMatching(/^Pinecone query failed: .*server errors/),
      });
    });
    expect(noRetry.map((r) => r.path)).toEqual(['/query']);

    const retrying = make({ maxRetries: 2 });
    await retrying.init();
    const recovered = await requestsOf(async () => {
      standin.failNext(2, { status: 500, path: '/query' });
      await retrying.upsert([memory('r', 'r1', { degrees: 0 })]);
      expect((await retrying.query('r', X_AXIS, { topK: 1, minScore: 0 }))[0]?.id).toBe('r1');
    });
    expect(recovered.filter((r) => r.path === '/query')).toHaveLength(3);

    const exhausted = await requestsOf(async () => {
      standin.failNext(5, { status: 503, path: '/query' });
      await expect(retrying.query('r', X_AXIS, { topK: 1, minScore: 0 })).rejects.toThrow(/gave up after 2 retries/);
    });
    expect(exhausted.map((r) => r.path)).toEqual(['/query', '/query', '/query']);
    standin.resetFaults();
    await retrying.deleteAll('r');
  });

  it('a request that hangs ends with a timeout error', async () => {
    const impatient = make({ timeoutMs: 300 });
    await impatient.init();
    standin.hangNext(1, { path: '/query' });
    const started = Date.now();
    await expect(impatient.query('h', X_AXIS, { topK: 1, minScore: 0 })).rejects.toThrow(/no answer within 300 ms/);
    expect(Date.now() - started).toBeLessThan(5000);
    await expect.poll(() => standin.hanging).toBe(0);
  });

  it('errors never carry the API key', async () => {
    const wrongKey = 'pcsk_wrong_key_that_must_not_leak_77';
    const rejected = new PineconeMemoryStore({ apiKey: wrongKey, indexName: 'wire-index', indexHost: standin.url, dimensions: DIM, maxRetries: 0 });
    const authErr = await rejected.init().catch((e: unknown) => e as Error);
    expect(authErr).toMatchObject({ name: 'MemoryStoreError', status: 401 });
    expect(String(authErr) + JSON.stringify(authErr)).not.toContain(wrongKey);

    standin.failNext(1, { status: 400, message: `bad request for key ${API_KEY}` });
    const badErr = await store.query('k', X_AXIS, { topK: 1, minScore: 0 }).catch((e: unknown) => e as Error);
    expect(badErr).toMatchObject({ name: 'MemoryStoreError', status: 400 });
    expect((badErr as Error).message).toContain('bad request for key ***');
    expect(String(badErr) + JSON.stringify(badErr) + ((badErr as Error).stack ?? '')).not.toContain(API_KEY);
  });

  it('cuts a text too long for 40 KB of metadata instead of failing the upsert', async () => {
    const text = 'é'.repeat(30_000) + 'tail';
    await store.upsert([memory('long', 'big', { text })]);
    const got = await store.get('long', 'big');
    expect(got!.text.length).toBeLessThan(text.length);
    expect(text.startsWith(got!.text)).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(standin.records(expectedNamespace('long'))[0]!.metadata))).toBeLessThanOrEqual(40_960);
    await store.deleteAll('long');
  });

  it('a user who never stored anything: reads are empty and deletes are no-ops (the index answers 404)', async () => {
    const reqs = await requestsOf(async () => {
      expect(await store.query('ghost', X_AXIS, { topK: 3, minScore: 0 })).toEqual([]);
      expect(await store.list('ghost', { limit: 3 })).toEqual({ items: [], nextCursor: null });
      expect(await store.get('ghost', 'x')).toBeUndefined();
      expect(await store.delete('ghost', ['x'])).toBe(0);
      await store.deleteByConversation('ghost', 'c');
      await store.deleteAll('ghost');
    });
    const deletes = reqs.filter((r) => r.path === '/vectors/delete');
    expect(deletes).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------------------------

describe('SqliteMemoryStore on disk', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDataDir();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates its file owner-only, in WAL mode, and survives a reopen', async () => {
    const file = join(dir, 'sub', 'private.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    await store.upsert([memory('p', 'p1', { degrees: 0 })]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
    expect(readFileSync(file).subarray(18, 20)).toEqual(Buffer.from([2, 2])); // WAL read/write versions in the header
    await store.close();

    const reopened = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await reopened.init();
    expect((await reopened.query('p', X_AXIS, { topK: 1, minScore: 0 }))[0]).toMatchObject({ id: 'p1', ownerId: 'p' });
    await reopened.close();
  });

  it('shares one file with the conversation store', async () => {
    const file = join(dir, 'shared.sqlite');
    const conversations = new SqliteConversationStore(file);
    const memories = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await memories.init();
    const { conversation } = await conversations.ensureConversation({ id: 'c1', ownerId: 'u', title: 't' });
    const [msg] = await Promise.all([
      conversations.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'hello' }),
      memories.upsert([memory('u', 'm1', { degrees: 0 })]),
    ]);
    await memories.upsert([memory('u', 'm2', { messageId: msg.id })]);
    await conversations.close();
    await memories.close();

    const conversations2 = new SqliteConversationStore(file);
    const memories2 = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await memories2.init();
    expect((await conversations2.recentMessages(conversation.key, 5)).map((m) => m.content)).toEqual(['hello']);
    expect((await listAll(memories2, 'u')).map((m) => m.id).sort()).toEqual(['m1', 'm2']);
    await conversations2.close();
    await memories2.close();
  });

  it('refuses another embedder of the same dimension, and erase() lets a new one start', async () => {
    const file = join(dir, 'embedder.sqlite');
    const first = new SqliteMemoryStore(file, { dimensions: DIM, embedder: 'local:local-hash-v1' });
    await first.init();
    await first.upsert([memory('e', 'e1')]);
    await first.close();

    const second = new SqliteMemoryStore(file, { dimensions: DIM, embedder: 'gemini:gemini-embedding-001', eraseHint: 'or run `npm run memory:erase`' });
    await expect(second.init()).rejects.toThrow(/local:local-hash-v1.*gemini:gemini-embedding-001.*npm run memory:erase/);
    await second.close();

    SqliteMemoryStore.erase(file);
    const third = new SqliteMemoryStore(file, { dimensions: OTHER_DIM, embedder: 'gemini:gemini-embedding-001' });
    await third.init();
    expect(await third.list('e', { limit: 5 })).toEqual({ items: [], nextCursor: null });
    await third.close();
  });

  it('serves an exclude list longer than sqlite-vec’s k limit', async () => {
    const file = join(dir, 'k.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    await store.upsert([memory('k', 'k1', { degrees: 0 }), memory('k', 'k2', { degrees: 30 })]);
    const exclude = [...Array.from({ length: 5000 }, (_, i) => `msg-none-${i}`), 'msg-k1'];
    expect((await store.query('k', X_AXIS, { topK: 1, minScore: 0, excludeMessageIds: exclude })).map((m) => m.id)).toEqual(['k2']);
    await store.close();
  });

  it('a user with one 768-dimension memory costs kilobytes, not a 3 MB vec0 chunk', async () => {
    const file = join(dir, 'small-users.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: 768, embedder: EMBEDDER });
    await store.init();
    const vector = new Float32Array(768).fill(1 / Math.sqrt(768));
    await store.upsert(Array.from({ length: 40 }, (_, u) => ({ ...memory(`user-${u}`, 'only'), vector })));
    await store.close(); // checkpoints the WAL into the file
    expect(statSync(file).size / 40).toBeLessThan(200 * 1024);
  });

  it('deletes a large account in chunks and keeps the other users’ vectors', async () => {
    const file = join(dir, 'bulk.sqlite');
    const store = new SqliteMemoryStore(file, { dimensions: DIM, embedder: EMBEDDER });
    await store.init();
    await store.upsert(Array.from({ length: 2500 }, (_, i) => memory('big', `b${i}`, { degrees: i % 90 })));
    await store.upsert([memory('small', 's1', { degrees: 0 })]);
    await store.deleteAll('big');
    expect(await store.list('big', { limit: 1 })).toEqual({ items: [], nextCursor: null });
    expect(await store.query('big', X_AXIS, { topK: 1, minScore: -1 })).toEqual([]);
    expect((await store.query('small', X_AXIS, { topK: 1, minScore: -1 }))[0]?.id).toBe('s1');
    await store.close();
  });
});
