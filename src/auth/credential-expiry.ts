import type { Principal } from '../chat/principal.js';
import type { PickedToken } from './token-sources.js';

/**
 * When a credential that was accepted already stops being accepted (ms since the epoch), for
 * what outlives the request it came with (a socket, a realtime session): a gateway API key's
 * `expiresAt` (checked against the server's own clock, no skew), or a JWT's `exp` plus the
 * accepted clock skew; undefined for no token, a token without `exp` or a key that never expires.
 * The token's signature is not checked again.
 */
export function credentialExpiry(principal: Principal, picked: PickedToken, clockSkewSeconds: number): number | undefined {
  if (principal.apiKey) return principal.apiKey.expiresAt ?? undefined;
  return picked.kind === 'token' ? jwtExpiry(picked.token, clockSkewSeconds) : undefined;
}

function jwtExpiry(token: string, clockSkewSeconds: number): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? (exp + clockSkewSeconds) * 1000 : undefined;
  } catch {
    return undefined;
  }
}
