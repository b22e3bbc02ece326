import type { Principal } from '../chat/principal.js';

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Epoch milliseconds when the window has room again. */
  reset: number;
}

export interface RateLimitPolicy {
  /** Chat turns per window for a signed-in user. */
  userLimit: number;
  /** Chat turns per window for an anonymous client IP. */
  anonymousLimit: number;
  windowMs: number;
}

/** Counts chat turns; one `consume` per turn, whatever the protocol. */
export interface RateLimiter {
  readonly kind: string;
  consume(principal: Principal): Promise<RateLimitDecision>;
  close(): Promise<void>;
}

/** Keys never contain raw user input: user ids are server-issued and IPs are normalised. */
export function limitKey(principal: Principal): { key: string; anonymous: boolean } {
  return principal.userId === null
    ? { key: `ip:${principal.ip}`, anonymous: true }
    : { key: `user:${principal.userId}`, anonymous: false };
}
