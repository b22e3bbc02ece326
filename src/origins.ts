import type { Logger } from './logger.js';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const REFUSAL_LOG_INTERVAL_MS = 60_000;
const REMEMBERED_REFUSALS = 1_000;
/** Refusal records per minute, all origins together: a flood of forged origins cannot flood the log. */
const REFUSAL_LOGS_PER_INTERVAL = 20;

/**
 * The one browser-origin rule for HTTP (CORS), Socket.IO (CORS and the WebSocket handshake)
 * and the /v1/realtime upgrade:
 * - the gateway's own origin (the Origin's host is the request's Host) is always allowed;
 * - with CORS_ORIGIN set, exactly the listed origins ("*" reflects any origin);
 * - with CORS_ORIGIN unset, loopback origins on any port, so local front ends just work.
 * Refusals are logged (at most once a minute per origin) with the variable to set, because
 * the browser only tells its user "Failed to fetch".
 */
export type OriginPolicy = (origin: string, host: string | undefined, options?: { quiet?: boolean }) => boolean;

export function originPolicy(configured: readonly string[] | undefined, logger: Logger): OriginPolicy {
  const any = configured?.includes('*') ?? false;
  const listed = new Set(configured ?? []);
  const lastLogged = new Map<string, number>();
  let windowStart = 0;
  let loggedInWindow = 0;

  const allowed = (origin: string, host: string | undefined): boolean => {
    if (any || listed.has(origin)) return true;
    const parsed = parseOrigin(origin);
    if (!parsed) return false;
    if (host !== undefined && parsed.host === host.toLowerCase()) return true;
    return configured === undefined && LOOPBACK_HOSTS.has(parsed.hostname);
  };

  return (origin, host, options) => {
    if (allowed(origin, host)) return true;
    if (options?.quiet) return false;
    const now = Date.now();
    if (now - windowStart >= REFUSAL_LOG_INTERVAL_MS) {
      windowStart = now;
      loggedInWindow = 0;
    }
    const key = origin.slice(0, 200);
    if ((lastLogged.get(key) ?? 0) + REFUSAL_LOG_INTERVAL_MS <= now && loggedInWindow < REFUSAL_LOGS_PER_INTERVAL) {
      if (lastLogged.size >= REMEMBERED_REFUSALS) lastLogged.clear();
      lastLogged.set(key, now);
      loggedInWindow++;
      logger.warn(
        { origin: key, allowed: configured ?? 'loopback origins (CORS_ORIGIN unset)' },
        'refused a browser request from this origin; add it to CORS_ORIGIN (comma-separated) to allow it',
      );
    }
    return false;
  };
}

function parseOrigin(origin: string): { host: string; hostname: string } | undefined {
  try {
    const url = new URL(origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return { host: url.host.toLowerCase(), hostname: url.hostname.toLowerCase() };
  } catch {
    return undefined;
  }
}
