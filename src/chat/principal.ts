/**
 * Who is asking. Identity comes only from a verified token (or, for anonymous callers, the
 * server-signed anonymous-session cookie); the IP keys anonymous rate limits.
 */
export interface Principal {
  userId: string | null;
  ip: string;
  /** The id in a valid anonymous-session cookie; null for signed-in users and cookie-less clients. */
  anonymousId: string | null;
  /** The sign-in session the caller's token names (this server's own tokens only). */
  sessionId?: string | null | undefined;
  /**
   * The gateway API key the caller authenticated with (`Authorization: Bearer gk_…`); the
   * principal is then the key's user. `models`: the key's allow-list (null: whatever the server
   * allows); `rateLimitPerMinute`: its own chat limit on top of the user's (null: none);
   * `expiresAt`: when it stops being accepted (ms since the epoch; null: never), for what outlives
   * the request (a socket, a realtime session).
   */
  apiKey?: { id: string; models: string[] | null; rateLimitPerMinute: number | null; expiresAt?: number | null | undefined } | undefined;
}

export const isAnonymous = (p: Principal): boolean => p.userId === null;

/**
 * The owner new conversations are created under (PROTOCOLS.md section 0): the user; else the
 * anonymous session from the signed cookie; else the client IP.
 */
export function ownerOf(p: Principal): string {
  if (p.userId !== null) return p.userId;
  return p.anonymousId ? `anon:${p.anonymousId}` : `ip:${p.ip}`;
}

/**
 * The owners whose conversations this caller may reach, preferred first. An anonymous client
 * that carries the cookie may also reach what was started from its IP without one (a browser's
 * first turn, before it had the cookie): anyone on that IP without a cookie can reach those
 * anyway, so this grants nothing new. What a cookie holder starts is its own; and a conversation
 * started from the IP moves to the cookie with the first turn a cookie holder makes in it
 * (ChatPipeline), so what it says from then on is not reachable from the IP either.
 */
export function ownersOf(p: Principal): string[] {
  if (p.userId !== null) return [p.userId];
  return p.anonymousId ? [`anon:${p.anonymousId}`, `ip:${p.ip}`] : [`ip:${p.ip}`];
}

/**
 * The client's address for rate limits: the connection's, or, only behind a trusted proxy,
 * the right-most X-Forwarded-For entry (the one the proxy itself appended). One rule for
 * HTTP and Socket.IO.
 */
export function clientIp(connectionAddress: string, forwardedFor: string | string[] | undefined, trustProxy: boolean): string {
  if (trustProxy && forwardedFor) {
    const forwarded = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').at(-1)?.trim();
    if (forwarded) return forwarded;
  }
  return connectionAddress;
}
