import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RateLimitDecision, RateLimiter } from './rate-limiter.js';

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

/**
 * Sliding-window limits in Upstash Redis (@upstash/ratelimit), shared by every node that
 * points at the same database. When Redis is slow or down the request is let through and
 * the failure logged (a limiter outage need not take chat down with it), unless
 * RATE_LIMIT_FAIL_CLOSED asks to refuse instead; /readyz reports the outage either way.
 */
export class UpstashRateLimiter implements RateLimiter {
  readonly kind = 'upstash';
  readonly failClosed: boolean;
  readonly #redis: Redis;
  /** One Ratelimit per limit and window (`limit` or `limit/windowMs`). */
  readonly #byLimit = new Map<string, Ratelimit>();

  constructor(private readonly options: UpstashRateLimiterOptions) {
    this.#redis = new Redis({ url: options.url, token: options.token, retry: { retries: 1, backoff: () => 50 } });
    this.failClosed = options.failClosed;
  }

  #limiter(limit: number, windowMs: number): Ratelimit {
    // The configured window keeps its original prefix, so counts survive an upgrade.
    const id = windowMs === this.options.windowMs ? `${limit}` : `${limit}/${windowMs}`;
    let limiter = this.#byLimit.get(id);
    if (!limiter) {
      limiter = new Ratelimit({
        redis: this.#redis,
        limiter: Ratelimit.slidingWindow(limit, `${windowMs} ms`),
        prefix: `${this.options.prefix}:${id}`,
        timeout: this.options.timeoutMs,
        analytics: false,
      });
      this.#byLimit.set(id, limiter);
    }
    return limiter;
  }

  async consume(key: string, limit: number, windowMs = this.options.windowMs): Promise<RateLimitDecision> {
    let failure: unknown;
    try {
      const r = await this.#limiter(limit, windowMs).limit(key);
      if (r.reason !== 'timeout') return { allowed: r.success, limit: r.limit, remaining: Math.max(0, r.remaining), reset: r.reset };
      failure = new Error(`no answer within ${this.options.timeoutMs} ms`);
    } catch (err) {
      failure = err;
    }
    if (this.failClosed) {
      this.options.logger.error({ err: failure }, 'rate limiter unavailable; request refused (RATE_LIMIT_FAIL_CLOSED)');
      throw new AppError('RATE_LIMIT', 'Rate limiting is unavailable, so requests are refused for now; retry shortly', {
        status: 503,
        details: { retryAfterSeconds: 5 },
      });
    }
    this.options.logger.error({ err: failure }, 'rate limiter unavailable; request let through');
    return { allowed: true, limit, remaining: limit, reset: Date.now() + windowMs };
  }

  async ping() {
    const answer = await Promise.race([
      this.#redis.ping(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in time')), this.options.timeoutMs).unref?.()),
    ]);
    if (answer !== 'PONG') throw new Error('unexpected answer to PING');
  }

  async close() {
    this.#byLimit.clear();
  }
}
