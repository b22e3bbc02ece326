import { z } from 'zod';
import { DEFAULT_DOCS_ASSETS_URL, SWAGGER_UI_VERSION } from './http/swagger-ui-release.js';

/**
 * The whole configuration, read once from an environment map (process.env on Node, the
 * bindings on Workers), validated, and passed down. Nothing else reads the environment.
 */
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** A whole number written in decimal digits: `1e3`, `0x10` or `12.0` is a typo more often than a number. */
const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^[+-]?\d+$/, { error: 'must be a whole number in decimal digits' })
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const commaList = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

/**
 * Browser origins (`scheme://host[:port]`, or `*`), as a browser sends them in `Origin`: each is
 * compared exactly, so `https://app.example.com/` (a trailing slash) or `HTTPS://App.example.com`
 * is written as the origin it means, and a path, a query or a non-http scheme, which can never
 * match, is refused at start-up.
 */
const originList = commaList.transform((entries, ctx) =>
  entries.map((entry, i) => {
    if (entry === '*') return entry;
    let url: URL | undefined;
    try {
      url = new URL(entry);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.pathname !== '/' || url.search || url.hash) {
      // Its position, not its value: a value is never echoed (it could hold credentials).
      ctx.addIssue({ code: 'custom', message: `entry ${i + 1} is not an origin: write scheme://host[:port] with no path, e.g. https://app.example.com, or *` });
      return entry;
    }
    return url.origin;
  }),
);

const url = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, e.g. http://localhost:11434/v1' });

