import { Pinecone, type Index } from '@pinecone-database/pinecone';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startPineconeStandin, type PineconeStandin } from './pinecone-standin.js';

const API_KEY = 'pc-test-key-0123456789';
const DIM = 4;

let standin: PineconeStandin;
let pc: Pinecone;
let index: Index;

beforeAll(async () => {
  standin = await startPineconeStandin({ dimension: DIM, indexName: 'standin-test', apiKey: API_KEY });
  pc = new Pinecone({ apiKey: API_KEY, controllerHostUrl: standin.url, maxRetries: 0 });
  index = pc.index({ host: standin.url });
});
afterAll(async () => {
  await standin.close();
});

async function clearAll() {
  for (const namespace of standin.namespaces()) await index.deleteAll({ namespace });
}

function cosine(a: number[], b: number[]): number {
  const dot = a.reduce((s, x, i) => s + x * b[i]!, 0);
  return dot / (Math.hypot(...a) * Math.hypot(...b));
}

describe('control plane', () => {
  it('index({name}) resolves the host through GET /indexes/:name once, then talks to the data plane', async () => {
    // The client caches the host per API key and index name for the whole process (describeIndex
    // fills that cache too): a stand-in of its own, with a key no other test uses, so the
    // control-plane call is seen whatever ran before.
    const key = 'pc-by-name-key-0123456789';
    const own = await startPineconeStandin({ dimension: DIM, indexName: 'standin-test', apiKey: key });
    try {
      const byName = new Pinecone({ apiKey: key, controllerHostUrl: own.url, maxRetries: 0 });
      const idx = byName.index({ name: 'standin-test', namespace: 'by-name' });
      await idx.upsert({ records: [{ id: 'a', values: [1, 0, 0, 0] }] });
      await idx.fetch({ ids: ['a'] });
      await byName.index({ name: 'standin-test', namespace: 'by-name' }).fetch({ ids: ['a'] });
      const seen = own.requests.map((r) => `${r.method} ${r.path}`);
      expect(seen).toEqual(['GET /indexes/standin-test', 'POST /vectors/upsert', 'GET /vectors/fetch', 'GET /vectors/fetch']);
    } finally {
      await own.close();
    }
  });
  it('describes the index in the snake_case shape the client parses, with an http:// host', async () => {
    const model = await pc.describeIndex('standin-test');
    expect(model).toMatchObject({ name: 'standin-test', dimension: DIM, metric: 'cosine', host: standin.url, vectorType: 'dense' });
    expect(model.status).toEqual({ ready: true, state: 'Ready' });
    await expect(pc.describeIndex('nope')).rejects.toMatchObject({ name: 'PineconeNotFoundError' });
    const raw = await fetch(`${standin.url}/indexes/nope`, { headers: { 'Api-Key': API_KEY } });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toEqual({ error: { code: 'NOT_FOUND', message: 'Resource nope not found' }, status: 404 });
  });

});

describe('headers and auth', () => {
  it('every request carries Api-Key and X-Pinecone-Api-Version', async () => {
    const before = standin.requests.length;
    await index.describeIndexStats();
    const rec = standin.requests.at(-1)!;
    expect(standin.requests.length).toBe(before + 1);
    expect(rec.headers['api-key']).toBe(API_KEY);
    expect(rec.headers['x-pinecone-api-version']).toBe('2026-04');
  });

  it('a wrong key is refused with 401 in the data-plane error shape', async () => {
    const wrong = new Pinecone({ apiKey: 'wrong-key', maxRetries: 0 }).index({ host: standin.url });
    await expect(wrong.describeIndexStats()).rejects.toMatchObject({ name: 'PineconeAuthorizationError' });
    const raw = await fetch(`${standin.url}/describe_index_stats`, { method: 'POST', body: '{}' });
    expect(raw.status).toBe(401);
    expect(await raw.json()).toEqual({ code: 16, message: 'Invalid API Key', details: [] });
  });
});

