/**
 * Where a token may come from, in the order PROTOCOLS.md section 0 gives: first found wins.
 * HTTP and Socket.IO both build one of these and call `pickToken`.
 */
export interface TokenSources {
  /** The Authorization header value. */
  authorization?: string | undefined;
  /** Socket.IO `handshake.auth.token`. */
  handshakeToken?: unknown;
  /** The raw Cookie header value. */
  cookie?: string | undefined;
  /** A `token` field in an event payload (seed 002), or the `token` query parameter of /v1/realtime. */
  payloadToken?: unknown;
}

export type PickedToken = { kind: 'none' } | { kind: 'token'; token: string; from: 'bearer' | 'handshake' | 'cookie' | 'payload' } | { kind: 'malformed'; from: string };

export const TOKEN_COOKIE = 'token';

export function pickToken(s: TokenSources): PickedToken {
  if (s.authorization !== undefined && s.authorization !== '') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(s.authorization);
    return m ? { kind: 'token', token: m[1]!, from: 'bearer' } : { kind: 'malformed', from: 'Authorization header' };
  }
  if (s.handshakeToken !== undefined && s.handshakeToken !== null && s.handshakeToken !== '') {
    return typeof s.handshakeToken === 'string' ? { kind: 'token', token: s.handshakeToken, from: 'handshake' } : { kind: 'malformed', from: 'auth.token' };
  }
  const cookie = readCookie(s.cookie, TOKEN_COOKIE);
  if (cookie) return { kind: 'token', token: cookie, from: 'cookie' };
  if (s.payloadToken !== undefined && s.payloadToken !== null && s.payloadToken !== '') {
    return typeof s.payloadToken === 'string' ? { kind: 'token', token: s.payloadToken, from: 'payload' } : { kind: 'malformed', from: 'token field' };
  }
  return { kind: 'none' };
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    try {
      return decodeURIComponent(value) || undefined;
    } catch {
      return value || undefined;
    }
  }
  return undefined;
}
