import { createAdaptorServer } from '@hono/node-server';
import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { AppError } from '../errors.js';
import { createMetricsApp } from '../http/metrics-route.js';
import { exitOnStartupFailure, listenFailure, stopOnSignals } from './process-lifecycle.js';
import { createNodeServer, listenMetrics } from './server.js';

/**
 * `npm run start:cluster`: one gateway process per core on one port. The primary accepts each
 * TCP connection, peeks at its first request, and hands the socket itself to a worker (no
 * proxying: every byte after that goes straight between the client and the worker). A request
 * naming an Engine.IO session (`sid=`, polling) goes to the worker that owns it, which the sid
 * says (`<worker>_<random>`); anything else round-robin. Polling responses close their
 * connection, so each poll is routed afresh. With REDIS_URL every shared rule holds across the
 * workers (rooms, BUSY, stops, resumes) and rate limits are counted in that Redis (or in
 * Upstash, when it is configured).
 */
const WORKER_ENV = 'GATEWAY_WORKER_INDEX';

if (existsSync('.env')) process.loadEnvFile('.env');

if (cluster.isPrimary) void primary();
else worker(Number(process.env[WORKER_ENV])).catch(exitOnStartupFailure);

async function primary(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : String(err));
    process.exit(78);
  }
  const count = config.clusterWorkers || os.availableParallelism();
  if (!config.redis) {
    const limits = config.upstash ? '' : ' and counts rate limits on its own';
    console.warn(`start:cluster without REDIS_URL: each worker keeps its own rooms, BUSY rule, stops and resumable streams${limits}; set REDIS_URL`);
  }
  const workers: (Worker | undefined)[] = [];
  /** Workers whose server is up (they said `gateway:ready`): only these are given connections. */
  const ready: boolean[] = [];
  /** Restarts in a row of each worker that ended before it was ready: the next waits longer. */
  const failedRestarts: number[] = [];
  let started = false;
  let stopping = false;
  /** Workers that ended badly (an exit code other than 0, or a signal) while the cluster stopped. */
  let failedStops = 0;
  /** Stops every worker (they drain on SIGTERM); whatever exits the primary comes after. */
  const stopWorkers = () => {
    stopping = true;
    for (const w of workers) w?.process.kill('SIGTERM');
  };
  const fork = (index: number) => {
    const w = cluster.fork({ [WORKER_ENV]: String(index) });
    workers[index] = w;
    ready[index] = false;
    w.on('message', (message: { type?: string }) => {
      if (message?.type !== 'gateway:ready') return;
      ready[index] = true;
      failedRestarts[index] = 0;
    });
    w.on('exit', (code, signal) => {
      const wasReady = ready[index];
      workers[index] = undefined;
      ready[index] = false;
      if (stopping) {
        if (code !== 0) failedStops++;
        return;
      }
      if (!started) {
        // It could not start (it said why): the others would not either; no restart loop.
        stopWorkers();
        process.exit(code || 1);
      }
      // One that could not start again (its data directory gone, a bad file) is retried less and
      // less often, up to a minute apart, while the others serve: not twice a second for ever.
      failedRestarts[index] = wasReady ? 0 : (failedRestarts[index] ?? 0) + 1;
      const delayMs = Math.min(60_000, 500 * 2 ** failedRestarts[index]!);
      console.error(JSON.stringify({ level: 50, msg: 'worker exited; starting another', worker: index, code, signal, inMs: delayMs }));
      setTimeout(() => {
        if (!stopping) fork(index);
      }, delayMs);
    });
  };
  for (let i = 0; i < count; i++) fork(i);
  await Promise.all(workers.map((w) => new Promise((resolve) => w!.once('message', resolve))));
  started = true;

  let next = 0;
  /** A ready worker: the session's own when it is up, else the next in turn. */
  const readyWorker = (preferred: number): Worker | undefined => {
    if (ready[preferred]) return workers[preferred];
    for (let tried = 0; tried < count; tried++) {
      const index = next++ % count;
      if (ready[index]) return workers[index];
    }
    return undefined;
  };
  // /metrics is answered here, for every worker at once (a scrape that reached one worker would
  // see that worker's counters only, another worker's on the next scrape): on METRICS_PORT, or
  // taken off the public port before a connection is handed over.
  const metrics = config.metrics.enabled ? clusterMetricsServer(config, () => workers.filter((w, i): w is Worker => w !== undefined && ready[i] === true)) : undefined;
  const publicMetrics = metrics !== undefined && !config.metrics.listener;
  if (metrics && config.metrics.listener) {
    await listenMetrics(metrics, config.metrics.listener).catch((err: unknown) => {
      stopWorkers();
      exitOnStartupFailure(err);
    });
  }
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    // A connection that sends nothing is closed as a single process closes it (REQUEST_TIMEOUT_MS):
    // held here, each would be a descriptor of the one process that accepts for every worker.
    socket.setTimeout(config.chat.requestTimeoutMs, () => socket.destroy());
    socket.once('data', (head: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      const line = head.subarray(0, Math.min(head.length, 2048)).toString('latin1');
      const requestLine = line.slice(0, line.indexOf('\r\n') >>> 0);
      if (publicMetrics && METRICS_REQUEST.test(requestLine)) return adopt(metrics, socket, head);
      const owner = /[?&]sid=([0-9a-z]+)_/.exec(requestLine);
      // A worker still starting has no server to take the connection: it would never be answered.
      const target = readyWorker(owner ? parseInt(owner[1]!, 36) : -1);
      if (!target) return socket.destroy();
      target.send({ type: 'gateway:connection', head: head.toString('base64') }, socket, (err) => {
        if (err) socket.destroy();
      });
    });
    socket.resume();
  });
  server.on('error', (err) => {
    // Taken port, unknown HOST: said as `npm start` says it, and the workers stopped with it.
    stopWorkers();
    exitOnStartupFailure(listenFailure(err, config.host, config.port) ?? err);
  });
  server.listen({ port: config.port, host: config.host, backlog: 4096 }, () => {
    console.log(JSON.stringify({ level: 30, msg: 'cluster listening', port: config.port, host: config.host, workers: count }));
  });
  const shutdown = () => {
    if (stopping) process.exit(1);
    server.close();
    metrics?.close();
    metrics?.closeAllConnections();
    stopWorkers();
    Promise.all(workers.map((w) => (w && w.isConnected() ? new Promise((r) => w.once('exit', r)) : undefined))).then(() => {
      if (failedStops > 0) console.error(JSON.stringify({ level: 50, msg: 'workers did not stop cleanly', workers: failedStops }));
      process.exit(failedStops > 0 ? 1 : 0);
    });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** Hands an accepted socket, and the first bytes already read from it, to an HTTP server that did not accept it. */
function adopt(server: HttpServer, socket: net.Socket, head: Buffer): void {
  server.emit('connection', socket);
  socket.emit('data', head);
  socket.resume();
}

/** A request line for /metrics (any query), which the primary answers itself. */
const METRICS_REQUEST = /^(?:GET|HEAD) \/metrics(?:\?\S*)? HTTP\/1\.[01]$/;

/** prom-client's cluster messages: a worker answers the first with its registries' metrics as JSON. */
const GET_METRICS_REQ = 'prom-client:getMetricsReq';
const GET_METRICS_RES = 'prom-client:getMetricsRes';
/** How long a scrape waits for every worker's answer. */
const SCRAPE_WAIT_MS = 2_000;

/**
 * The primary's /metrics: every ready worker's registry, asked over the cluster's IPC channel
 * (prom-client's own messages, which each worker answers) and summed with prom-client's
 * AggregatorRegistry.aggregate. A worker that does not answer within 2 s (it is dying) makes the
 * scrape a 503, never a partial sum that would read as counters going back. Not prom-client's
 * `clusterMetrics()`: it asks workers that are still starting or already dead, and waits 5 s on
 * them. The token rule is a single process's; each response closes its connection.
 */
function clusterMetricsServer(config: Config, readyWorkers: () => Worker[]): HttpServer {
  type Answer = { type?: string; requestId?: number; metrics?: unknown[]; error?: string };
  const waiting = new Map<number, { answers: unknown[]; left: number; settle(err?: Error): void }>();
  let nextRequest = 0;
  cluster.on('message', (_worker, message: Answer) => {
    if (message?.type !== GET_METRICS_RES || typeof message.requestId !== 'number') return;
    const request = waiting.get(message.requestId);
    if (!request) return; // late: its scrape was answered already
    if (message.error !== undefined || !Array.isArray(message.metrics)) return request.settle(new Error('a worker could not collect its metrics'));
    request.answers.push(...message.metrics);
    if (--request.left === 0) request.settle();
  });
  const unavailable = () => new AppError('INTERNAL', 'Not every worker answered for its metrics (one is starting or stopping); scrape again', { status: 503 });
  const render = () =>
    new Promise<string>((resolve, reject) => {
      const workers = readyWorkers();
      if (workers.length === 0) return reject(unavailable());
      const requestId = nextRequest++;
      const answers: unknown[] = [];
      const timer = setTimeout(() => settle(unavailable()), SCRAPE_WAIT_MS);
      const settle = (err?: Error) => {
        clearTimeout(timer);
        waiting.delete(requestId);
        if (err) reject(err instanceof AppError ? err : unavailable());
        else AggregatorRegistry.aggregate(answers as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics().then(resolve, reject);
      };
      waiting.set(requestId, { answers, left: workers.length, settle });
      for (const w of workers) {
        try {
          w.send({ type: GET_METRICS_REQ, requestId });
        } catch {
          settle(unavailable());
          return;
        }
      }
    });
  const app = createMetricsApp({ exposition: { render, contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE }, token: config.metrics.token, metrics: { error: () => undefined } });
  const server = createAdaptorServer({ fetch: app.fetch }) as HttpServer;
  server.prependListener('request', (_req, res) => res.setHeader('Connection', 'close'));
  // A scrape that trickles in is cut as a worker would cut it.
  server.requestTimeout = config.chat.requestTimeoutMs;
  server.headersTimeout = config.chat.requestTimeoutMs;
  return server;
}

async function worker(index: number): Promise<void> {
  const config = loadConfig(process.env);
  // Answers the primary's requests for this worker's metrics from the start (nothing, until its server is up).
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([]);
  const server = await createNodeServer(config);
  if (server.metrics) AggregatorRegistry.setRegistries([server.metrics.registry]);
  // The session id names its worker, so the primary routes every poll of a session to it.
  const engine = server.io.engine as unknown as { generateId: () => string };
  const random = engine.generateId.bind(engine);
  engine.generateId = () => `${index.toString(36)}_${String(random()).replace(/[^0-9A-Za-z]/g, '')}`;
  // The primary chose this worker by a connection's first request: every response closes its
  // connection, so no later request (a poll of a session another worker holds) comes here on it.
  server.httpServer.prependListener('request', (_req: unknown, res: { setHeader(name: string, value: string): unknown }) => {
    res.setHeader('Connection', 'close');
  });
  process.on('message', (message: { type?: string; head?: string }, socket: net.Socket | undefined) => {
    if (message?.type !== 'gateway:connection' || !socket) return;
    // What net.Server does for the connections it accepts itself (the HTTP server asks for
    // noDelay), skipped for a handed-over socket: without it Nagle's algorithm holds each small
    // write until the client's delayed ACK, ~40 ms, on every streamed reply.
    socket.setNoDelay(true);
    adopt(server.httpServer, socket, Buffer.from(message.head ?? '', 'base64'));
  });
  stopOnSignals(server, ['SIGTERM'], ['SIGINT']);
  process.send?.({ type: 'gateway:ready' });
}
