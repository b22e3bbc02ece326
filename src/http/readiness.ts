import type { Services } from '../services.js';
import { withDeadline } from '../stall-breaker.js';

export interface DependencyCheck {
  status: 'ok' | 'down';
  kind: string;
  ms: number;
  /** Why it is down, in words (no stack, no address with credentials). */
  error?: string;
  /** What a client sees while it is down. */
  effect?: string;
}

export interface Readiness {
  status: 'ready' | 'degraded' | 'unavailable' | 'shutting-down';
  checks: Record<string, DependencyCheck>;
  /** Long-term memory: `degraded` means turns answer with short-term context only. */
  memory?: { status: 'ok' | 'degraded' | 'off'; store?: string; embedder?: string; error?: string };
  providers: string[];
  defaultModel: string;
}

const CHECK_TIMEOUT_MS = 3_000;

/**
 * Each dependency's state. `unavailable` (HTTP 503) when requests would fail: the store is
 * down, or the rate limiter is down and fails closed. `degraded` (200) when the gateway still
 * serves but without something: a fail-open limiter that is down lets every turn through
 * unlimited, and long-term memory that is down leaves turns with short-term context only.
 */
export async function readiness(services: Services): Promise<Readiness> {
  const base = { providers: services.models.providers, defaultModel: services.models.defaultModel };
  if (services.turns.closing) return { status: 'shutting-down', checks: {}, ...base };
  const { cluster } = services;
  const [store, rateLimiter, memory, redis] = await Promise.all([
    check(services.store.kind, () => services.store.ping()),
    check(services.limiter.kind, () => services.limiter.ping()),
    services.memory ? services.memory.health() : Promise.resolve({ status: 'off' as const }),
    cluster ? check(cluster.kind, () => cluster.ping()) : undefined,
  ]);
  // Without Redis this node still serves its own clients; what is shared across nodes is not.
  if (redis?.status === 'down') redis.effect = 'this node serves its own clients only: other tabs on other nodes, stops from other nodes and resumes on other nodes miss its turns';
  if (rateLimiter.status === 'down') {
    rateLimiter.effect = services.limiter.failClosed ? 'chat and sign-in are refused (RATE_LIMIT_FAIL_CLOSED)' : 'requests pass without rate limits';
  }
  const checks: Record<string, DependencyCheck> = redis ? { store, rateLimiter, redis } : { store, rateLimiter };
  const unavailable = store.status === 'down' || (rateLimiter.status === 'down' && services.limiter.failClosed);
  const degraded = Object.values(checks).some((c) => c.status === 'down') || memory.status === 'degraded';
  const status = unavailable ? 'unavailable' : degraded ? 'degraded' : 'ready';
  return { status, checks, memory, ...base };
}

async function check(kind: string, ping: () => Promise<void>): Promise<DependencyCheck> {
  const started = performance.now();
  try {
    await withDeadline(ping(), CHECK_TIMEOUT_MS, new Error('no answer in time'));
    return { status: 'ok', kind, ms: elapsed(started) };
  } catch (err) {
    return { status: 'down', kind, ms: elapsed(started), error: describe(err) };
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown; cause?: { code?: unknown } })?.cause?.code ?? (err as { code?: unknown })?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.message.replace(/https?:\/\/\S+/g, '<url>').slice(0, 120) : 'unknown error';
}
