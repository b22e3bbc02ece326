import type { Socket } from 'socket.io';
import { clientIp, type Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import { pickToken } from '../auth/token-sources.js';
import { credentialExpiry } from '../auth/credential-expiry.js';
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
      const expiresAt = credentialExpiry(principal, pickToken(handshakeSources(socket)), services.config.auth.clockSkewSeconds);
      if (expiresAt !== undefined) connectionExpiry.set(socket, expiresAt);
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

/** When each connection's credential stops being accepted (ms since the epoch), worked out once by the connection middleware. */
const connectionExpiry = new WeakMap<object, number>();

/**
 * When the connection's credential stops being accepted (see credentialExpiry): undefined for
 * an anonymous connection or a credential that does not expire.
 */
export function connectionTokenExpiry(socket: AnySocket): number | undefined {
  return connectionExpiry.get(socket);
}
