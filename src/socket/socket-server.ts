import type { Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import type { Services } from '../services.js';

/** Live counts for monitoring (a metrics route reads them). */
export interface SocketGauges {
  connections: number;
}

/** The Socket.IO sidecar on the same http.Server as Hono: namespaces `/` and `/ai`. */
export function createSocketServer(httpServer: HttpServer, services: Services): { io: Server; gauges: SocketGauges } {
  const { config } = services;
  const any = config.corsOrigins.includes('*');
  const io = new Server(httpServer, {
    path: '/socket.io/',
    cors: {
      origin: (origin, cb) => cb(null, origin === undefined || any || config.corsOrigins.includes(origin) ? (origin ?? true) : false),
      credentials: true,
    },
    serveClient: false,
  });
  const gauges: SocketGauges = { connections: 0 };
  for (const nsp of [io.of('/'), io.of('/ai')]) {
    nsp.on('connection', (socket) => {
      gauges.connections++;
      socket.on('disconnect', () => gauges.connections--);
    });
  }
  return { io, gauges };
}
