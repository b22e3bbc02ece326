/** Human-readable tables and the JSON result file. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
import type { BenchOptions } from './args.js';
import type { LevelResult, ModeStats } from './runner.js';
import { round2 } from './stats.js';

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(1)}` : '-');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(3)}x` : '-');

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
}

/** One block per concurrency level. */
export function formatLevel(level: LevelResult, opts: BenchOptions): string {
  const { direct: d, gateway: g } = level;
  const widths = [16, 11, 10, 10, 11, 11];
  const lines: string[] = [];
  const idealTotal = opts.paceMs * opts.tokens;
  lines.push(
    `Concurrency ${level.concurrency}: ${level.rounds} round(s) x ${level.concurrency} stream(s) per mode; ` +
      `ideal TTFT ${opts.paceMs} ms, ideal total ${idealTotal} ms (${opts.tokens} tokens x ${opts.paceMs} ms)`,
  );
  lines.push(row(['', 'ok/streams', 'TTFT p50', 'TTFT p99', 'total p50', 'total p99'], widths));
  for (const m of [d, g]) {
    lines.push(row([m.mode, `${m.ok}/${m.streams}`, f1(m.ttftMs.p50), f1(m.ttftMs.p99), f1(m.totalMs.p50), f1(m.totalMs.p99)], widths));
  }
  lines.push(
    row(
      ['added (gw - dir)', '', signed(g.ttftMs.p50 - d.ttftMs.p50), signed(g.ttftMs.p99 - d.ttftMs.p99), signed(g.totalMs.p50 - d.totalMs.p50), signed(g.totalMs.p99 - d.totalMs.p99)],
      widths,
    ),
  );
  lines.push(
    row(
      ['ratio (gw / dir)', '', ratio(g.ttftMs.p50, d.ttftMs.p50), ratio(g.ttftMs.p99, d.ttftMs.p99), ratio(g.totalMs.p50, d.totalMs.p50), ratio(g.totalMs.p99, d.totalMs.p99)],
      widths,
    ),
  );
  lines.push(
    `  CPU ms per stream    gateway ${f2(g.cpuMsPerStream.gateway)} | stand-in ${f2(d.cpuMsPerStream.standin)} (direct) / ` +
      `${f2(g.cpuMsPerStream.standin)} (gateway) | client ${f2(d.cpuMsPerStream.client)} (direct) / ${f2(g.cpuMsPerStream.client)} (gateway)`,
  );
  lines.push(
    `  gateway process      CPU ${f1(g.gatewayCoreShare * 100)} % of one core on average during its rounds, ` +
      `${f1(g.gatewayPeakCoreShare * 100)} % at peak (500 ms window); ` +
      `RSS ${f1(level.gatewayMemory.rssMbBefore)} -> ${f1(level.gatewayMemory.rssMbAfter)} MB (peak ${f1(level.gatewayMemory.peakMb)} MB)`,
  );
  const usPerToken = (g.cpuMsPerStream.gateway * 1000) / opts.tokens;
  if (Number.isFinite(usPerToken) && usPerToken > 0) {
    const tokensPerSecond = 1e6 / usPerToken;
    const streams = opts.paceMs > 0 ? tokensPerSecond / (1000 / opts.paceMs) : Number.NaN;
    lines.push(
      `  gateway cost         ${f1(usPerToken)} us CPU per relayed token (request overhead included)` +
        (g.gatewayCoreShare >= 0.3
          ? `: one core saturates near ${Math.round(tokensPerSecond)} tokens/s, about ` +
            `${Number.isFinite(streams) ? Math.round(streams) : '-'} concurrent streams at ${opts.paceMs} ms/token`
          : ' (gateway mostly idle: dominated by per-wake-up overhead, not a capacity figure)'),
    );
  }
  lines.push(
    `  client event loop    delay p99/max ${f1(d.clientLoopDelayP99Ms)}/${f1(d.clientLoopDelayMaxMs)} ms (direct), ` +
      `${f1(g.clientLoopDelayP99Ms)}/${f1(g.clientLoopDelayMaxMs)} ms (gateway)`,
  );
  const tcp = level.tcp;
  if (tcp && (tcp.listenOverflows > 0 || tcp.syncookiesFailed > 0)) {
    lines.push(
      `  kernel TCP (machine-wide, warm-up included): ${tcp.listenOverflows} listen-queue overflows, ` +
        `${tcp.syncookiesSent} SYN cookies sent, ${tcp.syncookiesFailed} failed (each failure resets a client connection)`,
    );
  }
  for (const m of [d, g]) {
    for (const [err, n] of Object.entries(m.errors).slice(0, 5)) lines.push(`  FAILED ${m.mode}: ${n} x ${err}`);
  }
  return lines.join('\n');
}

