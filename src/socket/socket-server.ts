import type { Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import { originAllowed } from '../origins.js';
import type { InterServerEvents, SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { attachAiNamespace, type AiNamespace } from './ai-namespace.js';
import { attachDefaultNamespace, type DefaultNamespace } from './default-namespace.js';
import { socketAuthMiddleware } from './socket-auth.js';

/** Live counts for monitoring; a metrics route or log line reads them. */
export interface SocketGauges {
  /** Open Socket.IO connections, all namespaces. */
  readonly connections: number;
  readonly byNamespace: Readonly<Record<string, number>>;
  /** Chat turns streaming right now, on every protocol. */
  readonly activeStreams: number;
}

/** The Socket.IO sidecar on the same http.Server as Hono: namespaces `/` and `/ai`. */
export function createSocketServer(httpServer: HttpServer, services: Services): { io: Server; gauges: SocketGauges } {
  const { config } = services;
  const allowed = originAllowed(config.corsOrigins);
  // Non-browser clients send no Origin.
  const allowedOrigin = (origin: string | undefined) => origin === undefined || allowed(origin);
  const io = new Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>(httpServer, {
    path: '/socket.io/',
    serveClient: false,
    transports: config.socket.transports,
    pingInterval: config.socket.pingIntervalMs,
    pingTimeout: config.socket.pingTimeoutMs,
    maxHttpBufferSize: config.socket.maxBufferBytes,
    perMessageDeflate: config.socket.perMessageDeflate ? { threshold: 1024 } : false,
    httpCompression: config.socket.perMessageDeflate,
    cors: {
      // Non-browser clients send no Origin; browsers only from the configured list.
      origin: (origin, cb) => cb(null, allowedOrigin(origin)),
      credentials: true,
    },
    // CORS covers polling only; browsers apply no CORS to WebSockets, so the handshake checks the Origin too.
    allowRequest: (req, cb) => cb(null, allowedOrigin(req.headers.origin)),
  });

  const counts: Record<string, number> = { '/': 0, '/ai': 0 };
  const root = io.of('/') as unknown as DefaultNamespace;
  const ai = io.of('/ai') as unknown as AiNamespace;
  for (const nsp of [root, ai]) {
    nsp.use(socketAuthMiddleware(services));
    nsp.on('connection', (socket) => {
      // Clients that ask for acknowledgements (seed 003's `ackTimeout`/`retries`) re-send every
      // unacknowledged event; acking on receipt keeps a chat:start from running twice.
      socket.use((packet, next) => {
        const ack = packet.at(-1);
        if (typeof ack === 'function') (ack as (reply: { ok: true }) => void)({ ok: true });
        next();
      });
      counts[nsp.name] = (counts[nsp.name] ?? 0) + 1;
      socket.on('disconnect', () => counts[nsp.name]!--);
    });
  }
  attachDefaultNamespace(root, services);
  attachAiNamespace(ai, services);

  const gauges: SocketGauges = {
    get connections() {
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    get byNamespace() {
      return { ...counts };
    },
    get activeStreams() {
      return services.turns.active;
    },
  };
  return { io: io as unknown as Server, gauges };
}