export const configSchema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** Unset: human-readable when stdout is a terminal, JSON lines otherwise. */
  LOG_PRETTY: bool.optional(),
  /** Unset: browsers on loopback origins (any port) and the gateway's own origin only. */
  CORS_ORIGIN: originList.optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  SQLITE_CHECKPOINTS: z.enum(['worker', 'inline']).default('worker'),

  SYSTEM_PROMPT: z.string().default('You are a helpful assistant.'),
  /** Unset: picked from the configured providers (see createModelRegistry). */
  DEFAULT_MODEL: z.string().min(1).optional(),
  ALLOWED_MODELS: commaList.optional(),
  HISTORY_LIMIT: int(1, 200).default(20),
  MAX_MESSAGE_CHARS: int(1, 1_000_000).default(32_000),
  MAX_BODY_BYTES: int(1024, 10_000_000).default(256 * 1024),
  MAX_HISTORY_BODY_BYTES: int(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),
  REQUEST_TIMEOUT_MS: int(1000, 600_000).default(30_000),
  MAX_OUTPUT_TOKENS: int(1, 1_000_000).default(4096),
  LOCAL_MODEL_TOKEN_DELAY_MS: int(0, 10_000).default(0),
  LOCAL_MODEL_CONTEXT_TOKENS: int(256, 10_000_000).default(8192),
  MODEL_CONTEXT_TOKENS: int(256, 10_000_000).default(128_000),

  OPENAI_API_KEY: z.string().min(1).optional(),
  OPENAI_BASE_URL: url.optional(),
  OPENAI_ORGANIZATION: z.string().min(1).optional(),
  GEMINI_API_KEY: z.string().min(1).optional(),
  GEMINI_BASE_URL: url.optional(),
  PROVIDER_MAX_RETRIES: int(0, 10).default(2),
  PROVIDER_TIMEOUT_MS: int(1000, 3_600_000).default(60_000),
  PROVIDER_FIRST_BYTE_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  PROVIDER_IDLE_TIMEOUT_MS: int(100, 3_600_000).default(30_000),

  RATE_LIMIT_USER: int(1, 1_000_000).default(100),
  RATE_LIMIT_ANON: int(1, 1_000_000).default(20),
  RATE_LIMIT_AUTH: int(1, 1_000_000).default(30),
  RATE_LIMIT_ACCOUNT: int(1, 1_000_000).default(10),
  RATE_LIMIT_FAIL_CLOSED: bool.default(false),
  RATE_LIMIT_WINDOW_SECONDS: int(1, 86_400 * 7).default(900),
  RATE_LIMIT_IPV6_PREFIX: int(16, 128).default(56),
  UPSTASH_REDIS_REST_URL: url.optional(),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1).optional(),
  RATE_LIMIT_PREFIX: z.string().min(1).max(64).default('gateway'),

  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  JWT_TTL_SECONDS: int(60, 86_400 * 90).default(86_400),
  JWT_CLOCK_SKEW_SECONDS: int(0, 300).default(30),
  JWT_ISSUER: z.string().min(1).default('ai-chat-gateway'),
  JWT_JWKS_URL: url.optional(),
  JWT_JWKS_ISSUER: z.string().min(1).optional(),
  JWT_JWKS_AUDIENCE: z.string().min(1).optional(),
  AUTH_REQUIRED: bool.default(false),
  COOKIE_SECURE: bool.default(false),
  COOKIE_SAMESITE: z.enum(['Strict', 'Lax', 'None']).default('Lax'),
  AUTH_SESSION_CACHE_MS: int(0, 300_000).default(5_000),
  AUTH_HASH_CONCURRENCY: int(1, 64).default(2),
  AUTH_HASH_QUEUE: int(0, 10_000).default(32),
  AUTH_HASH_MAX_WAIT_MS: int(100, 120_000).default(10_000),
  API_KEYS_MAX_PER_USER: int(0, 10_000).default(50),

  MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// or mongodb+srv:// URI').optional(),
  MONGODB_DB: z.string().min(1).max(64).default('ai_chat_gateway'),
  MONGODB_CONNECT_TIMEOUT_MS: int(500, 120_000).default(5_000),
  TRUST_PROXY: bool.default(false),
  DOCS_ASSETS_URL: z.url({ protocol: /^https?$/, error: `must be an http:// or https:// URL (a copy of swagger-ui-dist@${SWAGGER_UI_VERSION})` }).default(DEFAULT_DOCS_ASSETS_URL),

  SOCKET_PING_INTERVAL_MS: int(1000, 600_000).default(25_000),
  SOCKET_PING_TIMEOUT_MS: int(1000, 600_000).default(20_000),
  SOCKET_PER_MESSAGE_DEFLATE: bool.default(false),
  SOCKET_MAX_BUFFER_BYTES: int(1024, 100_000_000).default(1_000_000),
  SOCKET_MAX_CONNECTIONS_PER_IP: int(0, 10_000_000).default(1000),
  SOCKET_MAX_EVENTS_PER_SECOND: int(0, 1_000_000).default(400),
  SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: int(0, 100_000_000).default(4000),
  SOCKET_MAX_BACKLOG_BYTES: int(4096, 1_000_000_000).default(1_048_576),
  SLOW_CLIENT_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  TURN_STARTS_PER_TICK: int(0, 10_000).default(8),
  STREAM_SLICE_MS: int(0, 1_000).default(10),
  SOCKET_TRANSPORTS: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.enum(['polling', 'websocket'])).min(1))
    .default(['polling', 'websocket']),

  SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  PLAYGROUND_ENABLED: bool.default(true),

  MEMORY_ENABLED: bool.default(true),
  MEMORY_TOP_K: int(1, 50).default(3),
  MEMORY_MIN_SCORE: z.coerce.number().min(-1).max(1).default(0.2),
  MEMORY_RECALL_TIMEOUT_MS: int(10, 60_000).default(1_500),
  EMBEDDING_PROVIDER: z.enum(['local', 'openai', 'gemini']).default('local'),
  EMBEDDING_MODEL: z.string().min(1).max(128).optional(),
  EMBEDDING_DIMENSIONS: int(1, 65_536).optional(),
  PINECONE_API_KEY: z.string().min(1).optional(),
  PINECONE_INDEX: z.string().min(1).max(45).optional(),
  PINECONE_INDEX_HOST: url.optional(),
  PINECONE_MAX_RETRIES: int(0, 10).default(2),

  /** Several nodes: Socket.IO rooms, running-turn locks, stops and resumable streams through Redis. */
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  REDIS_KEY_PREFIX: z.string().min(1).max(64).default('gateway'),
  /** Commands one Redis connection holds while Redis is away or slow (the rest fail at once). */
  REDIS_QUEUE_MAX: int(1, 1_000_000).default(10_000),
  /** How long a turn's events stay available to a client that reconnects (0: resuming is off). */
  STREAM_RESUME_TTL_S: int(0, 86_400).default(300),
  /** Bytes of turn events kept in this process for resuming when there is no Redis (oldest evicted first). */
  STREAM_RESUME_MAX_BYTES: int(0, 4_000_000_000).default(64 * 1024 * 1024),
  STREAM_RESUME_REDIS_READERS: int(0, 100_000).default(256),
  STREAM_ON_DISCONNECT: z.enum(['abort', 'continue']).default('abort'),
  /** `npm run start:cluster`: gateway processes on this machine (0: one per core). */
  CLUSTER_WORKERS: int(0, 256).default(0),

  REALTIME_PROVIDER: z.enum(['openai', 'gemini', 'off']).optional(),
  REALTIME_URL: z.url({ protocol: /^(wss?|https?)$/, error: 'must be a ws://, wss://, http:// or https:// URL' }).optional(),
  REALTIME_MODEL: z.string().min(1).max(128).optional(),
  REALTIME_API_KEY: z.string().min(1).optional(),
  REALTIME_MAX_AUDIO_CHUNK_BYTES: int(1024, 16 * 1024 * 1024).default(262_144),
  REALTIME_MAX_SESSIONS_PER_CLIENT: int(1, 1000).default(2),
  REALTIME_IDLE_TIMEOUT_MS: int(1000, 86_400_000).default(300_000),
  REALTIME_MAX_SESSION_MS: int(1000, 86_400_000).default(1_800_000),

  METRICS_ENABLED: bool.default(true),
  METRICS_TOKEN: z
    .string()
    .regex(/^[\x21-\x7e]{16,512}$/, 'must be 16 to 512 visible ASCII characters (no spaces), e.g. from `openssl rand -hex 32`')
    .optional(),
  METRICS_PORT: int(0, 65535).optional(),
  METRICS_HOST: z.string().min(1).optional(),
});

