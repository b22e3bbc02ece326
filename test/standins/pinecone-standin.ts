/**
 * Local stand-in for one Pinecone serverless index, speaking the REST wire format exactly as
 * `@pinecone-database/pinecone` 8.2 sends and parses it (API version 2026-04), so the real
 * client can be pointed at it: `pc.index({ host: standin.url })`, or by name with
 * `new Pinecone({ controllerHostUrl: standin.url })`.
 *
 * Control plane: `GET /indexes/:name` (snake_case IndexModel; its `host` carries `http://`).
 * Data plane (camelCase JSON, headers `Api-Key` and `X-Pinecone-Api-Version`):
 *  - `POST /vectors/upsert {vectors, namespace}` → `{upsertedCount}`
 *  - `POST /query {namespace, topK, vector | id, filter, includeValues, includeMetadata}` →
 *    `{results: [], matches: [{id, score, values, metadata}], namespace, usage}`
 *  - `POST /vectors/delete {ids | filter | deleteAll, namespace}` → `{}`; a namespace that holds
 *    nothing answers 404 "Namespace not found", as serverless indexes do
 *  - `GET /vectors/fetch?ids=a&ids=b&namespace=` → `{vectors: {id: {id, values, metadata}}, namespace, usage}`
 *  - `POST /vectors/fetch_by_metadata {namespace, filter, limit, paginationToken}` → like fetch, plus `pagination`
 *  - `GET /vectors/list?namespace=&prefix=&limit=&paginationToken=` → `{vectors: [{id}], pagination?: {next}, namespace, usage}`
 *    in byte order of the ids; `pagination` only while more ids remain
 *  - `POST /vectors/update {id | filter, values, setMetadata, namespace}` → `{}` or `{matchedRecords}`
 *  - `POST /describe_index_stats {}` → `{namespaces: {ns: {vectorCount}}, dimension, indexFullness, totalVectorCount, metric, vectorType}`
 *
 * Scores are real: cosine similarity (or dot product, or squared euclidean distance, by the
 * index's metric) over values stored as float32, as Pinecone stores them. Metadata filters
 * are evaluated, not ignored: `$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or` and bare
 * values (equality); a list-of-strings field matches `$eq`/`$in` when any element does. A field
 * that is missing matches `$ne` and `$nin` (MongoDB semantics, which Pinecone's language follows).
 * Limits are enforced as documented: 1000 vectors and 2 MB per upsert, 40 KB metadata per
 * vector, ids up to 512 characters, topK up to 10 000, list pages up to 100, 1000 ids per fetch.
 * Errors use Pinecone's JSON shapes: `{code, message, details}` (gRPC status codes) on the data
 * plane, `{error: {code, message}, status}` on the control plane.
 *
 * Not implemented: sparse vectors, multiple queries per request, integrated records
 * (`/records/...`), imports, namespace management, pod indexes, eventual consistency (every
 * write is visible at once).
 *
 * Every request is recorded (method, path, query, headers, parsed body). `failNext` answers
 * the next requests with a 5xx (or any status) and `hangNext` never answers them, for the
 * client's retry and timeout paths.
 */
import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Metric = 'cosine' | 'dotproduct' | 'euclidean';
export type MetadataValue = string | number | boolean | string[];
export type Metadata = Record<string, MetadataValue>;

export interface StoredVector {
  id: string;
  /** As stored: rounded to float32. */
  values: number[];
  metadata?: Metadata;
}

export interface PineconeRequest {
  method: string;
  path: string;
  /** Query parameters; repeated ones (`ids`) keep every value in order. */
  query: Record<string, string[]>;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body; raw text if it was not JSON; undefined if empty. */
  body: unknown;
}

export interface PineconeStandinOptions {
  dimension: number;
  /** Default `memory`. */
  indexName?: string;
  /** Default `cosine`. */
  metric?: Metric;
  /** When set, every request must carry it in `Api-Key`. */
  apiKey?: string;
}

