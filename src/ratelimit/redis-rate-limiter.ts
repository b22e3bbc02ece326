import { Ratelimit } from '@upstash/ratelimit';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { BoundedMap } from '../bounded-map.js';
import { GuardedService, STALL_COOL_MS } from '../stall-breaker.js';
import type { RateLimitDecision, RateLimiter } from './rate-limiter.js';

/**
 * What @upstash/ratelimit's sliding window sends to Redis: EVALSHA, then EVAL with the
 * script's text when the server answers NOSCRIPT (its `safeEval`); PING is for /readyz.
 * `@upstash/redis` (REST) and the node-redis connection of REDIS_URL both provide it.
 */
export interface RatelimitRedis {
  evalsha(sha1: string, keys: string[], args: unknown[]): Promise<unknown>;
  eval(script: string, keys: string[], args: unknown[]): Promise<unknown>;
  ping(): Promise<string>;
}

/** Ratelimit types its client as @upstash/redis's class, of which the sliding window's `limit` calls only the above (GET/SET serve dynamic limits, off here). */
type RatelimitClient = ConstructorParameters<typeof Ratelimit>[0]['redis'];

/** Refused identifiers each limit remembers in the process (one is ~150 bytes). */
const BLOCKED_CACHE_MAX = 10_000;
/** Limiters (distinct limits and windows) kept at once. */
const LIMITERS_MAX = 256;

export interface RedisRateLimiterOptions {
  /** What /readyz and the start-up log call this limiter. */
  kind: string;
  redis: RatelimitRedis;
  windowMs: number;
  prefix: string;
  /** How long to wait for Redis before giving up on it. */
  timeoutMs: number;
  /** When Redis cannot answer: refuse (true) or let the request through unlimited (false, logged). */
  failClosed: boolean;
  logger: Logger;
}

/**
 * Sliding-window limits in Redis through @upstash/ratelimit, shared by every node that
 * points at the same database: the same scripts, keys and arithmetic whichever way Redis is
 * reached, so counts mean the same under Upstash and under REDIS_URL. When Redis is slow or
 * down the request is let through and the failure logged (a limiter outage need not take
 * chat down with it), unless RATE_LIMIT_FAIL_CLOSED asks to refuse instead; /readyz reports
 * the outage either way.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly kind: string;
  readonly failClosed: boolean;
  /**
   * One Ratelimit per limit and window (`limit` or `limit/windowMs`), the most recently used
   * kept: API keys choose their own per-minute limit (1-100,000), and a user creating keys of
   * ever new limits would otherwise grow this (≈ 1.4 KB each) for good. One made again is
   * the same limit: its counts are in Redis.
   */
  readonly #byLimit = new BoundedMap<string, Ratelimit>(LIMITERS_MAX);
  /**
   * A Redis that timed out is not asked again for STALL_COOL_MS: a stall costs one wait every
   * few seconds, not one per request. PING goes through it whole; `limit` times out by itself
   * (Ratelimit's `timeout`), so consume settles the breaker from its answer.
   */
  readonly #redis = new GuardedService('Redis', STALL_COOL_MS);

  constructor(private readonly options: RedisRateLimiterOptions) {
    this.kind = options.kind;
    this.failClosed = options.failClosed;
  }

  #limiter(limit: number, windowMs: number): Ratelimit {
    // The configured window keeps its original prefix, so counts survive an upgrade.
    const id = windowMs === this.options.windowMs ? `${limit}` : `${limit}/${windowMs}`;
    let limiter = this.#byLimit.get(id);
    if (!limiter) {
      limiter = new Ratelimit({
        redis: this.options.redis as unknown as RatelimitClient,
        limiter: Ratelimit.slidingWindow(limit, `${windowMs} ms`),
        prefix: `${this.options.prefix}:${id}`,
        timeout: this.options.timeoutMs,
        analytics: false,
        // Identifiers refused until their window resets, answered without asking Redis. The
        // library's default Map keeps an identifier until it is asked for again after its reset,
        // so clients that stop coming (or rotate addresses) would grow it without bound.
        ephemeralCache: new BoundedMap<string, number>(BLOCKED_CACHE_MAX),
      });
      this.#byLimit.set(id, limiter);
    }
    return limiter;
  }

  async consume(key: string, limit: number, windowMs = this.options.windowMs): Promise<RateLimitDecision> {
    let failure: unknown;
    const breaker = this.#redis.breaker;
    if (breaker.skip()) failure = new Error('Redis let a request time out a moment ago; not asked until it answers again');
    else {
      try {
        const r = await this.#limiter(limit, windowMs).limit(key);
        if (r.reason !== 'timeout') {
          // Only an answer that came from Redis says Redis is back: one from the process's cache
          // of refused clients (`cacheBlock`) asked nothing, and a refused client, who asks most
          // during an outage, would otherwise close the breaker for everyone to wait on again.
          if (r.reason === undefined) breaker.succeeded();
          else breaker.released();
          return { allowed: r.success, limit: r.limit, remaining: Math.max(0, r.remaining), reset: r.reset };
        }
        // Only silence opens the breaker: a refused or closed connection fails at once anyway.
        failure = new Error(`no answer within ${this.options.timeoutMs} ms`);
        breaker.failed();
      } catch (err) {
        failure = err;
        breaker.released();
      }
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
    // A PONG that comes after all means Redis is back: requests ask it again.
    const answer = await this.#redis.call(() => this.options.redis.ping(), this.options.timeoutMs, 'a ping');
    if (answer !== 'PONG') throw new Error('unexpected answer to PING');
  }

  /** Forgets its limiters; the connection belongs to whoever passed it in. */
  async close() {
    this.#byLimit.clear();
  }
}