describe('vectors', () => {
  beforeEach(clearAll);

  it('upserts and fetches, storing float32 values and metadata, per namespace', async () => {
    await index.upsert({
      records: [
        { id: 'v1', values: [0.1, 0.2, 0.3, 0.4], metadata: { genre: 'drama', year: 2020, tags: ['a', 'b'], ok: true } },
        { id: 'v2', values: [1, 0, 0, 0] },
      ],
      namespace: 'ns1',
    });
    const upsertReq = standin.requests.at(-1)!;
    expect(upsertReq.body).toMatchObject({ namespace: 'ns1', vectors: [{ id: 'v1' }, { id: 'v2' }] });
    const res = await index.fetch({ ids: ['v1', 'v2', 'missing'], namespace: 'ns1' });
    expect(standin.requests.at(-1)!.query).toEqual({ ids: ['v1', 'v2', 'missing'], namespace: ['ns1'] });
    expect(Object.keys(res.records).sort()).toEqual(['v1', 'v2']);
    expect(res.records['v1']!.values).toEqual([0.1, 0.2, 0.3, 0.4].map(Math.fround));
    expect(res.records['v1']!.metadata).toEqual({ genre: 'drama', year: 2020, tags: ['a', 'b'], ok: true });
    expect(res.records['v2']!.metadata).toBeUndefined();
    expect((await index.fetch({ ids: ['v1'], namespace: 'ns2' })).records).toEqual({});
    // Upsert by id replaces.
    await index.upsert({ records: [{ id: 'v2', values: [0, 1, 0, 0], metadata: { genre: 'comedy' } }], namespace: 'ns1' });
    const again = await index.fetch({ ids: ['v2'], namespace: 'ns1' });
    expect(again.records['v2']).toMatchObject({ values: [0, 1, 0, 0], metadata: { genre: 'comedy' } });
  });

  it('queries with honest cosine scores, best first, honouring topK and the include flags', async () => {
    const vectors: Record<string, number[]> = {
      a: [1, 0, 0, 0],
      b: [3, 4, 0, 0],
      c: [0, 0, 2, 0],
      d: [-1, -1, 0, 0],
      e: [1, 1, 1, 1],
    };
    await index.upsert({ records: Object.entries(vectors).map(([id, values]) => ({ id, values, metadata: { id } })), namespace: 'ns1' });
    const q = [2, 1, 0.5, 0];
    const res = await index.query({ vector: q, topK: 3, namespace: 'ns1', includeMetadata: true });
    expect(standin.requests.at(-1)!.body).toEqual({ namespace: 'ns1', topK: 3, includeMetadata: true, vector: q });
    const expected = Object.entries(vectors)
      .map(([id, v]) => ({ id, score: cosine(q, v) }))
      .sort((x, y) => y.score - x.score)
      .slice(0, 3);
    expect(res.matches.map((m) => m.id)).toEqual(expected.map((e) => e.id));
    res.matches.forEach((m, i) => {
      expect(m.score).toBeCloseTo(expected[i]!.score, 5);
      expect(m.metadata).toEqual({ id: m.id });
      expect(m.values).toEqual([]);
    });
    const withValues = await index.query({ vector: q, topK: 1, namespace: 'ns1', includeValues: true });
    expect(withValues.matches[0]!.values).toEqual(vectors[expected[0]!.id]);
    expect(withValues.matches[0]!.metadata).toBeUndefined();
    // Query by a stored id uses that vector.
    const byId = await index.query({ id: 'c', topK: 1, namespace: 'ns1' });
    expect(byId.matches[0]).toMatchObject({ id: 'c' });
    expect(byId.matches[0]!.score).toBeCloseTo(1, 6);
    // An unknown namespace answers no matches.
    expect((await index.query({ vector: q, topK: 3, namespace: 'nowhere' })).matches).toEqual([]);
  });

  it('evaluates the metadata filter language', async () => {
    const meta: Record<string, Record<string, string | number | boolean | string[]>> = {
      r1: { genre: 'drama', year: 2019, tags: ['x', 'y'], fresh: true },
      r2: { genre: 'comedy', year: 2020, tags: ['y'] },
      r3: { genre: 'drama', year: 2021, fresh: false },
      r4: { genre: 'horror', year: 2022, tags: ['z'] },
      r5: { year: 2023 },
    };
    await index.upsert({
      records: Object.entries(meta).map(([id, metadata], i) => ({ id, values: [1, i + 1, 0, 0], metadata })),
      namespace: 'ns1',
    });
    const ids = async (filter: object) =>
      (await index.query({ vector: [1, 1, 1, 1], topK: 100, namespace: 'ns1', filter })).matches.map((m) => m.id).sort();
    expect(await ids({ genre: 'drama' })).toEqual(['r1', 'r3']);
    expect(await ids({ genre: { $eq: 'drama' } })).toEqual(['r1', 'r3']);
    expect(await ids({ genre: { $ne: 'drama' } })).toEqual(['r2', 'r4', 'r5']);
    expect(await ids({ year: { $gt: 2020 } })).toEqual(['r3', 'r4', 'r5']);
    expect(await ids({ year: { $gte: 2020, $lt: 2022 } })).toEqual(['r2', 'r3']);
    expect(await ids({ year: { $lte: 2019 } })).toEqual(['r1']);
    expect(await ids({ genre: { $in: ['comedy', 'horror'] } })).toEqual(['r2', 'r4']);
    expect(await ids({ genre: { $nin: ['comedy', 'horror'] } })).toEqual(['r1', 'r3', 'r5']);
    expect(await ids({ tags: 'y' })).toEqual(['r1', 'r2']);
    expect(await ids({ tags: { $in: ['x', 'z'] } })).toEqual(['r1', 'r4']);
    expect(await ids({ tags: { $nin: ['y'] } })).toEqual(['r3', 'r4', 'r5']);
    expect(await ids({ fresh: { $exists: true } })).toEqual(['r1', 'r3']);
    expect(await ids({ fresh: { $exists: false } })).toEqual(['r2', 'r4', 'r5']);
    expect(await ids({ fresh: true })).toEqual(['r1']);
    expect(await ids({ $or: [{ genre: 'comedy' }, { year: { $gte: 2022 } }] })).toEqual(['r2', 'r4', 'r5']);
    expect(await ids({ $and: [{ genre: 'drama' }, { $or: [{ fresh: false }, { year: 2019 }] }] })).toEqual(['r1', 'r3']);
    expect(await ids({ genre: 'drama', year: 2021 })).toEqual(['r3']);
    expect(await ids({ genre: 'western' })).toEqual([]);

    for (const broken of [{ $foo: 1 }, { year: { $gt: 'x' } }, { genre: { $in: 'drama' } }, { genre: ['drama'] }, { $or: [] }, { year: { $near: 1 } }]) {
      await expect(index.query({ vector: [1, 1, 1, 1], topK: 1, namespace: 'ns1', filter: broken })).rejects.toMatchObject({
        name: 'PineconeBadRequestError',
        message: expect.stringMatching(/filter/i),
      });
    }
  });

  it('lists ids in byte order with prefix, limit and pagination tokens', async () => {
    const all = ['b-2', 'a-1', 'B-0', 'a-10', 'a-2', 'é', 'z', 'a-3'];
    await index.upsert({ records: all.map((id) => ({ id, values: [1, 0, 0, 1] })), namespace: 'ns1' });
    const sorted = [...all].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(sorted).toEqual(['B-0', 'a-1', 'a-10', 'a-2', 'a-3', 'b-2', 'z', 'é']);
    const first = await index.listPaginated({ namespace: 'ns1' });
    expect(first.vectors!.map((v) => v.id)).toEqual(sorted);
    expect(first.pagination).toBeUndefined();

    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await index.listPaginated({ namespace: 'ns1', limit: 3, ...(token ? { paginationToken: token } : {}) });
      seen.push(...page.vectors!.map((v) => v.id!));
      token = page.pagination?.next;
      pages++;
    } while (token);
    expect(seen).toEqual(sorted);
    expect(pages).toBe(3);
    expect(standin.requests.at(-1)!.query).toMatchObject({ namespace: ['ns1'], limit: ['3'] });

    const prefixed = await index.listPaginated({ namespace: 'ns1', prefix: 'a-', limit: 2 });
    expect(prefixed.vectors!.map((v) => v.id)).toEqual(['a-1', 'a-10']);
    const rest = await index.listPaginated({ namespace: 'ns1', prefix: 'a-', paginationToken: prefixed.pagination!.next });
    expect(rest.vectors!.map((v) => v.id)).toEqual(['a-2', 'a-3']);
    await expect(index.listPaginated({ namespace: 'ns1', limit: 101 })).rejects.toMatchObject({ name: 'PineconeBadRequestError' });
    await expect(index.listPaginated({ namespace: 'ns1', paginationToken: 'garbage!' })).rejects.toMatchObject({ name: 'PineconeBadRequestError' });
  });

  it('fetches by metadata with pagination', async () => {
    await index.upsert({
      records: Array.from({ length: 7 }, (_, i) => ({ id: `m${i}`, values: [1, 0, 0, i], metadata: { owner: i % 2 ? 'odd' : 'even' } })),
      namespace: 'ns1',
    });
    const first = await index.fetchByMetadata({ namespace: 'ns1', filter: { owner: { $eq: 'even' } }, limit: 3 });
    expect(standin.requests.at(-1)!.body).toEqual({ namespace: 'ns1', filter: { owner: { $eq: 'even' } }, limit: 3 });
    expect(Object.keys(first.records)).toEqual(['m0', 'm2', 'm4']);
    const second = await index.fetchByMetadata({ namespace: 'ns1', filter: { owner: { $eq: 'even' } }, limit: 3, paginationToken: first.pagination!.next });
    expect(Object.keys(second.records)).toEqual(['m6']);
    expect(second.pagination).toBeUndefined();
  });

  it('deletes by ids, by filter and all, and reports stats per namespace', async () => {
    await index.upsert({
      records: Array.from({ length: 6 }, (_, i) => ({ id: `d${i}`, values: [1, i, 0, 0], metadata: { conv: i < 3 ? 'c1' : 'c2' } })),
      namespace: 'ns1',
    });
    await index.upsert({ records: [{ id: 'other', values: [0, 0, 0, 1] }], namespace: 'ns2' });
    let stats = await index.describeIndexStats();
    expect(stats).toMatchObject({ dimension: DIM, totalRecordCount: 7, namespaces: { ns1: { recordCount: 6 }, ns2: { recordCount: 1 } } });

    await index.deleteMany({ ids: ['d0', 'missing'], namespace: 'ns1' });
    expect(standin.requests.at(-1)!.body).toEqual({ ids: ['d0', 'missing'], namespace: 'ns1' });
    await index.deleteMany({ filter: { conv: { $eq: 'c2' } }, namespace: 'ns1' });
    expect(standin.records('ns1').map((r) => r.id)).toEqual(['d1', 'd2']);
    await index.deleteAll({ namespace: 'ns1' });
    expect(standin.requests.at(-1)!.body).toEqual({ deleteAll: true, namespace: 'ns1' });
    stats = await index.describeIndexStats();
    expect(stats.namespaces).toEqual({ ns2: { recordCount: 1 } });
    expect(standin.namespaces()).toContain('ns2');

    // Serverless answers 404 for a namespace that holds nothing.
    await expect(index.deleteAll({ namespace: 'ns1' })).rejects.toMatchObject({ name: 'PineconeNotFoundError' });
    const raw = await fetch(`${standin.url}/vectors/delete`, {
      method: 'POST',
      headers: { 'Api-Key': API_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ids: ['x'], namespace: 'ns1' }),
    });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toEqual({ code: 5, message: 'Namespace not found', details: [] });
    await expect(index.describeIndexStats({ filter: { a: 'b' } })).rejects.toMatchObject({ name: 'PineconeBadRequestError' });
  });

  it('updates metadata by id and by filter', async () => {
    await index.upsert({
      records: [
        { id: 'u1', values: [1, 0, 0, 0], metadata: { a: 'x', keep: 1 } },
        { id: 'u2', values: [0, 1, 0, 0], metadata: { a: 'y' } },
      ],
      namespace: 'ns1',
    });
    await index.update({ id: 'u1', metadata: { a: 'z' }, namespace: 'ns1' });
    expect(standin.requests.at(-1)!.body).toEqual({ id: 'u1', setMetadata: { a: 'z' }, namespace: 'ns1' });
    await index.update({ filter: { a: { $eq: 'y' } }, metadata: { b: true }, namespace: 'ns1' });
    expect(standin.records('ns1').map((r) => r.metadata)).toEqual([{ a: 'z', keep: 1 }, { a: 'y', b: true }]);
  });

  it('enforces the documented limits with 400s', async () => {
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['dimension', () => index.upsert({ records: [{ id: 'x', values: [1, 2, 3] }], namespace: 'ns1' }), /dimension 3 does not match the dimension of the index 4/],
      ['zero vector', () => index.upsert({ records: [{ id: 'x', values: [0, 0, 0, 0] }], namespace: 'ns1' }), /non-zero/],
      ['metadata size', () => index.upsert({ records: [{ id: 'x', values: [1, 0, 0, 0], metadata: { t: 'é'.repeat(21_000) } }], namespace: 'ns1' }), /exceeds the limit of 40960 bytes/],
      ['id length', () => index.upsert({ records: [{ id: 'x'.repeat(513), values: [1, 0, 0, 0] }], namespace: 'ns1' }), /at most 512/],
      ['query dimension', () => index.query({ vector: [1, 0], topK: 1, namespace: 'ns1' }), /dimension 2/],
      ['topK', () => index.query({ vector: [1, 0, 0, 0], topK: 10_001, namespace: 'ns1' }), /topK/],
    ];
    for (const [, run, message] of cases) {
      await expect(run()).rejects.toMatchObject({ name: 'PineconeBadRequestError', message: expect.stringMatching(message) });
    }
    expect(standin.records('ns1')).toEqual([]);
  });
});

