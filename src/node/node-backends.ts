import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { MemoryRateLimiter } from '../ratelimit/memory-rate-limiter.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import type { ConversationStore } from '../stores/conversation-store.js';
import { SqliteConversationStore } from '../stores/sqlite-conversation-store.js';

/** The one wiring module for Node: configuration picks each port's adapter. */
export async function createNodeBackends(config: Config, logger: Logger): Promise<{ store: ConversationStore; limiter: RateLimiter }> {
  const store = new SqliteConversationStore(join(config.dataDir, 'gateway.sqlite'));
  const limiter = new MemoryRateLimiter(config.rateLimit);
  logger.info({ store: store.kind, rateLimiter: limiter.kind }, 'backends ready');
  return { store, limiter };
}
