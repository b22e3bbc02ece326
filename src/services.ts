import { Authenticator } from './auth/authenticator.js';
import { TokenService } from './auth/token-service.js';
import { ChatPipeline } from './chat/chat-pipeline.js';
import { TurnTracker } from './chat/turn-tracker.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { createModelRegistry, type ModelRegistry } from './models/model-registry.js';
import type { RateLimiter } from './ratelimit/rate-limiter.js';
import type { ConversationStore } from './stores/conversation-store.js';

/** Everything the protocol adapters need, built once per process by a runtime entry. */
export interface Services {
  config: Config;
  logger: Logger;
  store: ConversationStore;
  limiter: RateLimiter;
  models: ModelRegistry;
  turns: TurnTracker;
  pipeline: ChatPipeline;
  tokens: TokenService;
  auth: Authenticator;
}

export interface Backends {
  logger: Logger;
  store: ConversationStore;
  limiter: RateLimiter;
  /** HS256 key for this server's tokens (JWT_SECRET, or one generated and kept by the runtime entry). */
  jwtSecret: Uint8Array;
}

export function createServices(config: Config, backends: Backends): Services {
  const models = createModelRegistry(config);
  const turns = new TurnTracker();
  const pipeline = new ChatPipeline({
    store: backends.store,
    models,
    limiter: backends.limiter,
    rateLimits: config.rateLimit,
    turns,
    logger: backends.logger,
    options: {
      systemPrompt: config.chat.systemPrompt,
      historyLimit: config.chat.historyLimit,
      maxOutputTokens: config.chat.maxOutputTokens,
    },
  });
  const tokens = new TokenService({
    secret: backends.jwtSecret,
    ttlSeconds: config.auth.ttlSeconds,
    clockSkewSeconds: config.auth.clockSkewSeconds,
    issuer: config.auth.issuer,
    jwks: config.auth.jwks,
  });
  const auth = new Authenticator(tokens, config.auth.required);
  const { logger, store, limiter } = backends;
  return { config, logger, store, limiter, models, turns, pipeline, tokens, auth };
}