export interface PineconeStandin {
  /** Origin of both planes: data-plane host and control-plane URL. */
  readonly url: string;
  readonly indexName: string;
  readonly dimension: number;
  readonly requests: PineconeRequest[];
  /** Answers the next `count` requests (those whose path starts with `path`, if given) with `status`, default 503. */
  failNext(count: number, options?: { status?: number; message?: string; path?: string }): void;
  /** Never answers the next `count` requests (matching `path`, if given); the client must give up itself. */
  hangNext(count: number, options?: { path?: string }): void;
  /** Forgets every pending failNext/hangNext. */
  resetFaults(): void;
  /** Requests that are hanging right now. */
  readonly hanging: number;
  /** Namespaces that hold vectors, sorted. */
  namespaces(): string[];
  /** The vectors of a namespace, in id byte order. */
  records(namespace: string): StoredVector[];
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 2 * 1024 * 1024;
const MAX_METADATA_BYTES = 40_960;
const MAX_ID_LENGTH = 512;
const MAX_UPSERT = 1000;
const MAX_TOP_K = 10_000;
const MAX_FETCH_IDS = 1000;
const MAX_LIST_LIMIT = 100;
const MAX_FETCH_BY_METADATA_LIMIT = 10_000;
const MAX_IN_VALUES = 10_000;
const DEFAULT_NAMESPACE = '__default__';

/** gRPC status codes, as the data plane reports them in `code`. */
function grpcCode(status: number): number {
  switch (status) {
    case 400:
      return 3; // INVALID_ARGUMENT
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 5; // NOT_FOUND
    case 409:
      return 6; // ALREADY_EXISTS
    case 429:
      return 8; // RESOURCE_EXHAUSTED
    case 501:
      return 12; // UNIMPLEMENTED
    case 503:
      return 14; // UNAVAILABLE
    default:
      return status >= 500 ? 13 : 2; // INTERNAL : UNKNOWN
  }
}

function controlCode(status: number): string {
  switch (status) {
    case 400:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'ALREADY_EXISTS';
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 503:
      return 'UNAVAILABLE';
    default:
      return status >= 500 ? 'INTERNAL' : 'UNKNOWN';
  }
}

function defaultMessage(status: number): string {
  if (status === 401) return 'Invalid API Key';
  if (status === 429) return 'Request failed. You have exceeded your request rate limit.';
  if (status === 503) return 'Service Unavailable';
  if (status >= 500) return 'Internal Server Error';
  return `Request failed with status ${status}`;
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const bad = (message: string) => new ApiError(400, message);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Metadata filters
// ---------------------------------------------------------------------------------------------

type Predicate = (meta: Metadata | undefined) => boolean;
type Scalar = string | number | boolean;

const isScalar = (v: unknown): v is Scalar => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));

function fieldPredicate(field: string, op: string, operand: unknown): Predicate {
  const value = (meta: Metadata | undefined): MetadataValue | undefined => meta?.[field];
  switch (op) {
    case '$eq':
    case '$ne': {
      if (!isScalar(operand)) throw bad(`Invalid filter: ${op} on "${field}" needs a string, number or boolean`);
      const eq = (meta: Metadata | undefined) => {
        const v = value(meta);
        return v !== undefined && (Array.isArray(v) ? v.includes(operand as string) : v === operand);
      };
      return op === '$eq' ? eq : (meta) => !eq(meta);
    }
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte': {
      if (typeof operand !== 'number' || !Number.isFinite(operand)) throw bad(`Invalid filter: ${op} on "${field}" needs a number`);
      const cmp = { $gt: (a: number) => a > operand, $gte: (a: number) => a >= operand, $lt: (a: number) => a < operand, $lte: (a: number) => a <= operand }[op];
      return (meta) => {
        const v = value(meta);
        return typeof v === 'number' && cmp(v);
      };
    }
    case '$in':
    case '$nin': {
      if (!Array.isArray(operand) || !operand.every(isScalar)) throw bad(`Invalid filter: ${op} on "${field}" needs an array of strings, numbers or booleans`);
      if (operand.length > MAX_IN_VALUES) throw bad(`Invalid filter: ${op} on "${field}" has more than ${MAX_IN_VALUES} values`);
      const set = new Set<unknown>(operand);
      const any = (meta: Metadata | undefined) => {
        const v = value(meta);
        return v !== undefined && (Array.isArray(v) ? v.some((e) => set.has(e)) : set.has(v));
      };
      return op === '$in' ? any : (meta) => !any(meta);
    }
    case '$exists': {
      if (typeof operand !== 'boolean') throw bad(`Invalid filter: $exists on "${field}" needs a boolean`);
      return (meta) => (value(meta) !== undefined) === operand;
    }
    default:
      throw bad(`Invalid filter: unknown operator ${op} on "${field}"`);
  }
}

