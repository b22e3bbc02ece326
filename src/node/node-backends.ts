import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { RatelimitRedis } from '../ratelimit/redis-rate-limiter.js';
import { noopMetrics, type Metrics } from '../metrics/metrics.js';
import { createModelRegistry, discoverCompatibleModel } from '../models/model-registry.js';
import { ReadScheduler } from '../models/read-scheduler.js';
import { createRateLimiter } from '../ratelimit/create-rate-limiter.js';
import type { Backends } from '../services.js';
import type { ConversationStore } from '../stores/conversation-store.js';
import { SqliteConversationStore } from '../stores/sqlite-conversation-store.js';
import type { CheckpointStats } from '../stores/wal-checkpointer.js';
import { NativePasswordHasher } from './native-password-hasher.js';
import { createNodeFetch } from './node-fetch.js';
import { createEmbedder, EMBEDDING_DEFAULTS } from '../memory/create-embedder.js';
import { LongTermMemory } from '../memory/long-term-memory.js';
import { MemoryDeletions } from '../memory/memory-deletions.js';
import { MemoryStoreError } from '../memory/memory-store-error.js';
import type { MemoryStore } from '../memory/memory-store.js';
import { SqliteMemoryStore } from '../memory/sqlite-memory-store.js';

/** A dependency named in the configuration cannot be reached at start-up (exit 69, EX_UNAVAILABLE). */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/**
 * The one wiring module for Node: configuration picks each port's adapter. The SDKs of
 * services that are not configured (MongoDB, Pinecone) are never loaded: on the embedded
 * defaults their code would only take memory (~45 MB resident with Redis's, see server.ts). `redis` is the
 * connection of REDIS_URL, when there is one, for rate limits shared without Upstash.
 */
export async function createNodeBackends(
  config: Config,
  logger: Logger,
  metrics: Metrics = noopMetrics,
  redis?: RatelimitRedis,
): Promise<Backends & { reads: ReadScheduler; sqliteWalPages: () => Record<string, number> }> {
  ensurePrivateDir(config.dataDir, logger);
  // The SDKs send their requests through node:http, and model streams read the socket directly.
  const reads = new ReadScheduler(config.streamSliceMs);
  const transport = {
    ...createNodeFetch(),
    reads,
    ...(metrics.enabled ? { onResponseHead: (provider: string, seconds: number) => metrics.upstreamResponse(provider, seconds) } : {}),
  };
  const models = createModelRegistry(config, logger, await discoverCompatibleModel(config), transport);
  const store = config.mongo ? await connectMongo(config.mongo) : new SqliteConversationStore(join(config.dataDir, 'gateway.sqlite'), { logger, walCheckpoint: config.sqliteCheckpoints });
  const limiter = createRateLimiter(config, logger, redis);
  const jwtSecret = config.auth.jwtSecret ? new TextEncoder().encode(config.auth.jwtSecret) : persistedSecret(config.dataDir, logger);
  const { memory, memoryStore } = await createMemory(config, store, logger, metrics);
  const memoryDeletions = memory ? undefined : deletionsOnly(config, store, logger);
  /** The SQLite files whose WAL checkpoints run on the worker, for the gauge. */
  const walFiles: [string, { readonly checkpoints: Readonly<CheckpointStats> | undefined }][] = [];
  if (store instanceof SqliteConversationStore) walFiles.push(['gateway', store]);
  if (memoryStore instanceof SqliteMemoryStore) walFiles.push(['memory', memoryStore]);
  logger.info(
    {
      store: store.kind,
      rateLimiter: limiter.kind,
      memory: memory ? config.memory.pinecone ? 'pinecone' : 'sqlite' : 'off',
      authRequired: config.auth.required,
      providers: models.providers,
      defaultModel: models.defaultModel,
    },
    config.chat.defaultModel ? 'backends ready' : `backends ready; no DEFAULT_MODEL set, so requests without a model use ${models.defaultModel}`,
  );
  const sqliteWalPages = () => {
    const pages: Record<string, number> = {};
    for (const [name, file] of walFiles) {
      const stats = file.checkpoints;
      // From its first checkpoint on (a file not written since the start has none).
      if (stats && stats.runs > 0) pages[name] = stats.walPages;
    }
    return pages;
  };
  return { logger, store, limiter, jwtSecret, hasher: new NativePasswordHasher(), revocableTokens: true, models, memory, memoryDeletions, metrics, reads, sqliteWalPages };
}

/**
 * Long-term memory: the configured embedder over Pinecone (PINECONE_*) or the embedded
 * store (DATA_DIR/memory.sqlite); answers the memory and its store (none when memory is off). A store that refuses the setup (another dimension or
 * embedder) stops the start with the variable to change; Pinecone merely unreachable at
 * start leaves memory degraded and retried.
 */
