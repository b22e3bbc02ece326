/**
 * Rounds and levels: a round is `concurrency` simultaneous streams of one mode; a level
 * alternates direct and gateway rounds (ABBA) and aggregates them per mode.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readProcStats, readTcpCounters, type TcpCounters } from './processes.js';
import { measureStream, type Mode, type StreamResult, directTarget, gatewayTarget } from './sse-client.js';
import { summarize, type Summary } from './stats.js';

export interface RunContext {
  standinUrl: string;
  gatewayUrl: string;
  gatewayPid: number;
  standinPid: number;
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
  /** CPU used during the round, per process (NaN where /proc is unavailable). */
  cpuMs: { gateway: number; standin: number; client: number };
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Highest gateway CPU share of one core over any {@link PEAK_WINDOW_MS} window of the round. */
  gatewayPeakCoreShare: number;
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
  /** CPU milliseconds per stream, by process, during this mode's rounds. */
  cpuMsPerStream: { gateway: number; standin: number; client: number };
  /** Gateway CPU during this mode's rounds as a share of one core (1 = 100 %). */
  gatewayCoreShare: number;
  /** Highest share over any 500 ms window (the average hides a saturated burst followed by a quiet tail). */
  gatewayPeakCoreShare: number;
  /** Worst client event-loop delay seen in any round (a client-side bottleneck shows here). */
  clientLoopDelayP99Ms: number;
  clientLoopDelayMaxMs: number;
  samples: { ttftMs: number[]; totalMs: number[] };
}

export interface LevelResult {
  concurrency: number;
  rounds: number;
  direct: ModeStats;
  gateway: ModeStats;
  gatewayMemory: { rssMbBefore: number; rssMbAfter: number; peakMb: number };
  /** Kernel TCP counter increases during the level, warm-up included (machine-wide). */
  tcp: TcpCounters | undefined;
}

function targets(ctx: RunContext) {
  return { direct: directTarget(ctx.standinUrl), gateway: gatewayTarget(ctx.gatewayUrl) } as const;
}

async function runRound(ctx: RunContext, mode: Mode, concurrency: number): Promise<RoundResult> {
  ctx.stopSignal.throwIfAborted();
  const target = targets(ctx)[mode];
  const gwBefore = readProcStats(ctx.gatewayPid);
  const siBefore = readProcStats(ctx.standinPid);
  const clientBefore = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const started = performance.now();
  let peak = 0;
  let last = { at: started, cpuMs: gwBefore?.cpuMs ?? Number.NaN };
  const samplePeak = () => {
    const now = { at: performance.now(), cpuMs: readProcStats(ctx.gatewayPid)?.cpuMs ?? Number.NaN };
    peak = Math.max(peak, (now.cpuMs - last.cpuMs) / (now.at - last.at));
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
  const gwAfter = readProcStats(ctx.gatewayPid);
  const siAfter = readProcStats(ctx.standinPid);
  const delta = (a: { cpuMs: number } | undefined, b: { cpuMs: number } | undefined) => (a && b ? b.cpuMs - a.cpuMs : Number.NaN);
  return {
    mode,
    results,
    wallMs,
    cpuMs: { gateway: delta(gwBefore, gwAfter), standin: delta(siBefore, siAfter), client: (client.user + client.system) / 1000 },
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    loopDelayMaxMs: loop.max / 1e6,
    gatewayPeakCoreShare: peak,
  };
}

/** Round `i` runs direct first when i is even, gateway first when odd (ABBA ordering). */
function order(i: number): [Mode, Mode] {
  return i % 2 === 0 ? ['direct', 'gateway'] : ['gateway', 'direct'];
}

/** Unmeasured rounds (connection set-up, JIT). Returns the number of failed streams. */
export async function warmUp(ctx: RunContext, concurrency: number, rounds: number): Promise<number> {
  let failed = 0;
  for (let i = 0; i < rounds; i++) {
    for (const mode of order(i)) {
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
  const memBefore = readProcStats(ctx.gatewayPid);
  const byMode: Record<Mode, RoundResult[]> = { direct: [], gateway: [] };
  const progressEvery = Math.max(1, Math.ceil(rounds / 4));
  for (let i = 0; i < rounds; i++) {
    for (const mode of order(i)) {
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
  const memAfter = readProcStats(ctx.gatewayPid);
  const tcpAfter = readTcpCounters();
  return {
    concurrency,
    rounds,
    direct: aggregate('direct', byMode.direct),
    gateway: aggregate('gateway', byMode.gateway),
    gatewayMemory: {
      rssMbBefore: memBefore?.rssMb ?? Number.NaN,
      rssMbAfter: memAfter?.rssMb ?? Number.NaN,
      peakMb: memAfter?.hwmMb ?? Number.NaN,
    },
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
    cpuMsPerStream: { gateway: gatewayCpu / streams, standin: sum((r) => r.cpuMs.standin) / streams, client: sum((r) => r.cpuMs.client) / streams },
    gatewayCoreShare: wallMs > 0 ? gatewayCpu / wallMs : Number.NaN,
    gatewayPeakCoreShare: Math.max(...rounds.map((r) => r.gatewayPeakCoreShare)),
    clientLoopDelayP99Ms: Math.max(...rounds.map((r) => r.loopDelayP99Ms)),
    clientLoopDelayMaxMs: Math.max(...rounds.map((r) => r.loopDelayMaxMs)),
    samples: { ttftMs: ttft, totalMs: total },
  };
}