/** Compiles a Pinecone metadata filter; throws a 400 ApiError when the filter is malformed. */
export function compileFilter(filter: unknown): Predicate {
  if (!isPlainObject(filter)) throw bad('Invalid filter: a filter must be an object');
  const parts: Predicate[] = [];
  for (const [key, cond] of Object.entries(filter)) {
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(cond) || cond.length === 0) throw bad(`Invalid filter: ${key} needs a non-empty array of filters`);
      const subs = cond.map(compileFilter);
      parts.push(key === '$and' ? (m) => subs.every((p) => p(m)) : (m) => subs.some((p) => p(m)));
    } else if (key.startsWith('$')) {
      throw bad(`Invalid filter: unknown operator ${key}`);
    } else if (isScalar(cond)) {
      parts.push(fieldPredicate(key, '$eq', cond));
    } else if (isPlainObject(cond) && Object.keys(cond).length > 0) {
      for (const [op, operand] of Object.entries(cond)) parts.push(fieldPredicate(key, op, operand));
    } else {
      throw bad(`Invalid filter: the condition on "${key}" must be a value or an object of operators`);
    }
  }
  return (meta) => parts.every((p) => p(meta));
}

// ---------------------------------------------------------------------------------------------
// The index
// ---------------------------------------------------------------------------------------------

function score(metric: Metric, a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  let dist = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
    dist += (x - y) * (x - y);
  }
  if (metric === 'dotproduct') return Math.fround(dot);
  if (metric === 'euclidean') return Math.fround(dist);
  return Math.fround(dot / (Math.sqrt(na) * Math.sqrt(nb)));
}

function encodeToken(after: string): string {
  return Buffer.from(JSON.stringify({ after }), 'utf8').toString('base64');
}

function decodeToken(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as unknown;
    if (isPlainObject(parsed) && typeof parsed['after'] === 'string') return parsed['after'];
  } catch {
    // fall through
  }
  throw bad('Invalid pagination token');
}

function namespaceOf(v: unknown): string {
  return typeof v === 'string' && v !== '' ? v : DEFAULT_NAMESPACE;
}

class IndexState {
  readonly spaces = new Map<string, Map<string, StoredVector>>();

  constructor(
    readonly dimension: number,
    readonly metric: Metric,
  ) {}

  sorted(namespace: string): StoredVector[] {
    return [...(this.spaces.get(namespace)?.values() ?? [])].sort((a, b) => byteCompare(a.id, b.id));
  }

  values(v: unknown, what: string): number[] {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad(`${what}: values must be an array of numbers`);
    if (v.length !== this.dimension) throw bad(`Vector dimension ${v.length} does not match the dimension of the index ${this.dimension}`);
    if (this.metric === 'cosine' && v.every((x) => x === 0)) throw bad('Dense vectors must contain at least one non-zero value.');
    return (v as number[]).map((x) => Math.fround(x));
  }