/** One line per level: the numbers most people look for. */
export function formatSummary(levels: LevelResult[]): string {
  const widths = [6, 12, 12, 12, 12, 9, 9];
  const lines = [
    'Gateway added latency (gateway minus direct, ms) and ratio',
    row(['conc.', 'TTFT p50', 'TTFT p99', 'total p50', 'total p99', 'TTFT x', 'total x'], widths),
  ];
  for (const l of levels) {
    const { direct: d, gateway: g } = l;
    lines.push(
      row(
        [
          String(l.concurrency),
          signed(g.ttftMs.p50 - d.ttftMs.p50),
          signed(g.ttftMs.p99 - d.ttftMs.p99),
          signed(g.totalMs.p50 - d.totalMs.p50),
          signed(g.totalMs.p99 - d.totalMs.p99),
          ratio(g.ttftMs.p50, d.ttftMs.p50),
          ratio(g.totalMs.p50, d.totalMs.p50),
        ],
        widths,
      ),
    );
  }
  lines.push('(differences of percentiles, not percentiles of paired differences; with < 100 samples p99 is near the max)');
  return lines.join('\n');
}

function roundStats(m: ModeStats): unknown {
  const r = (o: object) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round2(v) : v]));
  return {
    ...m,
    ttftMs: r(m.ttftMs),
    totalMs: r(m.totalMs),
    wallMs: round2(m.wallMs),
    cpuMsPerStream: r(m.cpuMsPerStream),
    gatewayCoreShare: round2(m.gatewayCoreShare),
    gatewayPeakCoreShare: round2(m.gatewayPeakCoreShare),
    clientLoopDelayP99Ms: round2(m.clientLoopDelayP99Ms),
    clientLoopDelayMaxMs: round2(m.clientLoopDelayMaxMs),
    samples: { ttftMs: m.samples.ttftMs.map(round2), totalMs: m.samples.totalMs.map(round2) },
  };
}

export interface RunInfo {
  startedAt: string;
  /** 1-minute load average when the run started (the end value is under `machine`). */
  loadAverageAtStart: number;
  durationMs: number;
  options: BenchOptions;
  /** Failed streams, measured rounds and warm-up together. */
  failures: number;
  warmupFailures: number;
  gatewayProblemLogLines: number;
  gatewayLogTail: string[];
}

export function writeJson(file: string, info: RunInfo, levels: LevelResult[]): void {
  mkdirSync(dirname(file), { recursive: true });
  const doc = {
    ...info,
    durationMs: Math.round(info.durationMs),
    machine: { node: process.version, platform: process.platform, arch: process.arch, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavg: loadavg() },
    note: 'Client, stand-in and gateway share this machine; all traffic is on 127.0.0.1. added = gateway percentile - direct percentile.',
    levels: levels.map((l) => ({
      concurrency: l.concurrency,
      rounds: l.rounds,
      addedMs: {
        ttftP50: round2(l.gateway.ttftMs.p50 - l.direct.ttftMs.p50),
        ttftP99: round2(l.gateway.ttftMs.p99 - l.direct.ttftMs.p99),
        totalP50: round2(l.gateway.totalMs.p50 - l.direct.totalMs.p50),
        totalP99: round2(l.gateway.totalMs.p99 - l.direct.totalMs.p99),
      },
      gatewayMemory: Object.fromEntries(Object.entries(l.gatewayMemory).map(([k, v]) => [k, round2(v)])),
      kernelTcp: l.tcp ?? null,
      direct: roundStats(l.direct),
      gateway: roundStats(l.gateway),
    })),
  };
  writeFileSync(file, `${JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
}
