import { Redis } from '@upstash/redis';
import type { Logger } from '../logger.js';
import { RedisRateLimiter } from './redis-rate-limiter.js';

export interface UpstashRateLimiterOptions {
  url: string;
  token: string;
  windowMs: number;
  prefix: string;
  /** How long to wait for Redis before giving up on it. */
  timeoutMs: number;
  /** When Redis cannot answer: refuse (true) or let the request through unlimited (false, logged). */
  failClosed: boolean;
  logger: Logger;
}

/** The Redis limiter over Upstash's REST API (fetch only, so it runs on Node and Workers). */
export class UpstashRateLimiter extends RedisRateLimiter {
  constructor({ url, token, ...options }: UpstashRateLimiterOptions) {
    super({ ...options, kind: 'upstash', redis: new Redis({ url, token, retry: { retries: 1, backoff: () => 50 } }) });
  }
}
