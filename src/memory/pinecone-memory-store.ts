import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { Pinecone, type Index, type PineconeRecord } from '@pinecone-database/pinecone';
import type { Page } from '../stores/conversation-store.js';
import { InvalidCursorError, MemoryStoreError } from './memory-store-error.js';
import type { MemoryMatch, MemoryQuery, MemoryRecord, MemoryStore } from './memory-store.js';

export interface PineconeMemoryStoreOptions {
  apiKey: string;
  /** The index's name (resolved to its host through the control plane unless `indexHost` is given). */
  indexName: string;
  /** The index's data-plane URL; when set, no control-plane call is ever made. */
  indexHost?: string | undefined;
  /** The embedder's vector length; `init()` refuses an index of another dimension. */
  dimensions: number;
  /** Retries of a request that got a 5xx (the client's backoff: about 200, 400, 800 ms). Default 3. */
  maxRetries?: number | undefined;
  /** Time limit of each attempt, in ms; the client itself has none. Default 10 000. */
  timeoutMs?: number | undefined;
  /** The control plane's URL (default https://api.pinecone.io). */
  controllerHostUrl?: string | undefined;
}

/** What each vector carries. `memoryId` is the record's id; the vector id adds a time prefix to it. */
type MemoryMetadata = {
  ownerId: string;
  memoryId: string;
  conversationId: string;
  messageId: string;
  role: string;
  text: string;
  createdAt: number;
};

// Pinecone's documented limits.
const MAX_METADATA_BYTES = 40_960;
const MAX_ID_LENGTH = 512;
const MAX_TOP_K = 10_000;
const MAX_IDS_PER_REQUEST = 1000;
const MAX_LIST_PAGE = 100;
/** Upserts are sent in batches of at most this many records and about this many bytes (the API takes 1000 and 2 MB). */
const UPSERT_BATCH = 100;
const UPSERT_BATCH_BYTES = 1_500_000;
/** Ids per fetch-by-ids GET (keeps the query string short), and memory ids per fetch-by-metadata filter. */
const FETCH_BATCH = 100;

/** Vector ids start with this many base-36 digits of `TIME_MAX - createdAt`. */
const TIME_WIDTH = 9;
const TIME_MAX = 36 ** TIME_WIDTH - 1;

/**
 * The vector id of a memory: reverse time, fixed width, then the memory id. `/vectors/list`
 * returns ids in byte order, so a namespace lists newest first (ties: memory id ascending).
 */
export function vectorIdFor(createdAt: number, memoryId: string): string {
  return `${(TIME_MAX - createdAt).toString(36).padStart(TIME_WIDTH, '0')}.${memoryId}`;
}

/** One namespace per user: a hash, so any owner id (e.g. an IdP subject with `|`) makes a short, safe name. */
export function namespaceFor(ownerId: string): string {
  return `user-${bytesToHex(sha256(utf8ToBytes(ownerId))).slice(0, 32)}`;
}

function ownerFilter(ownerId: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { ownerId: { $eq: ownerId }, ...more };
}

function utf8Length(s: string): number {
  return utf8ToBytes(s).length;
}