  metadata(v: unknown, id: string): Metadata | undefined {
    if (v === undefined) return undefined;
    if (!isPlainObject(v)) throw bad(`Metadata of vector ${id} must be an object`);
    for (const [k, value] of Object.entries(v)) {
      const ok = isScalar(value) || (Array.isArray(value) && value.every((e) => typeof e === 'string'));
      if (!ok) throw bad(`Metadata value for field "${k}" of vector ${id} must be a string, number, boolean or list of strings`);
    }
    const size = Buffer.byteLength(JSON.stringify(v), 'utf8');
    if (size > MAX_METADATA_BYTES) throw bad(`Metadata size is ${size} bytes, which exceeds the limit of ${MAX_METADATA_BYTES} bytes per vector`);
    return v as Metadata;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

interface Fault {
  remaining: number;
  path: string | undefined;
}

export async function startPineconeStandin(options: PineconeStandinOptions): Promise<PineconeStandin> {
  const indexName = options.indexName ?? 'memory';
  const metric = options.metric ?? 'cosine';
  const index = new IndexState(options.dimension, metric);
  const requests: PineconeRequest[] = [];
  const failures: (Fault & { status: number; message: string | undefined })[] = [];
  const hangs: Fault[] = [];
  const hangingResponses = new Set<ServerResponse>();
  let url = '';

  const takeFault = <F extends Fault>(list: F[], path: string): F | undefined => {
    const f = list.find((x) => x.remaining > 0 && (x.path === undefined || path.startsWith(x.path)));
    if (!f) return undefined;
    f.remaining--;
    if (f.remaining === 0) list.splice(list.indexOf(f), 1);
    return f;
  };

  const isControl = (path: string) => path.startsWith('/indexes');

  const sendError = (res: ServerResponse, path: string, status: number, message: string) => {
    if (isControl(path)) send(res, status, { error: { code: controlCode(status), message }, status });
    else send(res, status, { code: grpcCode(status), message, details: [] });
  };

  const describeIndex = (name: string) => {
    if (name !== indexName) throw new ApiError(404, `Resource ${name} not found`);
    return {
      name: indexName,
      vector_type: 'dense',
      metric,
      dimension: index.dimension,
      status: { ready: true, state: 'Ready' },
      host: url,
      spec: { serverless: { region: 'us-east-1', cloud: 'aws', read_capacity: { mode: 'OnDemand', status: { state: 'Ready' } } } },
      deletion_protection: 'disabled',
      tags: null,
    };
  };

  const body = (rec: PineconeRequest): Record<string, unknown> => {
    if (!isPlainObject(rec.body)) throw bad('The request body must be a JSON object');
    return rec.body;
  };

  const upsert = (rec: PineconeRequest) => {
    const b = body(rec);
    const vectors = b['vectors'];
    if (!Array.isArray(vectors) || vectors.length === 0) throw bad('vectors: at least one vector is required');
    if (vectors.length > MAX_UPSERT) throw bad(`Upsert of ${vectors.length} vectors exceeds the limit of ${MAX_UPSERT} vectors per request`);
    const parsed = vectors.map((v: unknown): StoredVector => {
      if (!isPlainObject(v)) throw bad('Every vector must be an object');
      const id = v['id'];
      if (typeof id !== 'string' || id.length === 0) throw bad('Every vector needs a non-empty string id');
      if (id.length > MAX_ID_LENGTH) throw bad(`Vector id must be at most ${MAX_ID_LENGTH} characters long`);
      const metadata = index.metadata(v['metadata'], id);
      return { id, values: index.values(v['values'], `Vector ${id}`), ...(metadata ? { metadata } : {}) };
    });
    const ns = namespaceOf(b['namespace']);
    const space = index.spaces.get(ns) ?? new Map<string, StoredVector>();
    for (const v of parsed) space.set(v.id, v);
    index.spaces.set(ns, space);
    return { upsertedCount: parsed.length };
  };

  const query = (rec: PineconeRequest) => {
    const b = body(rec);
    const topK = b['topK'];
    if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) throw bad(`topK must be an integer from 1 to ${MAX_TOP_K}`);
    if (b['queries'] !== undefined) throw bad('Multiple queries per request are not supported by this index');
    const ns = namespaceOf(b['namespace']);
    const space = index.spaces.get(ns);
    let vector: number[] | undefined;
    if (b['vector'] !== undefined && b['id'] !== undefined) throw bad('Provide either vector or id, not both');
    if (b['vector'] !== undefined) vector = index.values(b['vector'], 'Query vector');
    else if (typeof b['id'] === 'string') vector = space?.get(b['id'])?.values;
    else throw bad('A query needs a vector or an id');
    const keep = b['filter'] === undefined ? () => true : compileFilter(b['filter']);
    const includeValues = b['includeValues'] === true;
    const includeMetadata = b['includeMetadata'] === true;
    const scored = vector
      ? [...(space?.values() ?? [])].filter((v) => keep(v.metadata)).map((v) => ({ v, score: score(metric, vector, v.values) }))
      : [];
    const better = metric === 'euclidean' ? (a: number, b2: number) => a - b2 : (a: number, b2: number) => b2 - a;
    scored.sort((x, y) => better(x.score, y.score) || byteCompare(x.v.id, y.v.id));
    const matches = scored.slice(0, topK).map(({ v, score: s }) => ({
      id: v.id,
      score: s,
      values: includeValues ? v.values : [],
      ...(includeMetadata && v.metadata ? { metadata: v.metadata } : {}),
    }));
    return { results: [], matches, namespace: ns, usage: { readUnits: Math.max(1, Math.ceil((space?.size ?? 0) / 1000)) } };
  };

  const del = (rec: PineconeRequest) => {
    const b = body(rec);
    const forms = ['ids', 'filter', 'deleteAll'].filter((k) => b[k] !== undefined && b[k] !== false);
    if (forms.length !== 1) throw bad('Provide exactly one of ids, filter or deleteAll');
    const ns = namespaceOf(b['namespace']);
    const space = index.spaces.get(ns);
    if (!space || space.size === 0) throw new ApiError(404, 'Namespace not found');
    if (b['deleteAll'] !== undefined) {
      if (b['deleteAll'] !== true) throw bad('deleteAll must be true');
      index.spaces.delete(ns);
      return {};
    }
    if (b['ids'] !== undefined) {
      const ids = b['ids'];
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((id) => typeof id === 'string')) throw bad('ids must be a non-empty array of strings');
      if (ids.length > MAX_FETCH_IDS) throw bad(`Delete of ${ids.length} ids exceeds the limit of ${MAX_FETCH_IDS} per request`);
      for (const id of ids as string[]) space.delete(id);
    } else {
      const keep = compileFilter(b['filter']);
      if (Object.keys(b['filter'] as object).length === 0) throw bad('Invalid filter: a delete filter cannot be empty');
      for (const [id, v] of space) if (keep(v.metadata)) space.delete(id);
    }
    if (space.size === 0) index.spaces.delete(ns);
    return {};
  };

