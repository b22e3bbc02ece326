/**
 * The gateway under Socket.IO load, in its own process:
 *
 * - {@link measureIdleSockets}: resident memory before and after `connections` idle Socket.IO
 *   connections (real `socket.io-client`, websocket transport, anonymous, namespace `/`, held
 *   by bench/idle-sockets-process.ts), and the base RSS of the compiled entry against the same
 *   entry run from source under tsx.
 * - {@link measureEventLoopDelay}: the gateway's event-loop delay while `streams` Socket.IO
 *   clients each stream one `ai:chat` reply at once from the OpenAI stand-in, read inside the
 *   gateway by bench/eld-probe.mjs (preloaded with `node --import`, no change to src/).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import type { DefaultClientToServerEvents, DefaultServerToClientEvents } from '../src/protocol/socket-events.js';
import {
  openFileLimit,
  readProcStats,
  startGatewayProcess,
  startRelayProcess,
  startScriptProcess,
  startStandinProcess,
  type ChildHandle,
} from './processes.js';
import { runLevel, type RunContext } from './runner.js';
import { countTokens } from './sse-client.js';
import { summarize, type Summary } from './stats.js';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/** The next stdout line of `child` that is a JSON object with `key`, its value; rejects on timeout, abort or exit. */
function nextJson<T>(child: ChildHandle, key: string, timeoutMs: number, signal: AbortSignal, onOther?: (o: Record<string, unknown>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => finish(() => reject(signal.reason as Error));
    const timer = setTimeout(() => finish(() => reject(new Error(`${child.name}: no "${key}" line within ${timeoutMs} ms`))), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    void child.exited.then((code) => finish(() => reject(new Error(`${child.name} exited (${code}):\n  ${child.tail().join('\n  ')}`))));
    child.onStdoutLine((line) => {
      if (settled || !line.startsWith('{')) return;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (key in o) finish(() => resolve(o[key] as T));
      else onOther?.(o);
    });
  });
}

/** bench/eld-probe.mjs, preloaded into the gateway: answers commands on its stdin. */
const PROBE = ['--import', './bench/eld-probe.mjs'];

/** Sends a command to the preloaded probe and resolves with its answer (the value under `key`). */
function askProbe<T>(gateway: ChildHandle, command: 'read' | 'memory', key: string, signal: AbortSignal): Promise<T> {
  const reply = nextJson<T>(gateway, key, 10_000, signal);
  gateway.process.stdin?.write(`${command}\n`);
  return reply;
}

/** process.memoryUsage() inside the gateway, MB. */
export interface HeapUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** Resident memory after a pause (the heap settles after start-up or a burst of connections). */
async function settledRssMb(pid: number, settleMs: number, signal: AbortSignal): Promise<number> {
  await sleep(settleMs, signal);
  const stats = readProcStats(pid);
  if (!stats) throw new Error(`cannot read /proc/${pid}`);
  return stats.rssMb;
}

export interface IdleOptions {
  root: string;
  connections: number;
  /** Source addresses 127.0.0.1 ... 127.0.0.<addresses> for the clients. */
  addresses: number;
  settleMs: number;
  stopSignal: AbortSignal;
  log(line: string): void;
}

export interface IdleResult {
  connections: number;
  connected: number;
  failed: number;
  errors: Record<string, number>;
  /** Still open when the memory was read. */
  openAtReading: number;
  connectMs: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  peakMb: number;
  kbPerConnection: number;
  /** Base RSS of an idle gateway just started: `node dist/node/main.js` and `node --import tsx src/node/main.ts`. */
  baseRssMb: { compiled: number; tsx: number };
  /** process.memoryUsage() inside the gateway (read just after each RSS reading, no GC forced). */
  heap: { before: HeapUsage; after: HeapUsage };
}