describe('fault injection', () => {
  it('fails the next requests with a 5xx: no retry at maxRetries 0, retried and recovered at maxRetries 2', async () => {
    let before = standin.requests.length;
    standin.failNext(1, { status: 503 });
    await expect(index.describeIndexStats()).rejects.toMatchObject({ name: 'PineconeMaxRetriesExceededError' });
    expect(standin.requests.length - before).toBe(1);

    const retrying = new Pinecone({ apiKey: API_KEY, maxRetries: 2 }).index({ host: standin.url });
    before = standin.requests.length;
    standin.failNext(2, { status: 500, path: '/describe_index_stats' });
    const stats = await retrying.describeIndexStats();
    expect(stats.dimension).toBe(DIM);
    expect(standin.requests.slice(before).map((r) => r.path)).toEqual(Array(3).fill('/describe_index_stats'));

    const raw = await (async () => {
      standin.failNext(1, { status: 500, message: 'boom' });
      return fetch(`${standin.url}/query`, { method: 'POST', headers: { 'Api-Key': API_KEY }, body: '{}' });
    })();
    expect(raw.status).toBe(500);
    expect(await raw.json()).toEqual({ code: 13, message: 'boom', details: [] });
  });

  it('hangs the next request until the client gives up', async () => {
    const timed = new Pinecone({
      apiKey: API_KEY,
      maxRetries: 0,
      fetchApi: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(200) }),
    }).index({ host: standin.url });
    standin.hangNext(1);
    const started = Date.now();
    const pending = timed.describeIndexStats();
    await expect(pending).rejects.toMatchObject({ name: 'PineconeConnectionError' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    // The stand-in held the request open until the client closed it.
    await expect.poll(() => standin.hanging).toBe(0);
    expect((await timed.describeIndexStats()).dimension).toBe(DIM);
  });
});
