/**
 * Rounds and levels: a round is `concurrency` simultaneous streams of one mode; a level
 * alternates direct and gateway rounds (ABBA) and aggregates them per mode.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readProcStats } from './processes.js';
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
}

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
}

function targets(ctx: RunContext) {
  return { direct: directTarget(ctx.standinUrl), gateway: gatewayTarget(ctx.gatewayUrl) } as const;
}

async function runRound(ctx: RunContext, mode: Mode, concurrency: number): Promise<RoundResult> {
  const target = targets(ctx)[mode];
  const gwBefore = readProcStats(ctx.gatewayPid);
  const siBefore = readProcStats(ctx.standinPid);
  const clientBefore = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: concurrency }, () => measureStream(mode, target, ctx.tokens, ctx.requestTimeoutMs)),
  );
  const wallMs = performance.now() - started;
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

export async function runLevel(ctx: RunContext, concurrency: number, rounds: number): Promise<LevelResult> {
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
    clientLoopDelayP99Ms: Math.max(...rounds.map((r) => r.loopDelayP99Ms)),
    clientLoopDelayMaxMs: Math.max(...rounds.map((r) => r.loopDelayMaxMs)),
    samples: { ttftMs: ttft, totalMs: total },
  };
}
