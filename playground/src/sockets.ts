/**
 * Socket.IO connections to the gateway, with the browser client the gateway serves itself
 * (`/socket.io/socket.io.min.js`, loaded by index.html as the global `io`).
 */
import type { io as ioFunction, Socket } from 'socket.io-client';
import { GatewayError } from './api.js';

declare global {
  interface Window {
    io?: typeof ioFunction;
  }
}

export type { Socket };

/**
 * Opens a connection to a namespace carrying the token in the handshake (PROTOCOLS.md 0).
 * `own`: its own engine connection instead of the page's shared one, so it can be cut
 * without cutting the others.
 */
export function connect(namespace: '/' | '/ai', token: string | null, own = false): Socket {
  const io = window.io;
  if (!io) throw new GatewayError('NETWORK', 'The Socket.IO client (/socket.io/socket.io.min.js) did not load');
  return io(namespace, { path: '/socket.io/', auth: token ? { token } : {}, forceNew: own, withCredentials: true });
}

/** Resolves once the socket is connected; a refused handshake rejects with the server's reason. */
export function connected(socket: Socket, timeoutMs = 10_000): Promise<void> {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new GatewayError('NETWORK', 'Socket.IO did not connect in time')), timeoutMs);
    const done = (err?: GatewayError) => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onConnect = () => done();
    // "Authentication error : Invalid token" and the like (section 2).
    const onError = (err: Error) => done(new GatewayError(/auth/i.test(err.message) ? 'UNAUTHORIZED' : 'NETWORK', err.message));
    socket.on('connect', onConnect);
    socket.on('connect_error', onError);
    if (!socket.active) socket.connect();
  });
}
