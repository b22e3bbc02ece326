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
}

export function createServices(config: Config, backends: { logger: Logger; store: ConversationStore; limiter: RateLimiter }): Services {
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
  return { config, ...backends, models, turns, pipeline };
}
