import type { Socket } from 'socket.io';
import type { RealtimeSession } from '../realtime/realtime-session.js';
import type { RealtimeService } from '../realtime/realtime-service.js';
import type { DefaultClientToServerEvents, DefaultServerToClientEvents, InterServerEvents, SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { toAppError } from '../errors.js';
import { outgoingBytes } from './backpressure.js';
import { connectionTokenExpiry, eventPrincipal, type AnySocket } from './socket-auth.js';
import type { ErrorCode } from '../errors.js';

/** Each socket's way to end its realtime session as the server's doing (endRealtimeSession). */
const enders = new WeakMap<object, (code: ErrorCode, message: string) => void>();

/**
 * Ends the socket's realtime session, if it has one, for a reason of the server's (a revoked
 * credential): the client gets `realtime-error` with the code, and the record says the server ended it.
 */
export function endRealtimeSession(socket: object, code: ErrorCode, message: string): void {
  enders.get(socket)?.(code, message);
}

const REFUSAL_COOLDOWN_MS = 1_000;

type DefaultSocket = Socket<DefaultClientToServerEvents, DefaultServerToClientEvents, InterServerEvents, SocketData>;

/**
 * Seed 004 on the default namespace: `realtime-message` (JSON client events) and
 * `realtime-audio` (binary PCM16) in; `realtime-response` (JSON events; audio deltas as binary)
 * and `realtime-error {message, code}` out. One session per socket, opened on first use;
 * the socket's disconnect closes it, and its close makes the next event open a new one.
 */
export function attachRealtimeEvents(socket: DefaultSocket, services: Services, realtime: RealtimeService): void {
  let session: RealtimeSession | undefined;
  /** After a session is refused, events are dropped for a moment instead of each opening (and being counted as) a new one. */
  let refusedUntil = 0;

  const current = (): RealtimeSession | undefined => {
    if (!session && Date.now() < refusedUntil) return undefined;
    session ??= realtime.session({
      protocol: 'socket.io',
      // The connection's token is checked again when the session opens: a token that died since the handshake opens nothing.
      principal: () => eventPrincipal(services, socket as unknown as AnySocket, undefined),
      // Admitted on the connection's token: the session ends when that token does.
      validUntil: () => connectionTokenExpiry(socket as unknown as AnySocket),
      onServerEvent: (event) => socket.emit('realtime-response', event),
      onAudio: (chunk) => socket.emit('realtime-response', chunk),
      onError: ({ message, code }) => socket.emit('realtime-error', { message, code }),
      onClose: (reason) => {
        session = undefined;
        if (reason.initiator !== 'client') refusedUntil = Date.now() + REFUSAL_COOLDOWN_MS;
      },
      clientBacklogBytes: () => outgoingBytes(socket),
    });
    return session;
  };

  // Socket.IO calls listeners from process.nextTick: what one throws would end the process.
  const guarded = (handle: (input: unknown) => void) => (input: unknown) => {
    try {
      handle(input);
    } catch (err) {
      const e = toAppError(err);
      services.logger.error({ err, socketId: socket.id }, 'realtime event failed');
      services.metrics.error(e, 'socket.io');
      socket.emit('realtime-error', { message: e.message, code: e.code });
    }
  };
  socket.on('realtime-message', guarded((event) => current()?.handleClientEvent(event)));
  socket.on('realtime-audio', guarded((chunk) => current()?.handleClientAudio(chunk)));
  enders.set(socket, (code, message) => session?.terminate(code, message));
  socket.on('disconnect', () => session?.close());
}