export async function measureIdleSockets(opts: IdleOptions): Promise<IdleResult> {
  const { root, stopSignal: signal, log } = opts;
  const tmp = mkdtempSync(join(tmpdir(), 'bench-idle-'));
  const children: ChildHandle[] = [];
  try {
    // Embedded defaults: nothing upstream is needed to hold idle connections.
    // The probe (a few KB) is preloaded here too, only for its memory breakdown, and in the tsx run alike.
    const gw = await startGatewayProcess(root, undefined, join(tmp, 'compiled'), PROBE, {}, { raiseFdLimit: true });
    children.push(gw.child);
    const limit = openFileLimit(gw.child.pid) ?? Number.NaN;
    if (limit < opts.connections + 256) throw new Error(`the gateway may open only ${limit} files; ${opts.connections} connections need more (raise the hard limit: ulimit -Hn)`);
    const rssBeforeMb = await settledRssMb(gw.child.pid, opts.settleMs, signal);
    const heapBefore = await askProbe<HeapUsage>(gw.child, 'memory', 'memory', signal);
    log(`idle: gateway (pid ${gw.child.pid}) base RSS ${rssBeforeMb.toFixed(1)} MB; opening ${opts.connections} Socket.IO connections`);

    const clients = startScriptProcess(root, 'idle-clients', 'bench/idle-sockets-process.ts', [gw.url, String(opts.connections), String(opts.addresses)], { raiseFdLimit: true });
    children.push(clients);
    const done = await nextJson<{ connected: number; failed: number; errors: Record<string, number>; ms: number }>(
      clients,
      'done',
      30_000 + opts.connections * 20,
      signal,
      (o) => {
        const p = o['progress'] as { connected: number; failed: number } | undefined;
        if (p) log(`  idle: ${p.connected} connected, ${p.failed} failed`);
      },
    );
    log(`idle: ${done.connected} connected, ${done.failed} failed in ${(done.ms / 1000).toFixed(1)} s`);
    const rssAfterMb = await settledRssMb(gw.child.pid, opts.settleMs, signal);
    const peakMb = readProcStats(gw.child.pid)?.hwmMb ?? Number.NaN;
    const heapAfter = await askProbe<HeapUsage>(gw.child, 'memory', 'memory', signal);
    const status = nextJson<{ open: number; dropped: number }>(clients, 'status', 10_000, signal);
    clients.process.stdin?.write('status\n');
    const { open } = await status;
    await clients.stop();
    await gw.child.stop();

    // The same entry from source: what `npm run dev` / `tsx src/node/main.ts` costs at rest.
    const tsx = await startGatewayProcess(root, undefined, join(tmp, 'tsx'), PROBE, {}, { entry: 'src/node/main.ts' });
    children.push(tsx.child);
    const tsxRssMb = await settledRssMb(tsx.child.pid, opts.settleMs, signal);
    log(`idle: base RSS compiled ${rssBeforeMb.toFixed(1)} MB, under tsx ${tsxRssMb.toFixed(1)} MB`);
    return {
      connections: opts.connections,
      connected: done.connected,
      failed: done.failed,
      errors: done.errors,
      openAtReading: open,
      connectMs: done.ms,
      rssBeforeMb,
      rssAfterMb,
      peakMb,
      kbPerConnection: done.connected > 0 ? ((rssAfterMb - rssBeforeMb) * 1024) / done.connected : Number.NaN,
      baseRssMb: { compiled: rssBeforeMb, tsx: tsxRssMb },
      heap: { before: heapBefore, after: heapAfter },
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(tmp, { recursive: true, force: true });
  }
}

export interface EldOptions {
  root: string;
  /** Concurrent streams, one Socket.IO connection each. */
  streams: number;
  /** Measured rounds (after one unmeasured round). */
  rounds: number;
  tokens: number;
  paceMs: number;
  /** More node flags for the gateway (e.g. `--cpu-prof`, to see where a busy loop goes). */
  nodeArgs?: string[];
  stopSignal: AbortSignal;
  log(line: string): void;
}

/** What bench/eld-probe.mjs reports (milliseconds; utilization 0-1). */
export interface LoopDelay {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  count: number;
  utilization: number;
  windowMs: number;
}

export interface EldResult {
  streams: number;
  rounds: number;
  tokens: number;
  paceMs: number;
  /** Measured rounds only. */
  ok: number;
  failures: number;
  errors: Record<string, number>;
  /** Inside the gateway over the measured rounds. */
  loaded: LoopDelay;
  /** Inside the gateway with the connections open and nothing streaming, same length of window. */
  idle: LoopDelay;
  /** Client side, per stream: `ai:chat` sent -> first `ai:stream`, and -> `ai:complete`. */
  ttftMs: Summary;
  totalMs: Summary;
  gatewayCpuMsPerStream: number;
  warmupFailures: number;
  /**
   * The baseline: the bare Node SSE relay (bench/relay-process.ts, the same probe preloaded)
   * carrying as many concurrent streams of the same stand-in (SSE clients, same rounds).
   */
  relay?: { loaded: LoopDelay; ok: number; failures: number; cpuMsPerStream: number };
}

type ChatSocket = Socket<DefaultServerToClientEvents, DefaultClientToServerEvents>;

interface StreamOutcome {
  ok: boolean;
  error?: string;
  ttftMs: number;
  totalMs: number;
}

/** Streams started per event-loop turn (as bench/runner.ts does for SSE). */
const LAUNCH_BATCH = 25;

/** One `ai:chat` per socket, all at once; resolves when every stream ended, failed or timed out. */
async function chatRound(sockets: ChatSocket[], tokens: number, timeoutMs: number, signal: AbortSignal): Promise<StreamOutcome[]> {
  const outcomes: Array<Promise<StreamOutcome>> = [];
  // One abort listener for the round, not one per stream.
  const pending = new Set<(error: string) => void>();
  const onAbort = () => {
    for (const finish of [...pending]) finish('run stopped');
  };
  signal.addEventListener('abort', onAbort, { once: true });
  for (const [i, socket] of sockets.entries()) {
    outcomes.push(
      new Promise<StreamOutcome>((resolve) => {
        const started = performance.now();
        let ttftMs = Number.NaN;
        let seen = 0;
        const onStream = (p: { content: string }) => {
          if (Number.isNaN(ttftMs)) ttftMs = performance.now() - started;
          seen += countTokens(p.content);
        };
        const finish = (error?: string) => {
          if (!pending.delete(finish)) return;
          clearTimeout(timer);
          socket.off('ai:stream', onStream).off('ai:complete', onComplete).off('ai:error', onError).off('disconnect', onDisconnect);
          resolve({ ok: error === undefined, ...(error ? { error } : {}), ttftMs, totalMs: performance.now() - started });
        };
        const onComplete = () => finish(seen === tokens ? undefined : `expected ${tokens} tokens, got ${seen}`);
        const onError = (e: { code: string; error: string }) => finish(`ai:error ${e.code}: ${e.error}`);
        const onDisconnect = (reason: string) => finish(`disconnect: ${reason}`);
        const timer = setTimeout(() => finish(`timeout after ${timeoutMs} ms`), timeoutMs);
        pending.add(finish);
        if (signal.aborted) finish('run stopped');
        socket.on('ai:stream', onStream).on('ai:complete', onComplete).on('ai:error', onError).on('disconnect', onDisconnect);
        socket.emit('ai:chat', { message: 'bench', model: 'gpt-4o-mini' });
      }),
    );
    if ((i + 1) % LAUNCH_BATCH === 0) await new Promise((r) => setImmediate(r));
  }
  try {
    return await Promise.all(outcomes);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

async function connectAll(url: string, count: number, signal: AbortSignal): Promise<ChatSocket[]> {
  const sockets: ChatSocket[] = [];
  for (let i = 0; i < count; i += 100) {
    signal.throwIfAborted();
    const batch = Array.from({ length: Math.min(100, count - i) }, () => {
      const socket: ChatSocket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: 30_000 });
      sockets.push(socket);
      return new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', (err) => reject(new Error(`Socket.IO connection failed: ${err.message}`)));
      });
    });
    await Promise.all(batch);
  }
  return sockets;
}