  const fetchResult = (ns: string, vectors: StoredVector[], extra: Record<string, unknown> = {}) => ({
    vectors: Object.fromEntries(vectors.map((v) => [v.id, { id: v.id, values: v.values, ...(v.metadata ? { metadata: v.metadata } : {}) }])),
    namespace: ns,
    usage: { readUnits: 1 },
    ...extra,
  });

  const fetchIds = (rec: PineconeRequest) => {
    const ids = rec.query['ids'] ?? [];
    if (ids.length === 0) throw bad('ids: at least one id is required');
    if (ids.length > MAX_FETCH_IDS) throw bad(`Fetch of ${ids.length} ids exceeds the limit of ${MAX_FETCH_IDS} per request`);
    const ns = namespaceOf(rec.query['namespace']?.at(-1));
    const space = index.spaces.get(ns);
    const found = ids.map((id) => space?.get(id)).filter((v): v is StoredVector => v !== undefined);
    return fetchResult(ns, found);
  };

  const page = (all: StoredVector[], limit: number, token: string | undefined) => {
    const after = decodeToken(token);
    const start = after === undefined ? 0 : all.findIndex((v) => byteCompare(v.id, after) > 0);
    const rest = start < 0 ? [] : all.slice(start);
    const items = rest.slice(0, limit);
    const last = items.at(-1);
    return { items, next: rest.length > limit && last ? encodeToken(last.id) : undefined };
  };

