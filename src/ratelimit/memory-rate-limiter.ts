import type { RateLimitDecision, RateLimiter } from './rate-limiter.js';

interface Windows {
  /** The key's window length. */
  ms: number;
  start: number;
  current: number;
  previous: number;
}

/**
 * In-process sliding window (the same approximation as @upstash/ratelimit's slidingWindow:
 * this window's count plus the previous window's, weighted by how much of it still
 * overlaps). Per process only; REDIS_URL or UPSTASH_REDIS_REST_URL share limits across nodes.
 */
export class MemoryRateLimiter implements RateLimiter {
  readonly kind = 'memory';
  readonly failClosed = false;
  readonly #state = new Map<string, Windows>();
  #sweepAt = 0;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async consume(key: string, limit: number, windowMs = this.windowMs): Promise<RateLimitDecision> {
    const now = this.now();
    this.#sweep(now);
    const start = now - (now % windowMs);
    let w = this.#state.get(key);
    if (!w || w.start < start - windowMs) w = { ms: windowMs, start, current: 0, previous: 0 };
    else if (w.start < start) w = { ms: windowMs, start, current: 0, previous: w.current };
    this.#state.set(key, w);

    const overlap = 1 - (now - start) / windowMs;
    const used = Math.floor(w.previous * overlap) + w.current;
    const reset = start + windowMs;
    if (used >= limit) return { allowed: false, limit, remaining: 0, reset };
    w.current++;
    return { allowed: true, limit, remaining: Math.max(0, limit - used - 1), reset };
  }

  /** Drops keys idle for two of their windows, at most once a (configured) window, so memory stays bounded. */
  #sweep(now: number) {
    if (now < this.#sweepAt) return;
    this.#sweepAt = now + this.windowMs;
    for (const [key, w] of this.#state) if (w.start < now - 2 * w.ms) this.#state.delete(key);
  }

  async ping() {}

  async close() {
    this.#state.clear();
  }
}