/** Cuts `text` to at most `bytes` UTF-8 bytes without splitting a character. */
function cutUtf8(text: string, bytes: number): string {
  const encoded = utf8ToBytes(text);
  if (encoded.length <= bytes) return text;
  let end = Math.max(0, bytes);
  while (end > 0 && (encoded[end]! & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(encoded.subarray(0, end));
}

/** Metadata under Pinecone's 40 KB limit: only `text` is ever shortened. */
function fitMetadata(meta: MemoryMetadata): MemoryMetadata {
  const limit = MAX_METADATA_BYTES - 512; // headroom for however the service counts
  let size = utf8Length(JSON.stringify(meta));
  let fitted = meta;
  while (size > limit && fitted.text.length > 0) {
    // JSON escaping can make the text longer than its bytes, so measure again after each cut.
    fitted = { ...fitted, text: cutUtf8(fitted.text, utf8Length(fitted.text) - (size - limit) - 16) };
    size = utf8Length(JSON.stringify(fitted));
  }
  return fitted;
}

/** Reads a record back from metadata the service returned; undefined when it is not one of ours. */
function toRecord(metadata: unknown, ownerId: string): MemoryRecord | undefined {
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  const m = metadata as Record<string, unknown>;
  const str = (k: string) => (typeof m[k] === 'string' ? (m[k] as string) : undefined);
  const id = str('memoryId');
  const conversationId = str('conversationId');
  const messageId = str('messageId');
  const text = str('text');
  const role = m['role'];
  const createdAt = m['createdAt'];
  if (m['ownerId'] !== ownerId || id === undefined || conversationId === undefined || messageId === undefined || text === undefined) return undefined;
  if ((role !== 'user' && role !== 'assistant') || typeof createdAt !== 'number') return undefined;
  return { id, ownerId, conversationId, messageId, role, text, createdAt };
}

function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = err; e && chain.length < 8; e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/**
 * Long-term memory in a Pinecone index: one namespace per user, and the owner id also in
 * every vector's metadata and in every query, fetch-by-metadata and delete-by-filter, so a
 * namespace mix-up still cannot leak another user's memories.
 */
export class PineconeMemoryStore implements MemoryStore {
  readonly kind = 'pinecone';
  readonly #options: PineconeMemoryStoreOptions;
  readonly #pc: Pinecone;
  #index: Index<MemoryMetadata> | undefined;

  constructor(options: PineconeMemoryStoreOptions) {
    if (!Number.isInteger(options.dimensions) || options.dimensions < 1) {
      throw new MemoryStoreError(`Vector memory needs a positive integer dimension, got ${options.dimensions}`);
    }
    this.#options = options;
    const timeoutMs = options.timeoutMs ?? 10_000;
    // The client has no time limit of its own; each attempt (retries included) gets one here.
    const fetchApi: typeof fetch = (input, init) => {
      const limit = AbortSignal.timeout(timeoutMs);
      return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, limit]) : limit });
    };
    this.#pc = new Pinecone({
      apiKey: options.apiKey,
      fetchApi,
      ...(options.maxRetries === undefined ? {} : { maxRetries: options.maxRetries }),
      ...(options.controllerHostUrl === undefined ? {} : { controllerHostUrl: options.controllerHostUrl }),
    });
    if (options.indexHost) this.#index = this.#pc.index<MemoryMetadata>({ host: options.indexHost });
  }

  async init(): Promise<void> {
    const { indexName } = this.#options;
    if (!this.#index) {
      const model = await this.#call('describe index', () => this.#pc.describeIndex(indexName));
      this.#checkDimension(model.dimension);
      if (model.metric === 'euclidean') {
        throw new MemoryStoreError(
          `Pinecone index "${indexName}" uses the euclidean metric; long-term memory needs cosine similarity. Use an index created with metric "cosine".`,
          { refusal: true },
        );
      }
      this.#index = this.#pc.index<MemoryMetadata>({ host: model.host });
    }
    const index = this.#index;
    const stats = await this.#call('describe index stats', () => index.describeIndexStats());
    this.#checkDimension(stats.dimension);
  }

  /**
   * Resolves the index's host, checking nothing else: for deletions while memory is switched off,
   * when there is no embedder whose dimension the index must match (`init()` is for writing).
   */
  async connect(): Promise<void> {
    if (this.#index) return;
    const model = await this.#call('describe index', () => this.#pc.describeIndex(this.#options.indexName));
    this.#index = this.#pc.index<MemoryMetadata>({ host: model.host });
  }

  #checkDimension(indexDimension: number | undefined): void {
    const { indexName, dimensions } = this.#options;
    if (indexDimension === undefined || indexDimension === dimensions) return;
    throw new MemoryStoreError(
      `Pinecone index "${indexName}" has dimension ${indexDimension}, but the embedder makes ${dimensions}-dimension vectors. ` +
        `Set EMBEDDING_DIMENSIONS=${indexDimension} if the embedder supports it, or use an index created with dimension ${dimensions}.`,
      { refusal: true },
    );
  }

  get #idx(): Index<MemoryMetadata> {
    if (!this.#index) throw new MemoryStoreError('PineconeMemoryStore: init() has not been called');
    return this.#index;
  }

  /** Runs one client call and maps its failure to a MemoryStoreError; a 404 (namespace never written) may stand for "nothing". */
  async #call<T>(operation: string, run: () => Promise<T>, onNotFound?: () => T): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (onNotFound && err instanceof Error && err.name === 'PineconeNotFoundError') return onNotFound();
      throw this.#failure(operation, err);
    }
  }

  #failure(operation: string, err: unknown): MemoryStoreError {
    const { apiKey, maxRetries, timeoutMs } = this.#options;
    const scrub = (s: string) => (apiKey.length >= 4 ? s.split(apiKey).join('***') : s).slice(0, 300);
    const name = err instanceof Error ? err.name : '';
    const message = err instanceof Error ? err.message : String(err);
    const fail = (reason: string, status?: number) => new MemoryStoreError(`Pinecone ${operation} failed: ${reason}`, { status });
    switch (name) {
      case 'PineconeAuthorizationError':
        return fail('the API key was rejected (HTTP 401)', 401);
      case 'PineconeNotFoundError':
        return fail(`the index "${this.#options.indexName}" or the resource was not found (HTTP 404)`, 404);
      case 'PineconeBadRequestError':
        return fail(`the request was rejected: ${scrub(message)}`, 400);
      case 'PineconeMaxRetriesExceededError':
        return fail(`the service kept answering with server errors (gave up after ${maxRetries ?? 3} retries)`, 503);
      case 'PineconeInternalServerError':
        return fail('the service had an internal error (HTTP 500)', 500);
      case 'PineconeUnavailableError':
        return fail('the service is unavailable (HTTP 503)', 503);
      case 'PineconeConnectionError': {
        const timedOut = causeChain(err).some((e) => e instanceof Error && e.name === 'TimeoutError');
        return timedOut ? fail(`no answer within ${timeoutMs ?? 10_000} ms`) : fail('the service could not be reached');
      }
      case 'PineconeArgumentError':
        return fail(`invalid request: ${scrub(message)}`);
      default:
        return fail(scrub(`${name || 'error'}: ${message}`));
    }
  }

  #checkVector(vector: Float32Array): number[] {
    if (vector.length !== this.#options.dimensions) {
      throw new MemoryStoreError(`Vector memory expects ${this.#options.dimensions}-dimension vectors, got ${vector.length}`);
    }
    const values = Array.from(vector);
    if (!values.every(Number.isFinite)) throw new MemoryStoreError('Vector memory got a vector with a non-finite value');
    return values;
  }

  async upsert(items: readonly (MemoryRecord & { vector: Float32Array })[]): Promise<void> {
    const index = this.#idx;
    // Per owner, by memory id: the last item of an id wins, as in a sequence of upserts.
    const byOwner = new Map<string, Map<string, PineconeRecord<MemoryMetadata>>>();
    for (const item of items) {
      if (!Number.isInteger(item.createdAt) || item.createdAt < 0 || item.createdAt > TIME_MAX) {
        throw new MemoryStoreError(`Memory ${item.id} has an invalid createdAt (${item.createdAt})`);
      }
      const id = vectorIdFor(item.createdAt, item.id);
      if (item.id.length === 0 || id.length > MAX_ID_LENGTH) {
        throw new MemoryStoreError(`Memory ids must be 1 to ${MAX_ID_LENGTH - TIME_WIDTH - 1} characters long`);
      }
      const metadata = fitMetadata({
        ownerId: item.ownerId,
        memoryId: item.id,
        conversationId: item.conversationId,
        messageId: item.messageId,
        role: item.role,
        text: item.text,
        createdAt: item.createdAt,
      });
      const owned = byOwner.get(item.ownerId) ?? new Map<string, PineconeRecord<MemoryMetadata>>();
      owned.set(item.id, { id, values: this.#checkVector(item.vector), metadata });
      byOwner.set(item.ownerId, owned);
    }
    for (const [ownerId, owned] of byOwner) {
      const records = [...owned.values()];
      const namespace = namespaceFor(ownerId);
      for (const batch of upsertBatches(records)) {
        await this.#call('upsert', () => index.upsert({ records: batch, namespace }));
      }
      // A memory upserted again with another createdAt got a new vector id: drop the old vector.
      const fresh = new Set(records.map((r) => r.id));
      const existing = await this.#vectorsOf(ownerId, [...new Set(records.map((r) => r.metadata!.memoryId))]);
      const stale = existing.filter((v) => !fresh.has(v.vectorId)).map((v) => v.vectorId);
      await this.#deleteVectorIds(namespace, stale);
    }
  }

  /** The owner's vectors holding these memory ids (more than one per id only after a createdAt change). */
  async #vectorsOf(ownerId: string, memoryIds: readonly string[]): Promise<{ vectorId: string; record: MemoryRecord }[]> {
    const index = this.#idx;
    const namespace = namespaceFor(ownerId);
    const found: { vectorId: string; record: MemoryRecord }[] = [];
    for (let i = 0; i < memoryIds.length; i += FETCH_BATCH) {
      const filter = ownerFilter(ownerId, { memoryId: { $in: memoryIds.slice(i, i + FETCH_BATCH) } });
      let paginationToken: string | undefined;
      do {
        const token = paginationToken;
        const page = await this.#call(
          'fetch by metadata',
          () => index.fetchByMetadata({ namespace, filter, limit: MAX_IDS_PER_REQUEST, ...(token ? { paginationToken: token } : {}) }),
          () => ({ records: {}, namespace, pagination: undefined }),
        );
        for (const [vectorId, rec] of Object.entries(page.records)) {
          const record = toRecord(rec.metadata, ownerId);
          if (record) found.push({ vectorId, record });
        }
        paginationToken = page.pagination?.next;
      } while (paginationToken);
    }
    return found;
  }

  async #deleteVectorIds(namespace: string, vectorIds: readonly string[]): Promise<void> {
    const index = this.#idx;
    for (let i = 0; i < vectorIds.length; i += MAX_IDS_PER_REQUEST) {
      const ids = vectorIds.slice(i, i + MAX_IDS_PER_REQUEST);
      await this.#call('delete', () => index.deleteMany({ ids, namespace }), () => undefined);
    }
  }

  async query(ownerId: string, vector: Float32Array, query: MemoryQuery): Promise<MemoryMatch[]> {
    const index = this.#idx;
    const values = this.#checkVector(vector);
    if (query.topK <= 0) return [];
    const excluded = [...new Set(query.excludeMessageIds ?? [])];
    const filter = ownerFilter(ownerId, excluded.length > 0 ? { messageId: { $nin: excluded } } : {});
    const namespace = namespaceFor(ownerId);
    const res = await this.#call(
      'query',
      () => index.query({ namespace, vector: values, topK: Math.min(query.topK, MAX_TOP_K), filter, includeMetadata: true, includeValues: false }),
      () => ({ matches: [], namespace }),
    );
    const matches: MemoryMatch[] = [];
    for (const m of res.matches) {
      const record = toRecord(m.metadata, ownerId);
      const score = m.score ?? Number.NEGATIVE_INFINITY;
      if (record && score >= query.minScore) matches.push({ ...record, score });
    }
    return matches.sort((a, b) => b.score - a.score).slice(0, query.topK);
  }

  async list(ownerId: string, options: { limit: number; cursor?: string | undefined }): Promise<Page<MemoryRecord>> {
    const index = this.#idx;
    const namespace = namespaceFor(ownerId);
    if (options.limit < 1) return { items: [], nextCursor: null };
    const vectorIds: string[] = [];
    let token = options.cursor || undefined;
    let next: string | undefined;
    // Each page asks for exactly what is still missing, so the last token points right after the last id kept.
    while (vectorIds.length < options.limit) {
      const paginationToken = token;
      const page = await this.#call(
        'list',
        () => index.listPaginated({ namespace, limit: Math.min(MAX_LIST_PAGE, options.limit - vectorIds.length), ...(paginationToken ? { paginationToken } : {}) }),
        () => ({ vectors: [], pagination: undefined, namespace }),
      ).catch((err: unknown) => {
        // Pinecone refuses a pagination token it did not make: the client sent a bad cursor.
        if (paginationToken !== undefined && paginationToken === options.cursor && err instanceof MemoryStoreError && err.status === 400) throw new InvalidCursorError();
        throw err;
      });
      const ids = (page.vectors ?? []).map((v) => v.id).filter((id): id is string => typeof id === 'string');
      vectorIds.push(...ids);
      next = page.pagination?.next || undefined;
      if (!next || ids.length === 0) break;
      token = next;
    }
    const items: MemoryRecord[] = [];
    for (let i = 0; i < vectorIds.length; i += FETCH_BATCH) {
      const ids = vectorIds.slice(i, i + FETCH_BATCH);
      const res = await this.#call('fetch', () => index.fetch({ ids, namespace }), () => ({ records: {} as Record<string, PineconeRecord<MemoryMetadata>>, namespace }));
      for (const id of ids) {
        const record = toRecord(res.records[id]?.metadata, ownerId);
        if (record) items.push(record);
      }
    }
    return { items, nextCursor: next ?? null };
  }

  async get(ownerId: string, id: string): Promise<MemoryRecord | undefined> {
    const found = await this.#vectorsOf(ownerId, [id]);
    return found.find((f) => f.record.id === id)?.record;
  }

  async delete(ownerId: string, ids: readonly string[]): Promise<number> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return 0;
    const found = await this.#vectorsOf(ownerId, unique);
    await this.#deleteVectorIds(
      namespaceFor(ownerId),
      found.map((f) => f.vectorId),
    );
    return new Set(found.map((f) => f.record.id)).size;
  }

  async deleteByConversation(ownerId: string, conversationId: string): Promise<void> {
    const index = this.#idx;
    const namespace = namespaceFor(ownerId);
    const filter = ownerFilter(ownerId, { conversationId: { $eq: conversationId } });
    await this.#call('delete by conversation', () => index.deleteMany({ filter, namespace }), () => undefined);
  }

  async deleteAll(ownerId: string): Promise<void> {
    const index = this.#idx;
    const namespace = namespaceFor(ownerId);
    await this.#call('delete all', () => index.deleteAll({ namespace }), () => undefined);
  }

  async ping(): Promise<void> {
    const index = this.#idx;
    await this.#call('describe index stats', () => index.describeIndexStats());
  }

  async close(): Promise<void> {
    // Nothing to release: requests go through the global fetch, whose pool closes idle sockets itself.
  }
}

/** Splits records into upsert requests that stay well inside the API's count and size limits. */
function upsertBatches<T extends { values?: number[] | undefined; metadata?: MemoryMetadata | undefined }>(records: T[]): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const r of records) {
    // A float in JSON takes about 12 bytes; metadata is counted as sent.
    const size = (r.values?.length ?? 0) * 12 + utf8Length(JSON.stringify(r.metadata ?? {})) + 600;
    if (batch.length > 0 && (batch.length >= UPSERT_BATCH || bytes + size > UPSERT_BATCH_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(r);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