  const intParam = (raw: unknown, fallback: number, max: number, what: string): number => {
    if (raw === undefined) return fallback;
    const n = typeof raw === 'string' ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) throw bad(`${what} must be an integer from 1 to ${max}`);
    return n;
  };

  const fetchByMetadata = (rec: PineconeRequest) => {
    const b = body(rec);
    if (b['filter'] === undefined) throw bad('filter is required');
    const keep = compileFilter(b['filter']);
    const limit = intParam(b['limit'], 100, MAX_FETCH_BY_METADATA_LIMIT, 'limit');
    const ns = namespaceOf(b['namespace']);
    const token = typeof b['paginationToken'] === 'string' ? b['paginationToken'] : undefined;
    const { items, next } = page(
      index.sorted(ns).filter((v) => keep(v.metadata)),
      limit,
      token,
    );
    return fetchResult(ns, items, next ? { pagination: { next } } : {});
  };

  const list = (rec: PineconeRequest) => {
    const ns = namespaceOf(rec.query['namespace']?.at(-1));
    const prefix = rec.query['prefix']?.at(-1) ?? '';
    const limit = intParam(rec.query['limit']?.at(-1), 100, MAX_LIST_LIMIT, 'limit');
    const { items, next } = page(
      index.sorted(ns).filter((v) => v.id.startsWith(prefix)),
      limit,
      rec.query['paginationToken']?.at(-1),
    );
    return {
      vectors: items.map((v) => ({ id: v.id })),
      ...(next ? { pagination: { next } } : {}),
      namespace: ns,
      usage: { readUnits: 1 },
    };
  };

  const update = (rec: PineconeRequest) => {
    const b = body(rec);
    const hasId = typeof b['id'] === 'string' && b['id'] !== '';
    if (hasId === (b['filter'] !== undefined)) throw bad('Provide exactly one of id or filter');
    const ns = namespaceOf(b['namespace']);
    const space = index.spaces.get(ns);
    const values = b['values'] === undefined ? undefined : index.values(b['values'], 'Update');
    const targets = hasId
      ? [space?.get(b['id'] as string)].filter((v): v is StoredVector => v !== undefined)
      : (() => {
          const keep = compileFilter(b['filter']);
          return [...(space?.values() ?? [])].filter((v) => keep(v.metadata));
        })();
    const set = b['setMetadata'];
    for (const v of targets) {
      const metadata = set === undefined ? v.metadata : index.metadata({ ...v.metadata, ...(set as object) }, v.id);
      space!.set(v.id, { id: v.id, values: values ?? v.values, ...(metadata ? { metadata } : {}) });
    }
    return hasId ? {} : { matchedRecords: targets.length };
  };

  const stats = (rec: PineconeRequest) => {
    if (isPlainObject(rec.body) && rec.body['filter'] !== undefined) {
      throw bad('Serverless and starter indexes do not support describing index stats with metadata filtering.');
    }
    const namespaces: Record<string, { vectorCount: number }> = {};
    let total = 0;
    for (const [ns, space] of index.spaces) {
      if (space.size === 0) continue;
      namespaces[ns] = { vectorCount: space.size };
      total += space.size;
    }
    return { namespaces, dimension: index.dimension, indexFullness: 0, totalVectorCount: total, metric, vectorType: 'dense' };
  };

  const routes: Record<string, (rec: PineconeRequest) => unknown> = {
    'POST /vectors/upsert': upsert,
    'POST /query': query,
    'POST /vectors/delete': del,
    'GET /vectors/fetch': fetchIds,
    'POST /vectors/fetch_by_metadata': fetchByMetadata,
    'GET /vectors/list': list,
    'POST /vectors/update': update,
    'POST /describe_index_stats': stats,
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    const parsedUrl = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string[]> = {};
    for (const [k, v] of parsedUrl.searchParams) (query[k] ??= []).push(v);
    let parsedBody: unknown;
    if (raw.length > 0) {
      const text = raw.toString('utf8');
      try {
        parsedBody = JSON.parse(text) as unknown;
      } catch {
        parsedBody = text;
      }
    }
    const rec: PineconeRequest = { method: req.method ?? 'GET', path: parsedUrl.pathname, query, headers: req.headers, body: parsedBody };
    requests.push(rec);

    if (takeFault(hangs, rec.path)) {
      hangingResponses.add(res);
      res.on('close', () => hangingResponses.delete(res));
      return;
    }
    const failure = takeFault(failures, rec.path);
    if (failure) return sendError(res, rec.path, failure.status, failure.message ?? defaultMessage(failure.status));
    if (options.apiKey !== undefined && req.headers['api-key'] !== options.apiKey) return sendError(res, rec.path, 401, defaultMessage(401));
    if (raw.length > MAX_BODY_BYTES) {
      return sendError(res, rec.path, 400, `Request size ${(raw.length / 1024 / 1024).toFixed(1)}MB exceeds the maximum supported size of 2MB`);
    }
    if (typeof rec.body === 'string') return sendError(res, rec.path, 400, 'Invalid JSON in the request body');

    try {
      const controlMatch = /^\/indexes\/([^/]+)$/.exec(rec.path);
      if (controlMatch) {
        if (rec.method !== 'GET') throw new ApiError(405, 'Method Not Allowed');
        return send(res, 200, describeIndex(decodeURIComponent(controlMatch[1]!)));
      }
      const route = routes[`${rec.method} ${rec.path}`];
      if (!route) {
        const known = Object.keys(routes).some((r) => r.endsWith(` ${rec.path}`));
        throw new ApiError(known ? 405 : 404, known ? 'Method Not Allowed' : 'Not Found');
      }
      return send(res, 200, route(rec));
    } catch (err) {
      if (err instanceof ApiError) return sendError(res, rec.path, err.status, err.message);
      return sendError(res, rec.path, 500, `stand-in failure: ${String(err)}`);
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    indexName,
    dimension: options.dimension,
    requests,
    failNext(count, opts) {
      failures.push({ remaining: count, path: opts?.path, status: opts?.status ?? 503, message: opts?.message });
    },
    hangNext(count, opts) {
      hangs.push({ remaining: count, path: opts?.path });
    },
    resetFaults() {
      failures.length = 0;
      hangs.length = 0;
    },
    get hanging() {
      return hangingResponses.size;
    },
    namespaces() {
      return [...index.spaces.keys()].filter((ns) => (index.spaces.get(ns)?.size ?? 0) > 0).sort(byteCompare);
    },
    records(namespace) {
      return index.sorted(namespace);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
