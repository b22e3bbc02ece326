import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { MemoryRateLimiter } from './memory-rate-limiter.js';
import type { RateLimiter } from './rate-limiter.js';
import { RedisRateLimiter, type RatelimitRedis } from './redis-rate-limiter.js';
import { UpstashRateLimiter } from './upstash-rate-limiter.js';

const REDIS_TIMEOUT_MS = 2_000;

/**
 * Upstash when configured (HTTP-based, so it runs on Node and Workers); else the Redis of
 * REDIS_URL when the runtime has connected one (`redis`); either is shared by every node.
 * Without both, in-process.
 */
export function createRateLimiter(config: Config, logger: Logger, redis?: RatelimitRedis): RateLimiter {
  const { windowMs, failClosed, prefix } = config.rateLimit;
  const shared = { windowMs, prefix, timeoutMs: REDIS_TIMEOUT_MS, failClosed, logger };
  if (config.upstash) return new UpstashRateLimiter({ ...shared, url: config.upstash.url, token: config.upstash.token });
  if (redis) return new RedisRateLimiter({ ...shared, kind: 'redis', redis });
  return new MemoryRateLimiter(windowMs);
}
