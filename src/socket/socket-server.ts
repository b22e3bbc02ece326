import { ServerResponse, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { ANONYMOUS_COOKIE, anonymousCookieLine } from '../auth/anonymous-sessions.js';
import { readCookie, TOKEN_COOKIE } from '../auth/token-sources.js';
import { Server, type ServerOptions } from 'socket.io';
import type { InterServerEvents, SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { attachAiNamespace, type AiNamespace } from './ai-namespace.js';
import { attachDefaultNamespace, type DefaultNamespace } from './default-namespace.js';
import { socketAuthMiddleware } from './socket-auth.js';
import { endRealtimeSession } from './realtime-events.js';
import { clientIp } from '../chat/principal.js';
import { normaliseIp } from '../node/client-ip.js';
import { addressKey } from '../ratelimit/address-key.js';
import { eventBudget } from '../event-budget.js';
import type { RealtimeService } from '../realtime/realtime-service.js';

/** Live counts for monitoring; a metrics route or log line reads them. */
export interface SocketGauges {
  /** Open Socket.IO connections, all namespaces. */
  readonly connections: number;
  readonly byNamespace: Readonly<Record<string, number>>;
  /** Chat turns streaming right now, on every protocol. */
  readonly activeStreams: number;
}

/** The Socket.IO sidecar on the same http.Server as Hono: namespaces `/` and `/ai`. */
export function createSocketServer(
  httpServer: HttpServer,
  services: Services,
  realtime: RealtimeService,
  /** `adapter`: rooms across nodes (REDIS_URL). */
  options: { adapter?: ServerOptions['adapter'] | undefined } = {},
): { io: Server; gauges: SocketGauges } {
  const { config } = services;
  // Non-browser clients send no Origin.
  const allowedOrigin = (origin: string | undefined, host: string | undefined, quiet = false) => origin === undefined || services.origins(origin, host, { quiet });
  // The per-token events are encoded by tokenEmitter (token-emitter.ts), which assumes the default
  // parser and no connection-state recovery: a change to either here changes it too.
  const io = new Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>(httpServer, {
    path: '/socket.io/',
    ...(options.adapter ? { adapter: options.adapter } : {}),
    // The browser client at /socket.io/socket.io.js (and .min.js, .esm.min.js, maps), the version
    // that matches this server: a page can use the gateway with one <script> tag and no bundler.
    serveClient: true,
    transports: config.socket.transports,
    pingInterval: config.socket.pingIntervalMs,
    pingTimeout: config.socket.pingTimeoutMs,
    maxHttpBufferSize: config.socket.maxBufferBytes,
    // Engine.IO ends any other upgrade that has written nothing after a second; the server's own
    // upgrade handler answers every one that is not Socket.IO's (a /v1/realtime upgrade still
    // authenticating against a slow identity provider must get its 101 or 401, not a reset).
    destroyUpgrade: false,
    perMessageDeflate: config.socket.perMessageDeflate ? { threshold: 1024 } : false,
    httpCompression: config.socket.perMessageDeflate,
    cors: {
      // Non-browser clients send no Origin; browsers only from the configured list.
      // CORS headers only; a same-origin page needs none, and the handshake check below decides (and logs).
      origin: (origin, cb) => cb(null, allowedOrigin(origin, undefined, true)),
      credentials: true,
    },
    // CORS covers polling only; browsers apply no CORS to WebSockets, so the handshake checks the Origin too.
    allowRequest: (req, cb) => {
      if (!allowedOrigin(req.headers.origin, req.headers.host)) return cb(null, false);
      if (connections.full(req)) return cb(TOO_MANY_CONNECTIONS, false);
      cb(null, true);
    },
  });
  const connections = boundClients(io, services);

  giveAnonymousCookies(io, services);
  keepOnlyTheHandshake(io);

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
  attachDefaultNamespace(root, services, realtime);
  attachAiNamespace(ai, services);

  // Its realtime session ends first, as the server's doing, and the client is told why (as on /v1/realtime).
  const revokeSocket = (socket: { disconnect(close: boolean): unknown }) => {
    endRealtimeSession(socket, 'UNAUTHORIZED', 'The credential this session was opened with was revoked');
    socket.disconnect(true);
  };
  // A revoked session (logout, password change, deleted account) loses its open sockets too.
  services.sessions?.onRevoked((_userId, sessionIds) => {
    const revoked = new Set(sessionIds);
    for (const nsp of [root, ai]) {
      for (const socket of nsp.sockets.values()) if (socket.data.sessionId && revoked.has(socket.data.sessionId)) revokeSocket(socket);
    }
  });
  // So does a revoked API key (and, through the account deletion, every key of a deleted user).
  services.apiKeys.onRevoked((_userId, keyIds) => {
    const revoked = new Set(keyIds);
    for (const nsp of [root, ai]) {
      for (const socket of nsp.sockets.values()) if (socket.data.apiKeyId && revoked.has(socket.data.apiKeyId)) revokeSocket(socket);
    }
  });

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

const TOO_MANY_CONNECTIONS = 'RATE_LIMIT: too many open connections from this address (SOCKET_MAX_CONNECTIONS_PER_IP)';

/**
 * The client an Engine.IO request counts as, the rate limits' one: its address (X-Forwarded-For
 * only behind TRUST_PROXY), an IPv6 one by its network (addressKey).
 */
function addressOf(req: { headers: IncomingMessage['headers']; socket?: { remoteAddress?: string | undefined } | null }, trustProxy: boolean, ipv6Prefix: number): string {
  return addressKey(clientIp(normaliseIp(req.socket?.remoteAddress), req.headers['x-forwarded-for'], trustProxy), ipv6Prefix);
}

/**
 * What one client may hold or send over Engine.IO, whatever the transport:
 * - SOCKET_MAX_CONNECTIONS_PER_IP connections per address: each costs a socket and ~25 KB
 *   while idle, and one client opening thousands would take them from everyone. A handshake
 *   over the bound is refused (`full`: 403, with the reason); one that passed the check while
 *   others of its address were completing is closed as it opens.
 * - SOCKET_MAX_EVENTS_PER_SECOND packets per connection, so that it covers every packet a
 *   client can send: events (one with binary data is one packet more per attachment), namespace
 *   connections (to a namespace that does not exist, each answered with an error), acks, pings.
 *   Past it a client holds the event loop for everyone (each packet is decoded, checked and
 *   answered): its connection is closed, and what it sent after that is not read.
 */
function boundClients(io: Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>, services: Services) {
  const { maxConnectionsPerIp: max, maxEventsPerSecond: perSecond, maxEventsPerIpPerSecond: perIp } = services.config.socket;
  const trustProxy = services.config.trustProxy;
  const ipv6Prefix = services.config.rateLimit.ipv6Prefix;
  const open = new Map<string, number>();
  /** Each address's shared packet budget, kept while it has connections open. */
  const addressBudgets = new Map<string, { take: () => boolean; connections: number }>();
  const refused = () => services.metrics.error({ code: 'RATE_LIMIT' }, 'socket.io');
  type RawConnection = { request: IncomingMessage; readyState: string; close(): void; once(event: 'close', listener: () => void): unknown; on(event: 'packet', listener: (packet: { type: string }) => void): unknown };
  if (max > 0 || perSecond > 0 || perIp > 0) {
    // Before keepOnlyTheHandshake's listener replaces `request` with a copy without the socket.
    io.engine.prependListener('connection', (raw: RawConnection) => {
      const address = addressOf(raw.request, trustProxy, ipv6Prefix);
      if (max > 0) {
        const n = (open.get(address) ?? 0) + 1;
        if (n > max) {
          refused();
          raw.close();
          return;
        }
        open.set(address, n);
        raw.once('close', () => {
          const left = open.get(address)! - 1;
          if (left > 0) open.set(address, left);
          else open.delete(address);
        });
      }
      let shared: { take: () => boolean; connections: number } | undefined;
      if (perIp > 0) {
        shared = addressBudgets.get(address);
        if (!shared) addressBudgets.set(address, (shared = { take: eventBudget(perIp), connections: 0 }));
        shared.connections++;
        const mine = shared;
        raw.once('close', () => {
          if (--mine.connections === 0 && addressBudgets.get(address) === mine) addressBudgets.delete(address);
        });
      }
      if (perSecond > 0 || shared) {
        const withinBudget = eventBudget(perSecond);
        const addressBudget = shared;
        // This connection's packets in the current second: when the address's budget runs out,
        // only a connection over its share of it is closed, not a quiet neighbour that sent next.
        let windowAt = 0;
        let sent = 0;
        const overShare = (): boolean => {
          const now = performance.now();
          if (now - windowAt >= 1000) {
            windowAt = now;
            sent = 0;
          }
          sent++;
          return addressBudget !== undefined && !addressBudget.take() && sent > perIp / addressBudget.connections;
        };
        raw.on('packet', (packet) => {
          const over = !withinBudget() ? 'connection' : overShare() ? 'address' : undefined;
          if (over === undefined || raw.readyState !== 'open') return;
          refused();
          const bound = over === 'connection' ? 'SOCKET_MAX_EVENTS_PER_SECOND' : 'SOCKET_MAX_EVENTS_PER_IP_PER_SECOND';
          services.logger.warn({ ip: address, packet: packet.type }, `socket connection closed: more packets than ${bound}`);
          tellFlooded(
            io,
            raw,
            over === 'connection'
              ? `More than ${perSecond} events a second on this connection: it is closed; slow down before reconnecting`
              : `More than ${perIp} events a second from this address's connections together, this one over its share: it is closed; slow down before reconnecting`,
          );
          raw.close(); // after the packets already queued (engine.io flushes before it closes)
        });
      }
    });
  }
  return {
    full(req: IncomingMessage): boolean {
      if (max === 0) return false;
      const address = addressOf(req, trustProxy, ipv6Prefix);
      if ((open.get(address) ?? 0) < max) return false;
      refused();
      services.logger.debug({ ip: address }, 'socket connection refused: too many from this address');
      return true;
    },
  };
}

/**
 * A connection closed for sending more packets than its budget (SOCKET_MAX_EVENTS_PER_SECOND, or
 * its address's SOCKET_MAX_EVENTS_PER_IP_PER_SECOND) is told why first (a
 * bound that is hit answers with a code): each of its namespace sockets gets its protocol's error
 * event with RATE_LIMIT. Once per closed connection; the namespaces' sockets are looked through.
 */
function tellFlooded(io: Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>, raw: unknown, message: string): void {
  for (const [name, event] of [['/', 'ai:error'], ['/ai', 'chat:error']] as const) {
    for (const socket of io.of(name).sockets.values()) {
      if (socket.conn !== raw) continue;
      const emit = socket.emit.bind(socket) as (ev: string, payload: unknown) => boolean;
      emit(event, name === '/' ? { error: message, code: 'RATE_LIMIT' } : { message, code: 'RATE_LIMIT' });
    }
  }
}

/** What a namespace handshake reads of the upgrade request (socket.io's buildHandshake), nothing else. */
interface HandshakeRequest {
  headers: IncomingMessage['headers'];
  url: string | undefined;
  _query: unknown;
  connection: { encrypted: boolean };
}

/**
 * Engine.IO keeps each connection's first HTTP request (with its parser, buffers and socket
 * references) for as long as the connection lives; only its headers, URL and query are ever
 * read again (each namespace's handshake). Idle connections keep a small copy instead. A
 * WebSocket upgrade holds it a second time: the stand-in response Engine.IO hands its
 * middlewares keeps `req` until the socket closes (it re-emits the socket's `close`), so that
 * reference is dropped once the connection is established (nothing reads it after the upgrade).
 */
function keepOnlyTheHandshake(io: Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>): void {
  const upgrades = new WeakMap<object, { req?: unknown }>();
  io.engine.use((req: IncomingMessage, res: unknown, next: () => void) => {
    if (!(res instanceof ServerResponse)) upgrades.set(req, res as { req?: unknown });
    next();
  });
  io.engine.on('connection', (raw: { request: IncomingMessage | HandshakeRequest }) => {
    const req = raw.request as IncomingMessage & { _query?: unknown };
    const upgrade = upgrades.get(req);
    if (upgrade) upgrade.req = undefined;
    raw.request = {
      headers: req.headers,
      url: req.url,
      _query: req._query,
      connection: { encrypted: Boolean((req.socket as { encrypted?: boolean } | null)?.encrypted) },
    };
  });
}

/**
 * Anonymous clients are told apart by a signed cookie (PROTOCOLS.md section 0). A handshake
 * that carries none gets one in its response, so browsers (polling, and WebSocket handshakes
 * alike) bring it on their next connection; this connection is known by its IP meanwhile.
 */
function giveAnonymousCookies(io: Server<Record<string, never>, Record<string, never>, InterServerEvents, SocketData>, services: Services): void {
  const { auth, config } = services;
  if (config.auth.required) return;
  io.engine.on('initial_headers', (headers: Record<string, string | string[]>, req: IncomingMessage) => {
    const cookie = req.headers.cookie ?? '';
    if (req.headers.authorization || readCookie(cookie, TOKEN_COOKIE) || readCookie(cookie, ANONYMOUS_COOKIE)) return;
    const line = anonymousCookieLine(auth.anonymous.issue().value, { secure: config.auth.cookieSecure, sameSite: config.auth.cookieSameSite });
    const existing = headers['set-cookie'];
    headers['set-cookie'] = existing === undefined ? line : [...(Array.isArray(existing) ? existing : [existing]), line];
  });
}
