import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import type { Logger } from '../logger.js';
import type { RateLimitDecision, RateLimiter } from './rate-limiter.js';

export interface UpstashRateLimiterOptions {
  url: string;
  token: string;
  windowMs: number;
  prefix: string;
  /** How long to wait for Redis before letting the request through. */
  timeoutMs: number;
  logger: Logger;
}

/**
 * Sliding-window limits in Upstash Redis (@upstash/ratelimit), shared by every node that
 * points at the same database. When Redis is slow or down the request is let through and
 * the failure logged: a limiter outage must not take chat down with it.
 */
export class UpstashRateLimiter implements RateLimiter {
  readonly kind = 'upstash';
  readonly #redis: Redis;
  readonly #byLimit = new Map<number, Ratelimit>();

  constructor(private readonly options: UpstashRateLimiterOptions) {
    this.#redis = new Redis({ url: options.url, token: options.token, retry: { retries: 1, backoff: () => 50 } });
  }

  #limiter(limit: number): Ratelimit {
    let limiter = this.#byLimit.get(limit);
    if (!limiter) {
      limiter = new Ratelimit({
        redis: this.#redis,
        limiter: Ratelimit.slidingWindow(limit, `${this.options.windowMs} ms`),
        prefix: `${this.options.prefix}:${limit}`,
        timeout: this.options.timeoutMs,
        analytics: false,
      });
      this.#byLimit.set(limit, limiter);
    }
    return limiter;
  }

  async consume(key: string, limit: number): Promise<RateLimitDecision> {
    try {
      const r = await this.#limiter(limit).limit(key);
      if (r.reason === 'timeout') this.options.logger.warn({ key }, 'rate limiter timed out; request let through');
      return { allowed: r.success, limit: r.limit, remaining: Math.max(0, r.remaining), reset: r.reset };
    } catch (err) {
      this.options.logger.error({ err }, 'rate limiter unavailable; request let through');
      return { allowed: true, limit, remaining: limit, reset: Date.now() + this.options.windowMs };
    }
  }

  async close() {
    this.#byLimit.clear();
  }
}
