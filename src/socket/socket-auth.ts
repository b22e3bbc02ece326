import type { Socket } from 'socket.io';
import { clientIp, type Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import { pickToken } from '../auth/token-sources.js';
import type { SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { normaliseIp } from '../node/client-ip.js';

/** PROTOCOLS.md section 2: the exact refusal messages of the connection middleware. */
export const INVALID_TOKEN = 'Authentication error : Invalid token';
export const NO_TOKEN = 'Authentication error : No token provided';

/** Any namespace's socket: these helpers only read the handshake and the socket data. */
export type AnySocket = Socket<never, never, never, SocketData>;

export function socketIp(socket: AnySocket, trustProxy: boolean): string {
  return clientIp(normaliseIp(socket.handshake.address), socket.handshake.headers['x-forwarded-for'], trustProxy);
}

const handshakeSources = (socket: AnySocket) => ({
  authorization: socket.handshake.headers.authorization,
  handshakeToken: (socket.handshake.auth as Record<string, unknown> | undefined)?.token,
  cookie: socket.handshake.headers.cookie,
});

/** Connection middleware for every namespace: a bad token refuses the connection. */
export function socketAuthMiddleware(services: Services) {
  return async (socket: AnySocket, next: (err?: Error) => void) => {
    const ip = socketIp(socket, services.config.trustProxy);
    try {
      const principal = await services.auth.authenticate(handshakeSources(socket), ip);
      socket.data.userId = principal.userId;
      socket.data.ip = ip;
      socket.data.sessionId = principal.sessionId ?? null;
      socket.data.apiKeyId = principal.apiKey?.id ?? null;
      const keyExpiresAt = principal.apiKey?.expiresAt;
      if (typeof keyExpiresAt === 'number') apiKeyExpiry.set(socket, keyExpiresAt);
      next();
    } catch (err) {
      const missing = err instanceof AppError && err.details?.reason === 'missing';
      services.metrics.error(err instanceof AppError ? err : { code: 'UNAUTHORIZED' }, 'socket.io');
      services.logger.debug({ ip, nsp: socket.nsp.name, missing }, 'socket connection refused');
      next(new Error(missing ? NO_TOKEN : INVALID_TOKEN));
    }
  };
}

/**
 * The principal for one chat event. The connection's token is verified again, so a token
 * that expires while the socket stays open stops working; a payload `token` (seed 002) that
 * is present is verified too, and a bad one refuses the event.
 */
export async function eventPrincipal(services: Services, socket: AnySocket, payloadToken: unknown): Promise<Principal> {
  const sources = handshakeSources(socket);
  const principal = await services.auth.authenticate({ ...sources, payloadToken }, socket.data.ip);
  const picked = sources.authorization || sources.handshakeToken || sources.cookie;
  if (picked && payloadToken !== undefined && payloadToken !== null && payloadToken !== '') {
    await services.auth.authenticate({ payloadToken }, socket.data.ip);
  }
  return principal;
}

/** When the connection's gateway API key expires (ms since the epoch), by socket: from the principal the connection middleware resolved. */
const apiKeyExpiry = new WeakMap<object, number>();

/**
 * When the connection's token stops being accepted (ms since the epoch): for a JWT its `exp` plus
 * the accepted clock skew; for a gateway API key its record's `expiresAt` (keys are checked
 * against the server's own clock, no skew); undefined for no token, a token without `exp` or a
 * key that never expires. Read from what the connection middleware verified, so nothing is
 * checked again.
 */
export function connectionTokenExpiry(socket: AnySocket, clockSkewSeconds: number): number | undefined {
  const picked = pickToken(handshakeSources(socket));
  if (picked.kind !== 'token') return undefined;
  if (socket.data.apiKeyId) return apiKeyExpiry.get(socket);
  return jwtExpiry(picked.token, clockSkewSeconds);
}

/**
 * When a JWT that was verified already stops being accepted (ms since the epoch: its `exp` plus
 * the accepted clock skew); undefined for a token that is no JWT or has no `exp`. Its signature
 * is not checked again.
 */
export function jwtExpiry(token: string, clockSkewSeconds: number): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? (exp + clockSkewSeconds) * 1000 : undefined;
  } catch {
    return undefined;
  }
}
