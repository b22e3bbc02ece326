import { Accounts } from './auth/accounts.js';
import { ApiKeys } from './auth/api-keys.js';
import { AnonymousSessions } from './auth/anonymous-sessions.js';
import { Authenticator } from './auth/authenticator.js';
import { BoundedPasswordHasher, type PasswordHasher } from './auth/password-hasher.js';
import { SessionRegistry } from './auth/session-registry.js';
import { TokenService } from './auth/token-service.js';
import { StartGate } from './chat/start-gate.js';
import { ChatPipeline } from './chat/chat-pipeline.js';
import { TurnTracker } from './chat/turn-tracker.js';
import type { ClusterLink, TurnCoordinator } from './chat/turn-coordinator.js';
import { InProcessTurnStreams, type TurnStreams } from './chat/turn-streams.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { createModelRegistry, type ModelRegistry } from './models/model-registry.js';
import type { RateLimiter } from './ratelimit/rate-limiter.js';
import type { ConversationStore } from './stores/conversation-store.js';
import type { LongTermMemory } from './memory/long-term-memory.js';
import type { MemoryEraser } from './memory/memory-deletions.js';
import { originPolicy, type OriginPolicy } from './origins.js';
import { noopMetrics, type Metrics } from './metrics/metrics.js';
import { countingRefusals } from './ratelimit/counting-refusals.js';

/** Everything the protocol adapters need, built once per process by a runtime entry. */
export interface Services {
  config: Config;
  logger: Logger;
  store: ConversationStore;
  limiter: RateLimiter;
  models: ModelRegistry;
  turns: TurnTracker;
  /** Several nodes (REDIS_URL): BUSY and stops across nodes; undefined on one node. */
  coordinator: TurnCoordinator | undefined;
  /** The shared service behind `coordinator` (health, shutdown). */
  cluster: ClusterLink | undefined;
  /** Turn logs for resuming (Redis with REDIS_URL, else in process); undefined when STREAM_RESUME_TTL_S=0. */
  streams: TurnStreams | undefined;
  pipeline: ChatPipeline;
  /** Takes bursts of chat requests in arrival order, TURN_STARTS_PER_TICK per pass of the event loop (see StartGate). */
  arrivalGate: StartGate;
  /** Spreads bursts of turn starts over passes of the event loop (TURN_STARTS_PER_TICK). */
  startGate: StartGate;
  tokens: TokenService;
  /** Sign-in sessions (revocation); undefined where the store is not shared (Workers). */
  sessions: SessionRegistry | undefined;
  auth: Authenticator;
  accounts: Accounts;
  /** Gateway API keys (`/api/v2/keys`): per isolate on Workers, like everything else in its memory store. */
  apiKeys: ApiKeys;
  /** The one browser-origin rule (HTTP CORS, Socket.IO, WebSocket upgrades). */
  origins: OriginPolicy;
  /** Long-term memory of signed-in users; undefined when switched off (MEMORY_ENABLED=false, or Workers). */
  memory: LongTermMemory | undefined;
  /**
   * What deleting a conversation or an account deletes from long-term memory: `memory` when it
   * is on; while it is off, the store kept from when it was on (see MemoryDeletions); undefined
   * when there is none (Workers).
   */
  memoryDeletions: MemoryEraser | undefined;
  /** What the gateway reports about itself; the no-op implementation unless the runtime entry passes one. */
  metrics: Metrics;
}

export interface Backends {
  logger: Logger;
  store: ConversationStore;
  limiter: RateLimiter;
  /** HS256 key for this server's tokens (JWT_SECRET, or one generated and kept by the runtime entry). */
  jwtSecret: Uint8Array;
  /** Argon2id: native on Node, pure JS on Workers. Bounded here. */
  hasher: PasswordHasher;
  /** Whether tokens are checked against stored sessions (false where every isolate has its own memory store). */
  revocableTokens: boolean;
  /** The model registry, when the runtime entry built it (Node picks a default model by asking the provider). */
  models?: ModelRegistry | undefined;
  memory?: LongTermMemory | undefined;
  /** Deletions from a memory store kept while memory is switched off (unused when `memory` is set). */
  memoryDeletions?: MemoryEraser | undefined;
  /** Several nodes: Redis (REDIS_URL). */
  cluster?: ClusterLink | undefined;
  metrics?: Metrics | undefined;
}