/** The bare relay with the probe, `opts.streams` concurrent SSE streams for `opts.rounds` rounds after a warm-up one. */
async function relayBaseline(opts: EldOptions, standin: { url: string; child: ChildHandle }, signal: AbortSignal): Promise<EldResult['relay']> {
  const relay = await startRelayProcess(opts.root, standin.url, PROBE);
  try {
    const ctx: RunContext = {
      modes: ['relay'],
      standinUrl: standin.url,
      standinPid: standin.child.pid,
      relay: { url: relay.url, pid: relay.child.pid },
      tokens: opts.tokens,
      requestTimeoutMs: 30_000 + 5 * opts.tokens * opts.paceMs,
      stopSignal: signal,
      log: opts.log,
    };
    opts.log(`eld: the bare relay (pid ${relay.child.pid}) with the probe, ${opts.streams} SSE streams`);
    await runLevel(ctx, opts.streams, 1);
    relay.child.process.stdin?.write('reset\n');
    const level = await runLevel(ctx, opts.streams, opts.rounds);
    const loaded = await askProbe<LoopDelay>(relay.child, 'read', 'eventLoopDelay', signal);
    const m = level.modes.relay!;
    return { loaded, ok: m.ok, failures: m.failures, cpuMsPerStream: m.cpuMsPerStream.relay };
  } finally {
    await relay.child.stop();
  }
}

