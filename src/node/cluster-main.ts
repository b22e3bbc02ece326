import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { ConfigError, loadConfig } from '../config.js';
import { exitOnStartupFailure, stopOnSignals } from './process-lifecycle.js';
import { createNodeServer } from './server.js';

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
        stopping = true;
        for (const other of workers) other?.process.kill('SIGTERM');
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
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', (head: Buffer) => {
      socket.pause();
      const line = head.subarray(0, Math.min(head.length, 2048)).toString('latin1');
      const owner = /[?&]sid=([0-9a-z]+)_/.exec(line.slice(0, line.indexOf('\r\n') >>> 0));
      // A worker still starting has no server to take the connection: it would never be answered.
      const target = readyWorker(owner ? parseInt(owner[1]!, 36) : -1);
      if (!target) return socket.destroy();
      target.send({ type: 'gateway:connection', head: head.toString('base64') }, socket, (err) => {
        if (err) socket.destroy();
      });
    });
    socket.resume();
  });
  server.listen({ port: config.port, host: config.host, backlog: 4096 }, () => {
    console.log(JSON.stringify({ level: 30, msg: 'cluster listening', port: config.port, host: config.host, workers: count }));
  });
  const shutdown = () => {
    if (stopping) process.exit(1);
    stopping = true;
    server.close();
    for (const w of workers) w?.process.kill('SIGTERM');
    Promise.all(workers.map((w) => (w && w.isConnected() ? new Promise((r) => w.once('exit', r)) : undefined))).then(() => {
      if (failedStops > 0) console.error(JSON.stringify({ level: 50, msg: 'workers did not stop cleanly', workers: failedStops }));
      process.exit(failedStops > 0 ? 1 : 0);
    });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

async function worker(index: number): Promise<void> {
  const config = loadConfig(process.env);
  const server = await createNodeServer(config);
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
    server.httpServer.emit('connection', socket);
    socket.emit('data', Buffer.from(message.head ?? '', 'base64'));
    socket.resume();
  });
  stopOnSignals(server, ['SIGTERM'], ['SIGINT']);
  process.send?.({ type: 'gateway:ready' });
}