export function createServices(config: Config, backends: Backends): Services {
  const { logger, store } = backends;
  const metrics = backends.metrics ?? noopMetrics;
  const limiter = metrics.enabled ? countingRefusals(backends.limiter, metrics) : backends.limiter;
  const models = backends.models ?? createModelRegistry(config, logger);
  const turns = new TurnTracker();
  const { memory, cluster } = backends;
  const memoryDeletions = memory ?? backends.memoryDeletions;
  const { resumeTtlSeconds, maxBytes, onDisconnect } = config.streams;
  const streams = resumeTtlSeconds === 0 ? undefined : cluster ? cluster.streams : new InProcessTurnStreams({ ttlMs: resumeTtlSeconds * 1000, maxBytes });
  // A stop asked on any node reaches the turn here, if it runs here.
  cluster?.onStop((conversationKey) => turns.stopWhenStarted(conversationKey));
  const arrivalGate = new StartGate(config.turnStartsPerTick);
  const startGate = new StartGate(config.turnStartsPerTick);
  const pipeline = new ChatPipeline({
    store,
    memory,
    models,
    limiter,
    rateLimits: config.rateLimit,
    turns,
    coordinator: cluster,
    streams,
    logger,
    metrics,
    arrivalGate,
    startGate,
    options: {
      systemPrompt: config.chat.systemPrompt,
      historyLimit: config.chat.historyLimit,
      maxOutputTokens: config.chat.maxOutputTokens,
      maxMessageChars: config.chat.maxMessageChars,
      firstByteTimeoutMs: config.models.firstByteTimeoutMs,
      idleTimeoutMs: config.models.idleTimeoutMs,
      slowClientTimeoutMs: config.slowClientTimeoutMs,
      continueOnDisconnect: onDisconnect === 'continue',
    },
  });
  const tokens = new TokenService({
    secret: backends.jwtSecret,
    ttlSeconds: config.auth.ttlSeconds,
    clockSkewSeconds: config.auth.clockSkewSeconds,
    issuer: config.auth.issuer,
    jwks: config.auth.jwks,
  });
  const sessions = backends.revocableTokens ? new SessionRegistry(store, { cacheMs: config.auth.sessionCacheMs }) : undefined;
  const apiKeys = new ApiKeys({ store, maxPerUser: config.auth.apiKeysMaxPerUser, cacheMs: config.auth.sessionCacheMs, logger, revocableSessions: backends.revocableTokens });
  const auth = new Authenticator({ tokens, required: config.auth.required, anonymous: new AnonymousSessions(backends.jwtSecret), sessions, apiKeys });
  const accounts = new Accounts({
    store,
    hasher: new BoundedPasswordHasher(backends.hasher, config.auth.hashing),
    tokens,
    sessions,
    apiKeys,
    limiter,
    limits: {
      perIp: config.rateLimit.authLimit,
      perAccount: config.rateLimit.accountLimit,
      windowMs: config.rateLimit.windowMs,
      ipv6Prefix: config.rateLimit.ipv6Prefix,
    },
    turns,
    logger,
  });
  // Memory switched off still deletes what was remembered while it was on.
  if (memoryDeletions) accounts.onDelete((userId) => memoryDeletions.erase(userId));
  // Before the account goes: its keys' open sockets and realtime sessions are cut with them.
  accounts.onDelete(async (userId) => void (await apiKeys.revokeAll(userId)));
  const origins = originPolicy(config.corsOrigins, logger);
  return { config, logger, store, limiter, models, turns, coordinator: cluster, cluster, streams, pipeline, arrivalGate, startGate, tokens, sessions, auth, accounts, apiKeys, origins, memory, memoryDeletions, metrics };
}
