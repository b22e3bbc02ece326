import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { MemoryRateLimiter } from './memory-rate-limiter.js';
import type { RateLimiter } from './rate-limiter.js';
import { UpstashRateLimiter } from './upstash-rate-limiter.js';

/** Upstash (shared by every node, HTTP-based so it runs on Node and Workers) when configured, else in-process. */
export function createRateLimiter(config: Config, logger: Logger): RateLimiter {
  return config.upstash
    ? new UpstashRateLimiter({ ...config.upstash, windowMs: config.rateLimit.windowMs, timeoutMs: 2_000, failClosed: config.rateLimit.failClosed, logger })
    : new MemoryRateLimiter(config.rateLimit.windowMs);
}
