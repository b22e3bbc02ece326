import { AppError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RateLimiter } from './rate-limiter.js';

/**
 * The limiter every caller shares, counting its refusals by limit kind: one place for chat
 * turns (every protocol), realtime sessions and sign-in attempts alike.
 */
export function countingRefusals(limiter: RateLimiter, metrics: Pick<Metrics, 'rateLimited'>): RateLimiter {
  return {
    get kind() {
      return limiter.kind;
    },
    get failClosed() {
      return limiter.failClosed;
    },
    consume: (key, limit, windowMs) =>
      limiter.consume(key, limit, windowMs).then(
        (decision) => {
          if (!decision.allowed) metrics.rateLimited(limitKind(key));
          return decision;
        },
        (err: unknown) => {
          // A fail-closed limiter that cannot answer refuses everyone.
          if (err instanceof AppError && err.code === 'RATE_LIMIT') metrics.rateLimited('limiter_unavailable');
          throw err;
        },
      ),
    ping: () => limiter.ping(),
    close: () => limiter.close(),
  };
}

/**
 * What a key limits, without whom: keys are `kind:scope:id` (`chat:user:<id>`, `auth:ip:<ip>`,
 * an IPv6 address holding colons of its own), so the first two parts; `kind:id` keys give one.
 */
export function limitKind(key: string): string {
  const first = key.indexOf(':');
  if (first < 0) return key;
  const second = key.indexOf(':', first + 1);
  return second < 0 ? key.slice(0, first) : key.slice(0, second);
}
