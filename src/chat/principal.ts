/** Who is asking. Identity comes only from a verified token; the IP keys anonymous rate limits. */
export interface Principal {
  userId: string | null;
  ip: string;
}

export const isAnonymous = (p: Principal): boolean => p.userId === null;

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
