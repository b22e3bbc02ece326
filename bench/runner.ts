/**
 * Rounds and levels: a round is `concurrency` simultaneous streams of one mode; a level runs
 * the measured modes round after round, rotating their order (round i starts with mode i mod n),
 * and aggregates them per mode.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readProcStats, readTcpCounters, type TcpCounters } from './processes.js';
import { measureStream, type Mode, type StreamResult, directTarget, gatewayTarget, relayTarget } from './sse-client.js';
import { summarize, type Summary } from './stats.js';

/** The processes between the client and the stand-in, one per mode that has a hop. */
export type Hop = 'relay' | 'gateway';
export const HOPS: readonly Hop[] = ['relay', 'gateway'];

export interface RunContext {
  /** Measured modes, in report order (each has its URL below). */
  modes: readonly Mode[];
  standinUrl: string;
  standinPid: number;
  /** Set when the relay runs (the "relay" mode is measured). */
  relay?: { url: string; pid: number };
  /** Set when the gateway runs (the "gateway" mode is measured). */
  gateway?: { url: string; pid: number };
  tokens: number;
  /** Per-stream timeout; a stream that takes longer counts as a failure. */
  requestTimeoutMs: number;
  /** Ends the run early (hard timeout, SIGINT): in-flight streams are cut and no new round starts. */
  stopSignal: AbortSignal;
  /** Progress lines (stderr). */
  log(line: string): void;
}

interface RoundResult {
  mode: Mode;
  results: StreamResult[];
  wallMs: number;
  /** CPU used during the round, per process (NaN where /proc is unavailable or the process does not run). */
  cpuMs: CpuByProcess;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Highest CPU share of one core of each hop process over any {@link PEAK_WINDOW_MS} window of the round. */
  peakCoreShare: Record<Hop, number>;
}

export interface CpuByProcess {
  gateway: number;
  relay: number;
  standin: number;
  client: number;
}

const PEAK_WINDOW_MS = 500;
/** Streams started per event-loop turn when a round opens. */
const LAUNCH_BATCH = 25;

export interface ModeStats {
  mode: Mode;
  streams: number;
  ok: number;
  failures: number;
  /** Distinct failure reasons with their counts. */
  errors: Record<string, number>;
  ttftMs: Summary;
  totalMs: Summary;
  wallMs: number;
  /** CPU milliseconds per stream, by process, during this mode's rounds (NaN for a process that does not run). */
  cpuMsPerStream: CpuByProcess;
  /** Gateway CPU during this mode's rounds as a share of one core (1 = 100 %). */
  gatewayCoreShare: number;
  /** Highest share over any 500 ms window (the average hides a saturated burst followed by a quiet tail). */
  gatewayPeakCoreShare: number;
  /** The same two figures for the bare relay process. */
  relayCoreShare: number;
  relayPeakCoreShare: number;
  /** Worst client event-loop delay seen in any round (a client-side bottleneck shows here). */
  clientLoopDelayP99Ms: number;
  clientLoopDelayMaxMs: number;
  samples: { ttftMs: number[]; totalMs: number[] };
}

export interface MemoryStats {
  rssMbBefore: number;
  rssMbAfter: number;
  peakMb: number;
}

export interface LevelResult {
  concurrency: number;
  rounds: number;
  /** One entry per measured mode. */
  modes: Partial<Record<Mode, ModeStats>>;
  /** Resident memory of each hop process that runs, over the level. */
  memory: Partial<Record<Hop, MemoryStats>>;
  /** Kernel TCP counter increases during the level, warm-up included (machine-wide). */
  tcp: TcpCounters | undefined;
}

function targetFor(ctx: RunContext, mode: Mode) {
  switch (mode) {
    case 'direct':
      return directTarget(ctx.standinUrl);
    case 'relay':
      if (!ctx.relay) throw new Error('the relay mode is measured but the relay does not run');
      return relayTarget(ctx.relay.url);
    case 'gateway':
      if (!ctx.gateway) throw new Error('the gateway mode is measured but the gateway does not run');
      return gatewayTarget(ctx.gateway.url);
  }
}

