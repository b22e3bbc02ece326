import type { Principal } from '../chat/principal.js';
import { addressKey } from './address-key.js';

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
  /** Register and login attempts per window per client IP. */
  authLimit: number;
  windowMs: number;
  /** Anonymous limits count an IPv6 client by its network of this many bits (addressKey). */
  ipv6Prefix: number;
}

/** Counts events per key in a sliding window; one `consume` per chat turn, whatever the protocol. */
export interface RateLimiter {
  readonly kind: string;
  /**
   * Counts one event. When the backend cannot answer, lets it through (logged) unless the
   * limiter fails closed, in which case it throws RATE_LIMIT with HTTP status 503.
   * `windowMs` overrides the configured window (an API key's own per-minute limit); one key
   * is always counted with the same window.
   */
  consume(key: string, limit: number, windowMs?: number): Promise<RateLimitDecision>;
  /** Throws when the backend cannot serve (for /readyz). */
  ping(): Promise<void>;
  /** Whether a backend outage refuses requests (true) or lets them through unlimited (false). */
  readonly failClosed: boolean;
  close(): Promise<void>;
}

/**
 * Keys never contain raw user input: user ids are server-issued and addresses come from the
 * socket (or a trusted proxy); an IPv6 address is counted by its network (addressKey).
 */
export function chatLimit(principal: Principal, policy: Pick<RateLimitPolicy, 'userLimit' | 'anonymousLimit' | 'ipv6Prefix'>): { key: string; limit: number } {
  return principal.userId === null
    ? { key: `chat:ip:${addressKey(principal.ip, policy.ipv6Prefix)}`, limit: policy.anonymousLimit }
    : { key: `chat:user:${principal.userId}`, limit: policy.userLimit };
}