export async function measureEventLoopDelay(opts: EldOptions): Promise<EldResult> {
  const { root, stopSignal: signal, log } = opts;
  const tmp = mkdtempSync(join(tmpdir(), 'bench-eld-'));
  const children: ChildHandle[] = [];
  let sockets: ChatSocket[] = [];
  try {
    const standin = await startStandinProcess(root, opts.tokens, opts.paceMs);
    children.push(standin.child);
    const gw = await startGatewayProcess(root, standin.url, tmp, [...PROBE, ...(opts.nodeArgs ?? [])], {}, { raiseFdLimit: true });
    children.push(gw.child);
    const reset = () => gw.child.process.stdin?.write('reset\n');
    const readProbe = () => askProbe<LoopDelay>(gw.child, 'read', 'eventLoopDelay', signal);
    log(`eld: gateway (pid ${gw.child.pid}) with the event-loop probe; connecting ${opts.streams} Socket.IO clients`);
    sockets = await connectAll(gw.url, opts.streams, signal);
    const timeoutMs = 30_000 + 5 * opts.tokens * opts.paceMs;

    log(`eld: warm-up round of ${opts.streams} streams`);
    const warm = await chatRound(sockets, opts.tokens, timeoutMs, signal);
    const warmupFailures = warm.filter((o) => !o.ok).length;
    signal.throwIfAborted();

    const outcomes: StreamOutcome[] = [];
    const cpuBefore = readProcStats(gw.child.pid)?.cpuMs ?? Number.NaN;
    reset();
    for (let r = 0; r < opts.rounds; r++) {
      const round = await chatRound(sockets, opts.tokens, timeoutMs, signal);
      signal.throwIfAborted();
      outcomes.push(...round);
      const failed = round.filter((o) => !o.ok).length;
      log(`  eld round ${r + 1}/${opts.rounds}: ${round.length - failed}/${round.length} streams ok`);
    }
    const loaded = await readProbe();
    const cpuMs = (readProcStats(gw.child.pid)?.cpuMs ?? Number.NaN) - cpuBefore;

    // The baseline: the same process and connections, nothing streaming, for as long.
    reset();
    await sleep(Math.min(loaded.windowMs, 5_000), signal);
    const idle = await readProbe();

    for (const s of sockets) s.close();
    sockets = [];
    await gw.child.stop();
    const relay = await relayBaseline(opts, standin, signal);

    const ok = outcomes.filter((o) => o.ok);
    const errors: Record<string, number> = {};
    for (const o of outcomes) if (!o.ok) errors[o.error ?? '?'] = (errors[o.error ?? '?'] ?? 0) + 1;
    return {
      streams: opts.streams,
      rounds: opts.rounds,
      tokens: opts.tokens,
      paceMs: opts.paceMs,
      ok: ok.length,
      failures: outcomes.length - ok.length,
      errors,
      loaded,
      idle,
      ttftMs: summarize(ok.map((o) => o.ttftMs)),
      totalMs: summarize(ok.map((o) => o.totalMs)),
      gatewayCpuMsPerStream: cpuMs / outcomes.length,
      warmupFailures,
      relay,
    };
  } finally {
    for (const s of sockets) s.close();
    await Promise.all(children.map((c) => c.stop()));
    rmSync(tmp, { recursive: true, force: true });
  }
}
