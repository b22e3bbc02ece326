import { createAdaptorServer, getRequestListener } from '@hono/node-server';
import { answerClientError, requestErrorResponse } from './client-errors.js';
import { getConnInfo } from '@hono/node-server/conninfo';
import { createNodeWebSocket } from '@hono/node-ws';
import { EventEmitter } from 'node:events';
import type { WebSocketServer } from 'ws';
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server as SocketIOServer } from 'socket.io';
import type { Hono } from 'hono';
import type { Config } from '../config.js';
import type { AppEnv } from '../http/app-env.js';
import { createApp } from '../http/app.js';
import { METRICS_ROUTE_DOC, PLAYGROUND_ROUTE_DOCS, REALTIME_ROUTE_DOC } from '../http/openapi.js';
import { authenticate } from '../http/authenticate.js';
import type { Logger } from '../logger.js';
import { createServices, type Services } from '../services.js';
import { createSocketServer, type SocketGauges } from '../socket/socket-server.js';
import { createNodeBackends, StartupError } from './node-backends.js';
import { listenFailure } from './process-lifecycle.js';
import { createMetricsApp, metricsHandler } from '../http/metrics-route.js';
import { PromMetrics } from './prom-metrics.js';
import { createNodeLogger } from './node-logger.js';
import { realtimeRoute } from './realtime-route.js';
import { RealtimeService } from '../realtime/realtime-service.js';
import { normaliseIp } from './client-ip.js';
import { addPlaygroundRoutes, findPlaygroundDir, loadPlaygroundAssets } from './playground-assets.js';

export interface NodeServer {
  readonly httpServer: HttpServer;
  /** The Hono app (its `routes` are what /openapi.json documents). */
  readonly app: Hono<AppEnv>;
  readonly io: SocketIOServer;
  readonly realtime: RealtimeService;
  readonly services: Services;
  readonly gauges: SocketGauges;
  /** The Prometheus metrics (undefined with METRICS_ENABLED=false). */
  readonly metrics: PromMetrics | undefined;
  /** Where the METRICS_PORT listener listens, once it does; undefined when /metrics is on the public port (or off). */
  metricsAddress(): { port: number; host: string } | undefined;
  listen(): Promise<{ port: number; host: string }>;
  /** Graceful: stop accepting, let streams finish (or abort them after the grace period), persist, close stores. */
  close(): Promise<void>;
}

const SOCKET_IO_PATH = '/socket.io/';

/**
 * Several nodes (REDIS_URL). The Redis client and the Socket.IO adapter are loaded only then:
 * one node never holds their code (~18 MB of resident memory).
 */
async function connectCluster(config: Config, logger: Logger) {
  const { RedisCluster, RedisConnectError } = await import('../cluster/redis-cluster.js');
  return RedisCluster.connect(config, logger).catch((err: unknown) => {
    throw err instanceof RedisConnectError ? new StartupError(err.message) : err;
  });
}
const LISTEN_BACKLOG = 4096;
/**
 * Requests one connection may have in flight at once. HTTP/1.1 lets a client send requests
 * back to back without waiting for answers; Node parses a whole network read of them (over a
 * thousand small ones in 64 KiB) and hands each to the app at once, whose answers come later,
 * so nothing holds the client back: one connection could hold the event loop for everyone
 * for seconds. Browsers and the HTTP clients in use send one request at a time per connection.
 */
const MAX_PIPELINED = 32;
const IN_FLIGHT = Symbol('requests in flight');

/**
 * Closes a connection with more than MAX_PIPELINED requests in flight; the requests it had
 * sent after that are not served.
 */
function boundPipelining(listener: RequestListener): RequestListener {
  return (req, res) => {
    const socket = req.socket as Socket & { [IN_FLIGHT]?: number };
    if (socket.destroyed) return;
    const n = (socket[IN_FLIGHT] ?? 0) + 1;
    if (n > MAX_PIPELINED) {
      socket.destroy();
      return;
    }
    socket[IN_FLIGHT] = n;
    res.once('close', () => void socket[IN_FLIGHT]!--);
    return listener(req, res);
  };
}

/** How much later than a route's body deadline Node's own request deadline closes a socket. */
const REQUEST_TIMEOUT_GRACE_MS = 5_000;

/** Node checks request deadlines this often: at most a quarter of the deadline late (its default is 30 s). */
function checkInterval(requestTimeoutMs: number): number {
  return Math.min(5_000, Math.max(250, Math.floor(requestTimeoutMs / 4)));
}