async function createMemory(
  config: Config,
  conversations: ConversationStore,
  logger: Logger,
  metrics: Metrics,
): Promise<{ memory?: LongTermMemory; memoryStore?: MemoryStore }> {
  if (!config.memory.enabled) return {};
  const { embedding, pinecone } = config.memory;
  const embedder = createEmbedder({
    provider: embedding.provider,
    model: embedding.model,
    dimensions: embedding.dimensions,
    openai: { apiKey: config.models.openai.apiKey, baseURL: config.models.openai.baseURL },
    gemini: { apiKey: config.models.gemini.apiKey, baseUrl: config.models.gemini.baseUrl },
    maxRetries: config.models.maxRetries,
    timeoutMs: config.models.timeoutMs,
  });
  const store = pinecone
    ? await pineconeStore(pinecone, embedder.dimensions)
    : new SqliteMemoryStore(join(config.dataDir, 'memory.sqlite'), {
        dimensions: embedder.dimensions,
        embedder: `${embedder.kind}:${embedder.model}`,
        eraseHint: `or move ${join(config.dataDir, 'memory.sqlite')} away to start long-term memory afresh`,
        logger,
        walCheckpoint: config.sqliteCheckpoints,
      });
  const memory = new LongTermMemory({
    embedder,
    store,
    conversations,
    logger: logger.child({ component: 'memory' }),
    options: { topK: config.memory.topK, minScore: config.memory.minScore, recallTimeoutMs: config.memory.recallTimeoutMs, windowSize: config.chat.historyLimit },
    metrics: metrics.enabled ? metrics : undefined,
  });
  try {
    await memory.init((err) => pinecone !== undefined && !(err instanceof MemoryStoreError && err.refusal));
  } catch (err) {
    throw new StartupError(`long-term memory: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { memory, memoryStore: store };
}

/**
 * Memory switched off (MEMORY_ENABLED=false) stops recall and writes, but what was remembered
 * while it was on is still deleted with its conversation or account (docs/protocols.md). The
 * store is opened only by such a deletion, without an embedder: the embedded file only if it
 * exists (a server that never had memory on neither creates nor opens it), Pinecone if configured.
 */
function deletionsOnly(config: Config, conversations: ConversationStore, logger: Logger): MemoryDeletions {
  const { embedding, pinecone } = config.memory;
  const log = logger.child({ component: 'memory' });
  let open: () => Promise<MemoryStore | undefined>;
  if (pinecone) {
    let connected: Promise<MemoryStore> | undefined;
    open = () =>
      (connected ??= (async () => {
        // The dimension is only checked by init(), which deletions do not call.
        const store = await pineconeStore(pinecone, embedding.dimensions ?? EMBEDDING_DEFAULTS[embedding.provider].dimensions);
        await store.connect();
        return store;
      })().catch((err: unknown) => {
        connected = undefined;
        throw err;
      }));
  } else {
    const file = join(config.dataDir, 'memory.sqlite');
    open = async () => {
      // The file's own dimension and embedder: it is opened as it is, whatever is configured now.
      const stored = SqliteMemoryStore.storedSettings(file);
      if (!stored) return undefined;
      const store = new SqliteMemoryStore(file, {
        dimensions: stored.dimensions,
        embedder: stored.embedder ?? `${embedding.provider}:${embedding.model ?? EMBEDDING_DEFAULTS[embedding.provider].model}`,
        logger: log,
        // Opened for a deletion and closed after it: no checkpoint worker for that.
        walCheckpoint: 'inline',
      });
      try {
        await store.init();
      } catch (err) {
        await store.close();
        throw err;
      }
      return store;
    };
  }
  return new MemoryDeletions({ open, conversations, logger: log });
}

/** The Pinecone index of PINECONE_* (its SDK loaded only when it is configured). */
async function pineconeStore(pinecone: NonNullable<Config['memory']['pinecone']>, dimensions: number) {
  const { PineconeMemoryStore } = await import('../memory/pinecone-memory-store.js');
  return new PineconeMemoryStore({ apiKey: pinecone.apiKey, indexName: pinecone.index ?? 'memory', indexHost: pinecone.host, dimensions, maxRetries: pinecone.maxRetries });
}

async function connectMongo(mongo: NonNullable<Config['mongo']>): Promise<ConversationStore> {
  try {
    const { MongoConversationStore } = await import('../stores/mongo-conversation-store.js');
    return await MongoConversationStore.connect(mongo.uri, mongo.db, { connectTimeoutMs: mongo.connectTimeoutMs });
  } catch (err) {
    const host = (() => {
      try {
        return new URL(mongo.uri.replace(/^mongodb(\+srv)?:/, 'http:')).host;
      } catch {
        return 'the configured host';
      }
    })();
    const reason = err instanceof Error ? err.message.replace(/mongodb(\+srv)?:\/\/\S+/g, '<uri>').slice(0, 160) : String(err);
    throw new StartupError(
      `MONGODB_URI: could not connect to ${host} within ${mongo.connectTimeoutMs} ms (${reason}). ` +
        'Check the URI and that MongoDB is running and reachable, or unset MONGODB_URI to use the embedded SQLite store.',
    );
  }
}

/** DATA_DIR holds password hashes, every conversation and the JWT secret: owner-only. */
function ensurePrivateDir(dir: string, logger: Logger): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if ((statSync(dir).mode & 0o077) !== 0) {
      chmodSync(dir, 0o700);
      logger.warn({ dir }, 'DATA_DIR was readable by others; made it owner-only (0700)');
    }
  } catch (err) {
    throw new ConfigError([`DATA_DIR: cannot create or use ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'}); choose a writable directory`]);
  }
}

/**
 * With no JWT_SECRET, a strong one is generated on first start and kept in the data
 * directory (owner-only), so tokens survive restarts. Several nodes need a shared JWT_SECRET.
 */
function persistedSecret(dataDir: string, logger: Logger): Uint8Array {
  const file = join(dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString('base64url');
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    logger.warn({ file }, 'JWT_SECRET is not set: generated one and stored it in the data directory; set JWT_SECRET to share tokens across nodes');
  } else {
    logger.warn({ file }, 'JWT_SECRET is not set: using the generated secret from the data directory');
  }
  chmodSync(file, 0o600);
  return new TextEncoder().encode(readFileSync(file, 'utf8').trim());
}