export type Env = Record<string, string | undefined>;

export interface Config {
  port: number;
  host: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Human-readable log lines instead of JSON; undefined: when stdout is a terminal (Node entry only). */
  logPretty: boolean | undefined;
  /** Allowed browser origins; undefined means loopback origins on any port. */
  corsOrigins: string[] | undefined;
  dataDir: string;
  /** Where the SQLite files' WAL checkpoints run: a worker thread (default) or SQLite's own, inside commits on the event loop. */
  sqliteCheckpoints: 'worker' | 'inline';
  /** Serve the browser playground at `/` (Node only; built by `npm run build`). */
  playground: { enabled: boolean };
  chat: {
    systemPrompt: string;
    /** Undefined: chosen from the configured providers. */
    defaultModel: string | undefined;
    allowedModels: string[] | undefined;
    historyLimit: number;
    maxMessageChars: number;
    maxBodyBytes: number;
    /** The body of a request that carries its whole conversation (/api/chat from useChat, /v1/chat/completions). */
    maxHistoryBodyBytes: number;
    /** How long a client may take to send a request: its headers, and a JSON body once its route reads it. */
    requestTimeoutMs: number;
    maxOutputTokens: number;
  };
  models: {
    local: { tokenDelayMs: number; contextTokens: number };
    contextTokens: number;
    openai: { apiKey: string | undefined; baseURL: string | undefined; organization: string | undefined };
    gemini: { apiKey: string | undefined; baseUrl: string | undefined };
    maxRetries: number;
    timeoutMs: number;
    firstByteTimeoutMs: number;
    idleTimeoutMs: number;
  };
  rateLimit: {
    userLimit: number;
    anonymousLimit: number;
    authLimit: number;
    accountLimit: number;
    windowMs: number;
    failClosed: boolean;
    /** Key prefix in the shared Redis (Upstash or REDIS_URL). */
    prefix: string;
    /** The bits of an IPv6 address that name one client for per-address limits (addressKey). */
    ipv6Prefix: number;
  };
  upstash: { url: string; token: string } | undefined;
  auth: {
    jwtSecret: string | undefined;
    ttlSeconds: number;
    clockSkewSeconds: number;
    issuer: string;
    jwks: { url: string; issuer: string; audience: string } | undefined;
    required: boolean;
    cookieSecure: boolean;
    cookieSameSite: 'Strict' | 'Lax' | 'None';
    sessionCacheMs: number;
    hashing: { concurrency: number; queue: number; maxWaitMs: number };
    /** Gateway API keys a user may hold at once (0: creating keys is switched off). */
    apiKeysMaxPerUser: number;
  };
  mongo: { uri: string; db: string; connectTimeoutMs: number } | undefined;
  /** Read the client IP from X-Forwarded-For (only behind a proxy that sets it). */
  trustProxy: boolean;
  /** Where /docs loads Swagger UI's files from (each checked against its SRI hash). */
  docsAssetsUrl: string;
  socket: {
    pingIntervalMs: number;
    pingTimeoutMs: number;
    perMessageDeflate: boolean;
    maxBufferBytes: number;
    /** Open Socket.IO connections one client address may hold (0: no limit). */
    maxConnectionsPerIp: number;
    /** Packets a client may send on one Socket.IO connection per second, sustained (twice that at once); over it the connection is closed. 0: no limit. */
    maxEventsPerSecond: number;
    /** Packets all of one client address's Socket.IO connections may send per second together (twice that at once); over it, a connection over its share is closed. 0: no limit. */
    maxEventsPerIpPerSecond: number;
    transports: ('polling' | 'websocket')[];
    /** Bytes a socket may have waiting to be sent before the reply stops pulling from the model. */
    maxBacklogBytes: number;
  };
  /** Several nodes (REDIS_URL): undefined runs everything in this process. */
  redis: {
    url: string;
    prefix: string;
    /** Commands a connection holds, sent or not yet, while Redis is away or slow: Socket.IO packets kept across a restart, in-flight writes. */
    queueMax: number;
  } | undefined;
  /** `npm run start:cluster`: worker processes (0: one per core). */
  clusterWorkers: number;
  streams: {
    /** Seconds a turn's events are kept for a reconnecting client; 0 switches resuming off. */
    resumeTtlSeconds: number;
    /** Bound of the in-process event buffer (without Redis). */
    maxBytes: number;
    /** With Redis, resumed streams that hold a Redis connection of their own; the rest poll. */
    redisReaders: number;
    /** What a client going away does to its turn: `abort` (stored as aborted) or `continue` (runs to its end, stored, resumable). */
    onDisconnect: 'abort' | 'continue';
  };
  /** How long a client may leave a reply unread (its buffer full) before the turn is cut. */
  slowClientTimeoutMs: number;
  /** Turn starts let through per pass of the event loop in a burst (0: no limit). */
  turnStartsPerTick: number;
  /** Milliseconds of a pass of the event loop model streams' reads may take before the rest wait for later passes (0: no limit). */
  streamSliceMs: number;
  shutdownGraceMs: number;
  memory: {
    enabled: boolean;
    topK: number;
    minScore: number;
    recallTimeoutMs: number;
    embedding: { provider: 'local' | 'openai' | 'gemini'; model: string | undefined; dimensions: number | undefined };
    /** Long-term memory in Pinecone instead of the embedded SQLite file. */
    pinecone: { apiKey: string; index: string | undefined; host: string | undefined; maxRetries: number } | undefined;
  };
  realtime: {
    /** undefined: no provider, every realtime event answers REALTIME_UNAVAILABLE. */
    provider: { kind: 'openai'; apiKey: string; url: string | undefined; model: string | undefined } | { kind: 'gemini'; apiKey: string; baseUrl: string | undefined; model: string | undefined } | undefined;
    maxAudioChunkBytes: number;
    maxSessionsPerClient: number;
    idleTimeoutMs: number;
    maxSessionMs: number;
  };
  metrics: {
    /** Off: no /metrics and no counting (the no-op implementation). */
    enabled: boolean;
    /** Bearer token /metrics requires; undefined: none. */
    token: string | undefined;
    /** A listener of its own for /metrics (then absent from the public port); undefined: /metrics on the public port. */
    listener: { port: number; host: string } | undefined;
  };
}

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`Invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Empty strings mean "unset", as they do in most .env files, and so do blank ones (`PORT= `):
 * read as numbers they would be 0, which switches several bounds off.
 */
function withoutEmpty(env: Env): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v.trim() !== '') out[k] = v;
  return out;
}

export function loadConfig(env: Env): Config {
  const parsed = configSchema.safeParse(withoutEmpty(env));
  if (!parsed.success) {
    // Name the variable and the rule, never echo the value: it may be a secret.
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const pairs: [string, unknown, string, unknown][] = [
    ['UPSTASH_REDIS_REST_URL', e.UPSTASH_REDIS_REST_URL, 'UPSTASH_REDIS_REST_TOKEN', e.UPSTASH_REDIS_REST_TOKEN],
    ['JWT_JWKS_URL', e.JWT_JWKS_URL, 'JWT_JWKS_ISSUER', e.JWT_JWKS_ISSUER],
    ['JWT_JWKS_URL', e.JWT_JWKS_URL, 'JWT_JWKS_AUDIENCE', e.JWT_JWKS_AUDIENCE],
  ];
  const missing = pairs.filter(([, a, , b]) => (a === undefined) !== (b === undefined)).map(([a, , b]) => `${a} and ${b}: set both or neither`);
  if (e.COOKIE_SAMESITE === 'None' && !e.COOKIE_SECURE) missing.push('COOKIE_SAMESITE: None requires COOKIE_SECURE=true');
  if (e.PINECONE_API_KEY && !e.PINECONE_INDEX && !e.PINECONE_INDEX_HOST) missing.push('PINECONE_API_KEY: also set PINECONE_INDEX (the index name) or PINECONE_INDEX_HOST (its data-plane URL)');
  if (!e.PINECONE_API_KEY && (e.PINECONE_INDEX || e.PINECONE_INDEX_HOST)) missing.push('PINECONE_INDEX / PINECONE_INDEX_HOST: set PINECONE_API_KEY too');
  if (e.METRICS_HOST && e.METRICS_PORT === undefined) missing.push('METRICS_HOST: set METRICS_PORT too (the host is that listener\'s); without it /metrics is on the public port');
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT !== 0 && e.METRICS_PORT === e.PORT) missing.push('METRICS_PORT: must differ from PORT (it is a listener of its own)');
  if (!e.METRICS_ENABLED && (e.METRICS_PORT !== undefined || e.METRICS_TOKEN)) missing.push('METRICS_PORT / METRICS_TOKEN: metrics are off (METRICS_ENABLED=false); unset them or turn metrics on');
  // A Socket.IO packet over its buffer closes the connection (Socket.IO's own bound, no error event):
  // the largest chunk the realtime rules accept must fit in one, with room for the packet's framing.
  // Set both, they must agree; with only the buffer lowered, the chunk limit follows it down.
  const chunkFits = Math.max(1024, e.SOCKET_MAX_BUFFER_BYTES - 1024);
  if (e.REALTIME_MAX_AUDIO_CHUNK_BYTES > chunkFits) {
    if (withoutEmpty(env).REALTIME_MAX_AUDIO_CHUNK_BYTES !== undefined) {
      missing.push('REALTIME_MAX_AUDIO_CHUNK_BYTES: must be at least 1024 below SOCKET_MAX_BUFFER_BYTES (a larger Socket.IO packet closes the connection)');
    } else e.REALTIME_MAX_AUDIO_CHUNK_BYTES = chunkFits;
  }
  if (missing.length) throw new ConfigError(missing);
  if (e.OPENAI_BASE_URL && !e.OPENAI_API_KEY) {
    // OpenAI-compatible servers (Ollama, vLLM, llama.cpp) usually need no key, but the SDK insists on one.
    e.OPENAI_API_KEY = 'not-needed';
  }
  return {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
    corsOrigins: e.CORS_ORIGIN,
    dataDir: e.DATA_DIR,
    sqliteCheckpoints: e.SQLITE_CHECKPOINTS,
    playground: { enabled: e.PLAYGROUND_ENABLED },
    chat: {
      systemPrompt: e.SYSTEM_PROMPT,
      defaultModel: e.DEFAULT_MODEL,
      allowedModels: e.ALLOWED_MODELS,
      historyLimit: e.HISTORY_LIMIT,
      maxMessageChars: e.MAX_MESSAGE_CHARS,
      maxBodyBytes: e.MAX_BODY_BYTES,
      maxHistoryBodyBytes: e.MAX_HISTORY_BODY_BYTES,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      maxOutputTokens: e.MAX_OUTPUT_TOKENS,
    },
    models: {
      local: { tokenDelayMs: e.LOCAL_MODEL_TOKEN_DELAY_MS, contextTokens: e.LOCAL_MODEL_CONTEXT_TOKENS },
      contextTokens: e.MODEL_CONTEXT_TOKENS,
      openai: { apiKey: e.OPENAI_API_KEY, baseURL: e.OPENAI_BASE_URL, organization: e.OPENAI_ORGANIZATION },
      gemini: { apiKey: e.GEMINI_API_KEY, baseUrl: e.GEMINI_BASE_URL },
      maxRetries: e.PROVIDER_MAX_RETRIES,
      timeoutMs: e.PROVIDER_TIMEOUT_MS,
      firstByteTimeoutMs: e.PROVIDER_FIRST_BYTE_TIMEOUT_MS,
      idleTimeoutMs: e.PROVIDER_IDLE_TIMEOUT_MS,
    },
    rateLimit: {
      userLimit: e.RATE_LIMIT_USER,
      anonymousLimit: e.RATE_LIMIT_ANON,
      authLimit: e.RATE_LIMIT_AUTH,
      accountLimit: e.RATE_LIMIT_ACCOUNT,
      windowMs: e.RATE_LIMIT_WINDOW_SECONDS * 1000,
      failClosed: e.RATE_LIMIT_FAIL_CLOSED,
      prefix: e.RATE_LIMIT_PREFIX,
      ipv6Prefix: e.RATE_LIMIT_IPV6_PREFIX,
    },
    upstash:
      e.UPSTASH_REDIS_REST_URL && e.UPSTASH_REDIS_REST_TOKEN
        ? { url: e.UPSTASH_REDIS_REST_URL, token: e.UPSTASH_REDIS_REST_TOKEN }
        : undefined,
    auth: {
      jwtSecret: e.JWT_SECRET,
      ttlSeconds: e.JWT_TTL_SECONDS,
      clockSkewSeconds: e.JWT_CLOCK_SKEW_SECONDS,
      issuer: e.JWT_ISSUER,
      jwks: e.JWT_JWKS_URL ? { url: e.JWT_JWKS_URL, issuer: e.JWT_JWKS_ISSUER!, audience: e.JWT_JWKS_AUDIENCE! } : undefined,
      required: e.AUTH_REQUIRED,
      cookieSecure: e.COOKIE_SECURE,
      cookieSameSite: e.COOKIE_SAMESITE,
      sessionCacheMs: e.AUTH_SESSION_CACHE_MS,
      hashing: { concurrency: e.AUTH_HASH_CONCURRENCY, queue: e.AUTH_HASH_QUEUE, maxWaitMs: e.AUTH_HASH_MAX_WAIT_MS },
      apiKeysMaxPerUser: e.API_KEYS_MAX_PER_USER,
    },
    mongo: e.MONGODB_URI ? { uri: e.MONGODB_URI, db: e.MONGODB_DB, connectTimeoutMs: e.MONGODB_CONNECT_TIMEOUT_MS } : undefined,
    trustProxy: e.TRUST_PROXY,
    docsAssetsUrl: e.DOCS_ASSETS_URL,
    socket: {
      pingIntervalMs: e.SOCKET_PING_INTERVAL_MS,
      pingTimeoutMs: e.SOCKET_PING_TIMEOUT_MS,
      perMessageDeflate: e.SOCKET_PER_MESSAGE_DEFLATE,
      maxBufferBytes: e.SOCKET_MAX_BUFFER_BYTES,
      maxConnectionsPerIp: e.SOCKET_MAX_CONNECTIONS_PER_IP,
      maxEventsPerSecond: e.SOCKET_MAX_EVENTS_PER_SECOND,
      maxEventsPerIpPerSecond: e.SOCKET_MAX_EVENTS_PER_IP_PER_SECOND,
      transports: e.SOCKET_TRANSPORTS,
      maxBacklogBytes: e.SOCKET_MAX_BACKLOG_BYTES,
    },
    redis: e.REDIS_URL ? { url: e.REDIS_URL, prefix: e.REDIS_KEY_PREFIX, queueMax: e.REDIS_QUEUE_MAX } : undefined,
    clusterWorkers: e.CLUSTER_WORKERS,
    streams: { resumeTtlSeconds: e.STREAM_RESUME_TTL_S, maxBytes: e.STREAM_RESUME_MAX_BYTES, redisReaders: e.STREAM_RESUME_REDIS_READERS, onDisconnect: e.STREAM_ON_DISCONNECT },
    slowClientTimeoutMs: e.SLOW_CLIENT_TIMEOUT_MS,
    turnStartsPerTick: e.TURN_STARTS_PER_TICK,
    streamSliceMs: e.STREAM_SLICE_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    memory: {
      enabled: e.MEMORY_ENABLED,
      topK: e.MEMORY_TOP_K,
      minScore: e.MEMORY_MIN_SCORE,
      recallTimeoutMs: e.MEMORY_RECALL_TIMEOUT_MS,
      embedding: { provider: e.EMBEDDING_PROVIDER, model: e.EMBEDDING_MODEL, dimensions: e.EMBEDDING_DIMENSIONS },
      pinecone: e.PINECONE_API_KEY
        ? { apiKey: e.PINECONE_API_KEY, index: e.PINECONE_INDEX, host: e.PINECONE_INDEX_HOST, maxRetries: e.PINECONE_MAX_RETRIES }
        : undefined,
    },
    realtime: {
      provider: realtimeProvider(e),
      maxAudioChunkBytes: e.REALTIME_MAX_AUDIO_CHUNK_BYTES,
      maxSessionsPerClient: e.REALTIME_MAX_SESSIONS_PER_CLIENT,
      idleTimeoutMs: e.REALTIME_IDLE_TIMEOUT_MS,
      maxSessionMs: e.REALTIME_MAX_SESSION_MS,
    },
    metrics: {
      enabled: e.METRICS_ENABLED,
      token: e.METRICS_TOKEN,
      listener: e.METRICS_PORT === undefined ? undefined : { port: e.METRICS_PORT, host: e.METRICS_HOST ?? '127.0.0.1' },
    },
  };
}

/**
 * The realtime provider: REALTIME_PROVIDER when set; otherwise OpenAI when it has a key of its
 * own (REALTIME_API_KEY) or the chat key is OpenAI's own (no OPENAI_BASE_URL: a compatible chat
 * server rarely speaks Realtime), else Gemini Live with GEMINI_API_KEY, else none.
 */
function realtimeProvider(e: z.infer<typeof configSchema>): Config['realtime']['provider'] {
  const openaiKey = e.REALTIME_API_KEY ?? (e.OPENAI_BASE_URL ? undefined : e.OPENAI_API_KEY);
  const kind = e.REALTIME_PROVIDER ?? (openaiKey ? 'openai' : e.GEMINI_API_KEY ? 'gemini' : 'off');
  if (kind === 'openai') {
    const apiKey = e.REALTIME_API_KEY ?? e.OPENAI_API_KEY;
    if (!apiKey) throw new ConfigError(['REALTIME_PROVIDER=openai: set REALTIME_API_KEY (or OPENAI_API_KEY)']);
    return { kind, apiKey, url: e.REALTIME_URL, model: e.REALTIME_MODEL };
  }
  if (kind === 'gemini') {
    const apiKey = e.REALTIME_API_KEY ?? e.GEMINI_API_KEY;
    if (!apiKey) throw new ConfigError(['REALTIME_PROVIDER=gemini: set GEMINI_API_KEY (or REALTIME_API_KEY)']);
    return { kind, apiKey, baseUrl: e.REALTIME_URL ?? e.GEMINI_BASE_URL, model: e.REALTIME_MODEL };
  }
  return undefined;
}