const cpuOf = (pid: number | undefined) => (pid === undefined ? undefined : readProcStats(pid)?.cpuMs);

async function runRound(ctx: RunContext, mode: Mode, concurrency: number): Promise<RoundResult> {
  ctx.stopSignal.throwIfAborted();
  const target = targetFor(ctx, mode);
  const pids: Record<Hop, number | undefined> = { gateway: ctx.gateway?.pid, relay: ctx.relay?.pid };
  const before = { gateway: cpuOf(pids.gateway), relay: cpuOf(pids.relay), standin: cpuOf(ctx.standinPid) };
  const clientBefore = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const started = performance.now();
  const peak: Record<Hop, number> = { gateway: 0, relay: 0 };
  let last = { at: started, cpuMs: { gateway: before.gateway ?? Number.NaN, relay: before.relay ?? Number.NaN } };
  const samplePeak = () => {
    const now = { at: performance.now(), cpuMs: { gateway: cpuOf(pids.gateway) ?? Number.NaN, relay: cpuOf(pids.relay) ?? Number.NaN } };
    for (const hop of HOPS) peak[hop] = Math.max(peak[hop], (now.cpuMs[hop] - last.cpuMs[hop]) / (now.at - last.at));
    last = now;
  };
  const sampler = setInterval(samplePeak, PEAK_WINDOW_MS);
  const pending: Promise<StreamResult>[] = [];
  for (let i = 0; i < concurrency; i++) {
    pending.push(measureStream(mode, target, ctx.tokens, ctx.requestTimeoutMs, ctx.stopSignal));
    // fetch() does real synchronous work; without a pause, request #1 would only reach the socket
    // after all the others were built, and its clock would already be running.
    if ((i + 1) % LAUNCH_BATCH === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(pending);
  const wallMs = performance.now() - started;
  clearInterval(sampler);
  ctx.stopSignal.throwIfAborted(); // a cut round is not a result
  if (performance.now() - last.at >= 100) samplePeak(); // the last, partial window (10 ms clock ticks: >= 100 ms keeps it meaningful)
  loop.disable();
  const client = process.cpuUsage(clientBefore);
  const delta = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? b - a : Number.NaN);
  return {
    mode,
    results,
    wallMs,
    cpuMs: {
      gateway: delta(before.gateway, cpuOf(pids.gateway)),
      relay: delta(before.relay, cpuOf(pids.relay)),
      standin: delta(before.standin, cpuOf(ctx.standinPid)),
      client: (client.user + client.system) / 1000,
    },
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    loopDelayMaxMs: loop.max / 1e6,
    peakCoreShare: peak,
  };
}

/**
 * The modes of round `i`, rotated: round 0 runs them in report order, round 1 starts with the
 * second mode, and so on, so over a multiple of `modes.length` rounds each mode runs first,
 * second and last equally often (with two modes this is ABBA order).
 */
export function order(modes: readonly Mode[], i: number): Mode[] {
  const n = modes.length;
  return modes.map((_, k) => modes[(i + k) % n] as Mode);
}

/** Unmeasured rounds (connection set-up, JIT). Returns the number of failed streams. */
export async function warmUp(ctx: RunContext, concurrency: number, rounds: number): Promise<number> {
  let failed = 0;
  for (let i = 0; i < rounds; i++) {
    for (const mode of order(ctx.modes, i)) {
      const r = await runRound(ctx, mode, concurrency);
      const bad = r.results.filter((x) => !x.ok);
      failed += bad.length;
      if (bad[0]) ctx.log(`  warm-up ${mode} x${concurrency}: ${bad.length} failed (${bad[0].error ?? '?'})`);
    }
  }
  return failed;
}

/** `tcpBefore`: counters read before the level's warm-up, so connection set-up trouble is seen too. */
export async function runLevel(ctx: RunContext, concurrency: number, rounds: number, tcpBefore?: TcpCounters): Promise<LevelResult> {
  const hopPids: Array<[Hop, number]> = [];
  if (ctx.relay) hopPids.push(['relay', ctx.relay.pid]);
  if (ctx.gateway) hopPids.push(['gateway', ctx.gateway.pid]);
  const memBefore = new Map(hopPids.map(([hop, pid]) => [hop, readProcStats(pid)]));
  const byMode: Record<Mode, RoundResult[]> = { direct: [], relay: [], gateway: [] };
  const progressEvery = Math.max(1, Math.ceil(rounds / 4));
  for (let i = 0; i < rounds; i++) {
    for (const mode of order(ctx.modes, i)) {
      const r = await runRound(ctx, mode, concurrency);
      byMode[mode].push(r);
      const failed = r.results.filter((x) => !x.ok).length;
      if (concurrency > 1 || (i + 1) % progressEvery === 0 || failed > 0) {
        ctx.log(
          `  c=${concurrency} round ${i + 1}/${rounds} ${mode.padEnd(7)} ${(r.wallMs / 1000).toFixed(2)} s` +
            (failed ? `, ${failed} FAILED` : ''),
        );
      }
    }
  }
  const tcpAfter = readTcpCounters();
  const memory: Partial<Record<Hop, MemoryStats>> = {};
  for (const [hop, pid] of hopPids) {
    const after = readProcStats(pid);
    memory[hop] = { rssMbBefore: memBefore.get(hop)?.rssMb ?? Number.NaN, rssMbAfter: after?.rssMb ?? Number.NaN, peakMb: after?.hwmMb ?? Number.NaN };
  }
  const modes: Partial<Record<Mode, ModeStats>> = {};
  for (const mode of ctx.modes) modes[mode] = aggregate(mode, byMode[mode]);
  return {
    concurrency,
    rounds,
    modes,
    memory,
    tcp:
      tcpBefore && tcpAfter
        ? {
            listenOverflows: tcpAfter.listenOverflows - tcpBefore.listenOverflows,
            syncookiesSent: tcpAfter.syncookiesSent - tcpBefore.syncookiesSent,
            syncookiesFailed: tcpAfter.syncookiesFailed - tcpBefore.syncookiesFailed,
          }
        : undefined,
  };
}

function aggregate(mode: Mode, rounds: RoundResult[]): ModeStats {
  const all = rounds.flatMap((r) => r.results);
  const ok = all.filter((r) => r.ok);
  const errors: Record<string, number> = {};
  for (const r of all) if (!r.ok) errors[r.error ?? 'unknown'] = (errors[r.error ?? 'unknown'] ?? 0) + 1;
  const sum = (f: (r: RoundResult) => number) => rounds.reduce((s, r) => s + f(r), 0);
  const streams = all.length || 1;
  const wallMs = sum((r) => r.wallMs);
  const gatewayCpu = sum((r) => r.cpuMs.gateway);
  const relayCpu = sum((r) => r.cpuMs.relay);
  const ttft = ok.map((r) => r.ttftMs);
  const total = ok.map((r) => r.totalMs);
  return {
    mode,
    streams: all.length,
    ok: ok.length,
    failures: all.length - ok.length,
    errors,
    ttftMs: summarize(ttft),
    totalMs: summarize(total),
    wallMs,
    cpuMsPerStream: {
      gateway: gatewayCpu / streams,
      relay: relayCpu / streams,
      standin: sum((r) => r.cpuMs.standin) / streams,
      client: sum((r) => r.cpuMs.client) / streams,
    },
    gatewayCoreShare: wallMs > 0 ? gatewayCpu / wallMs : Number.NaN,
    gatewayPeakCoreShare: Math.max(...rounds.map((r) => r.peakCoreShare.gateway)),
    relayCoreShare: wallMs > 0 ? relayCpu / wallMs : Number.NaN,
    relayPeakCoreShare: Math.max(...rounds.map((r) => r.peakCoreShare.relay)),
    clientLoopDelayP99Ms: Math.max(...rounds.map((r) => r.loopDelayP99Ms)),
    clientLoopDelayMaxMs: Math.max(...rounds.map((r) => r.loopDelayMaxMs)),
    samples: { ttftMs: ttft, totalMs: total },
  };
}