export async function createNodeServer(config: Config, options: { logger?: Logger } = {}): Promise<NodeServer> {
  const logger = options.logger ?? createNodeLogger(config);
  const cluster = config.redis ? await connectCluster(config, logger) : undefined;
  const metrics = config.metrics.enabled ? new PromMetrics() : undefined;
  const backends = await createNodeBackends(config, logger, metrics, cluster?.ratelimitRedis());
  const services = createServices(config, { ...backends, cluster });
  const playgroundDir = config.playground.enabled ? findPlaygroundDir() : undefined;
  if (config.playground.enabled && !playgroundDir) logger.info({}, 'the playground is not built (npm run build): / is not served');
  const publicMetrics = metrics !== undefined && !config.metrics.listener;
  const routeDocs = [REALTIME_ROUTE_DOC, ...(playgroundDir ? PLAYGROUND_ROUTE_DOCS : []), ...(publicMetrics ? [METRICS_ROUTE_DOC] : [])];
  const app = createApp(services, { connectionIp: (c) => normaliseIp(getConnInfo(c).remote.address), routeDocs });
  if (playgroundDir) addPlaygroundRoutes(app, loadPlaygroundAssets(playgroundDir));

  // /metrics: on a listener of its own with METRICS_PORT (and then not on the public port), else here.
  const metricsOptions = metrics ? { exposition: metrics, token: config.metrics.token, metrics } : undefined;
  if (metricsOptions && !config.metrics.listener) {
    app.get('/metrics', metricsHandler(metricsOptions));
    if (!config.metrics.token && !isLoopback(config.host)) logger.warn({ host: config.host }, '/metrics is served on the public port without METRICS_TOKEN; set METRICS_TOKEN, or METRICS_PORT for a private listener');
  }
  const metricsServer = metricsOptions && config.metrics.listener ? (createAdaptorServer({ fetch: createMetricsApp(metricsOptions).fetch }) as HttpServer) : undefined;

  const realtime = new RealtimeService({
    config,
    limiter: services.limiter,
    store: services.store,
    logger: services.logger.child({ component: 'realtime' }),
    metrics: services.metrics.enabled ? services.metrics : undefined,
  });
  const { upgradeWebSocket, injectWebSocket, wss } = createNodeWebSocket({ app });
  // ws accepts 100 MiB frames by default: bound them near the largest event a session accepts.
  (wss.options as { maxPayload?: number }).maxPayload = 2 * 1024 * 1024 + config.realtime.maxAudioChunkBytes * 2;
  // Like the rest of /v1, never anonymous (PROTOCOLS.md 3c): it spends the server's realtime key.
  app.get('/v1/realtime', authenticate(services, { queryToken: true, subprotocolToken: true, requireUser: true }), realtimeRoute(upgradeWebSocket, services, realtime));

  // What createAdaptorServer builds, with an errorHandler it does not pass on (requestErrorResponse).
  const listener = getRequestListener(app.fetch, { errorHandler: requestErrorResponse }) as RequestListener;
  const httpServer = createHttpServer({ connectionsCheckingInterval: checkInterval(config.chat.requestTimeoutMs) }, boundPipelining(listener));
  httpServer.keepAliveTimeout = 65_000;
  // A request Node cannot read (headers over 16 KiB, not HTTP, headers past the deadline) is
  // answered with Node's status and a coded JSON body, as every other refusal is.
  httpServer.on('clientError', answerClientError);
  // A client that trickles its request holds a socket and its buffers: Node's defaults allow a
  // minute for the headers and five for the whole request. Headers get REQUEST_TIMEOUT_MS; a
  // JSON body is answered with a coded 408 at that deadline by its route (readJsonBody), and
  // Node's own 408 (closing the socket) is the backstop for every other body, a little later.
  // Node checks these deadlines every `connectionsCheckingInterval`, set at creation.
  httpServer.headersTimeout = config.chat.requestTimeoutMs;
  httpServer.requestTimeout = config.chat.requestTimeoutMs + REQUEST_TIMEOUT_GRACE_MS;
  // Upgraded sockets (Socket.IO, /v1/realtime) leave the HTTP server's own bookkeeping: kept
  // here so shutdown can cut the ones whose peer never answers the close handshake.
  const sockets = new Set<Duplex>();
  httpServer.on('connection', (socket: Duplex) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  // Trap: node-ws answers every upgrade it has no route for with an error, which would kill
  // Socket.IO's websocket transport. It gets a private emitter and only non-Socket.IO upgrades.
  const wsUpgrades = new EventEmitter();
  injectWebSocket(wsUpgrades as unknown as HttpServer);
  releaseRefusedWaiters(wss);
  httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url?.startsWith(SOCKET_IO_PATH)) return;
    // Browsers apply no CORS to WebSockets, and a cross-site page's upgrade carries the victim's
    // cookie: the same origin rule as Socket.IO's handshake, before anything else runs.
    const origin = req.headers.origin;
    if (origin !== undefined && !services.origins(origin, req.headers.host)) {
      services.metrics.error({ code: 'UNAUTHORIZED' }, 'websocket');
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n{"error":"Origin not allowed","code":"UNAUTHORIZED"}');
      return;
    }
    // What ws would refuse after authentication (which node-ws would then remember forever) is refused here, before it.
    const problem = handshakeProblem(req);
    if (problem) {
      services.metrics.error({ code: 'BAD_REQUEST' }, 'websocket');
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n${JSON.stringify({ error: problem, code: 'BAD_REQUEST' })}`);
      return;
    }
    wsUpgrades.emit('upgrade', req, socket, head);
  });

  const { io, gauges } = createSocketServer(httpServer, services, realtime, { adapter: cluster?.socketAdapter() });
  metrics?.watch({ socketConnections: () => gauges.byNamespace, realtimeSessions: () => realtime.size, turnStartsWaiting: () => services.arrivalGate.waiting + services.startGate.waiting, streamReadsWaiting: () => backends.reads.waiting, sqliteWalPages: backends.sqliteWalPages });
  let closing: Promise<void> | undefined;
  let metricsAddress: { port: number; host: string } | undefined;

  const listenPublic = () =>
    new Promise<{ port: number; host: string }>((resolve, reject) => {
      httpServer.once('error', reject);
      // A deep accept queue: a burst of thousands of new streams must wait, not be reset.
      httpServer.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG }, () => {
        httpServer.off('error', reject);
        const addr = httpServer.address();
        const port = typeof addr === 'object' && addr ? addr.port : config.port;
        logger.info({ port, host: config.host, providers: services.models.providers, defaultModel: services.models.defaultModel }, 'listening');
        resolve({ port, host: config.host });
      });
    });

  return {
    httpServer,
    app,
    io,
    realtime,
    services,
    gauges,
    metrics,
    metricsAddress: () => metricsAddress,
    listen: async () => {
      const address = await listenPublic();
      if (metricsServer) {
        try {
          metricsAddress = await listenMetrics(metricsServer, config.metrics.listener!);
        } catch (err) {
          httpServer.close();
          throw err;
        }
        logger.info(metricsAddress, 'metrics listening');
      }
      return address;
    },
    close: () =>
      (closing ??= (async () => {
        logger.info({ activeTurns: services.turns.active }, 'shutting down');
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        const drained = await services.turns.drain(config.shutdownGraceMs);
        // Let every protocol adapter hand its last event (the shutdown error) to its socket first.
        await new Promise((resolve) => setImmediate(resolve));
        realtime.closeAll();
        io.disconnectSockets(true);
        // io.close() also closes the http server; its callback would wait for keep-alive sockets.
        void io.close();
        // Let finished responses flush their last bytes (and /v1/realtime clients answer their
        // close frames), then cut whatever is left.
        httpServer.closeIdleConnections();
        await Promise.race([stopped, delay(1000)]);
        for (const client of wss.clients) client.terminate();
        httpServer.closeAllConnections();
        for (const socket of sockets) socket.destroy();
        await stopped;
        // Scrapes were answered while streams drained; the metrics listener goes last.
        if (metricsServer?.listening) {
          const metricsStopped = new Promise<void>((resolve) => metricsServer.close(() => resolve()));
          metricsServer.closeAllConnections();
          await metricsStopped;
        }
        await services.limiter.close();
        await cluster?.close();
        await services.memory?.close();
        await services.store.close();
        logger.info(drained, 'shut down');
      })()),
  };
}

/** The METRICS_PORT listener; a failure names the variables to change. */
export function listenMetrics(server: HttpServer, { port, host }: { port: number; host: string }): Promise<{ port: number; host: string }> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenFailure(err, host, port, { host: 'METRICS_HOST', port: 'METRICS_PORT' }) ?? err);
    server.once('error', onError);
    server.listen({ port, host }, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve({ port: typeof addr === 'object' && addr ? addr.port : port, host });
    });
  });
}

/** RFC 7230 `token`: a subprotocol name. */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const SUBPROTOCOLS = new RegExp(`^${TOKEN}(?:[ \\t]*,[ \\t]*${TOKEN})*$`);

/**
 * Why `ws` would refuse this WebSocket handshake (its handleUpgrade checks), or undefined; only
 * for `Upgrade: websocket` (no other upgrade reaches ws). Node-ws runs the route first and keeps
 * the request until ws accepts it, so these are checked before the route runs.
 */
function handshakeProblem(req: IncomingMessage): string | undefined {
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return undefined;
  if (req.method !== 'GET') return 'A WebSocket handshake must be a GET';
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !/^[+/0-9A-Za-z]{22}==$/.test(key)) return 'Missing or invalid Sec-WebSocket-Key header';
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'Missing or invalid Sec-WebSocket-Version header (13 or 8)';
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined && (!SUBPROTOCOLS.test(protocols) || new Set(protocols.split(/[ \t]*,[ \t]*/)).size !== protocols.split(',').length)) {
    return 'Invalid Sec-WebSocket-Protocol header';
  }
  return undefined;
}

/**
 * Node-ws keeps each authenticated upgrade (its request and Hono context) in a private map until
 * ws emits `connection` for it; one ws then refuses (the client left during authentication, the
 * server is closing) would stay there forever. ws answers synchronously here (no verifyClient):
 * when it did not upgrade, node-ws is handed a stand-in for a closed socket, which releases the
 * entry (the route's onOpen ignores a socket that is not open).
 */
function releaseRefusedWaiters(wss: WebSocketServer): void {
  const handleUpgrade = wss.handleUpgrade.bind(wss);
  wss.handleUpgrade = (req, socket, head, cb) => {
    let upgraded = false;
    handleUpgrade(req, socket, head, (ws, request) => {
      upgraded = true;
      cb(ws, request);
    });
    if (!upgraded) wss.emit('connection', Object.assign(new EventEmitter(), { readyState: 3 /* CLOSED */, protocol: '' }), req);
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
