/** Human-readable tables and the JSON result file. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
import type { BenchOptions } from './args.js';
import type { Hop, LevelResult, ModeStats } from './runner.js';
import type { Mode } from './sse-client.js';
import { round2, type Summary } from './stats.js';

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(1)}` : '-');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(3)}x` : '-');

/** The first `leftAligned` cells are padded on the right (labels), the others on the left (numbers). */
function row(cells: string[], widths: number[], leftAligned = 1): string {
  return cells.map((c, i) => (i < leftAligned ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
}

/** The differences the report shows, each when both of its modes were measured. */
const PAIRS: ReadonlyArray<{ key: string; label: string; a: Mode; b: Mode }> = [
  { key: 'relayMinusDirect', label: 'relay - direct', a: 'relay', b: 'direct' },
  { key: 'gatewayMinusRelay', label: 'gateway - relay', a: 'gateway', b: 'relay' },
  { key: 'gatewayMinusDirect', label: 'gateway - direct', a: 'gateway', b: 'direct' },
];

interface Added {
  ttftP50: number;
  ttftP99: number;
  totalP50: number;
  totalP99: number;
}

/** Percentile `a` minus percentile `b` (not a percentile of paired differences). */
function added(a: ModeStats, b: ModeStats): Added {
  const d = (f: (m: ModeStats) => Summary, p: 'p50' | 'p99') => f(a)[p] - f(b)[p];
  return {
    ttftP50: d((m) => m.ttftMs, 'p50'),
    ttftP99: d((m) => m.ttftMs, 'p99'),
    totalP50: d((m) => m.totalMs, 'p50'),
    totalP99: d((m) => m.totalMs, 'p99'),
  };
}

function pairsOf(level: LevelResult): Array<{ key: string; label: string; added: Added }> {
  const out: Array<{ key: string; label: string; added: Added }> = [];
  for (const p of PAIRS) {
    const a = level.modes[p.a];
    const b = level.modes[p.b];
    if (a && b) out.push({ key: p.key, label: p.label, added: added(a, b) });
  }
  return out;
}

const HOP_CPU: Record<Hop, (m: ModeStats) => { perStream: number; share: number; peak: number }> = {
  relay: (m) => ({ perStream: m.cpuMsPerStream.relay, share: m.relayCoreShare, peak: m.relayPeakCoreShare }),
  gateway: (m) => ({ perStream: m.cpuMsPerStream.gateway, share: m.gatewayCoreShare, peak: m.gatewayPeakCoreShare }),
};

/** Lines about one hop process (relay or gateway), from the rounds of its own mode. */
function hopLines(hop: Hop, level: LevelResult, opts: BenchOptions): string[] {
  const m = level.modes[hop];
  if (!m) return [];
  const { perStream, share, peak } = HOP_CPU[hop](m);
  const mem = level.memory[hop];
  const label = `${hop} process`.padEnd(20);
  const lines = [
    `  ${label} CPU ${f2(perStream)} ms per stream, ${f1(share * 100)} % of one core on average during its rounds, ` +
      `${f1(peak * 100)} % at peak (500 ms window)` +
      (mem ? `; RSS ${f1(mem.rssMbBefore)} -> ${f1(mem.rssMbAfter)} MB (peak ${f1(mem.peakMb)} MB)` : ''),
  ];
  const usPerToken = (perStream * 1000) / opts.tokens;
  if (Number.isFinite(usPerToken) && usPerToken > 0) {
    const tokensPerSecond = 1e6 / usPerToken;
    const streams = opts.paceMs > 0 ? tokensPerSecond / (1000 / opts.paceMs) : Number.NaN;
    lines.push(
      `  ${`${hop} cost`.padEnd(20)} ${f1(usPerToken)} us CPU per relayed token (request overhead included)` +
        (share >= 0.3
          ? `: one core saturates near ${Math.round(tokensPerSecond)} tokens/s, about ` +
            `${Number.isFinite(streams) ? Math.round(streams) : '-'} concurrent streams at ${opts.paceMs} ms/token`
          : ` (${hop} mostly idle: dominated by per-wake-up overhead, not a capacity figure)`),
    );
  }
  return lines;
}

/** One block per concurrency level. */
export function formatLevel(level: LevelResult, opts: BenchOptions): string {
  const measured = opts.modes.flatMap((mode) => level.modes[mode] ?? []);
  const widths = [18, 11, 10, 10, 11, 11];
  const lines: string[] = [];
  const idealTotal = opts.paceMs * opts.tokens;
  lines.push(
    `Concurrency ${level.concurrency}: ${level.rounds} round(s) x ${level.concurrency} stream(s) per mode; ` +
      `ideal TTFT ${opts.paceMs} ms, ideal total ${idealTotal} ms (${opts.tokens} tokens x ${opts.paceMs} ms)`,
  );
  lines.push(row(['', 'ok/streams', 'TTFT p50', 'TTFT p99', 'total p50', 'total p99'], widths));
  for (const m of measured) {
    lines.push(row([m.mode, `${m.ok}/${m.streams}`, f1(m.ttftMs.p50), f1(m.ttftMs.p99), f1(m.totalMs.p50), f1(m.totalMs.p99)], widths));
  }
  for (const p of pairsOf(level)) {
    lines.push(row([p.label, '', signed(p.added.ttftP50), signed(p.added.ttftP99), signed(p.added.totalP50), signed(p.added.totalP99)], widths));
  }
  const { direct: d, gateway: g } = level.modes;
  if (d && g) {
    lines.push(
      row(
        ['ratio gw / direct', '', ratio(g.ttftMs.p50, d.ttftMs.p50), ratio(g.ttftMs.p99, d.ttftMs.p99), ratio(g.totalMs.p50, d.totalMs.p50), ratio(g.totalMs.p99, d.totalMs.p99)],
        widths,
      ),
    );
  }
  const perMode = (f: (m: ModeStats) => string) => measured.map((m) => `${m.mode} ${f(m)}`).join(', ');
  lines.push(`  CPU ms per stream    stand-in: ${perMode((m) => f2(m.cpuMsPerStream.standin))}; client: ${perMode((m) => f2(m.cpuMsPerStream.client))}`);
  lines.push(...hopLines('relay', level, opts), ...hopLines('gateway', level, opts));
  const r = level.modes.relay;
  if (r && g) {
    const own = g.cpuMsPerStream.gateway - r.cpuMsPerStream.relay;
    lines.push(
      `  gateway own CPU      ${signed(own)} ms per stream over the bare relay (${signed((own * 1000) / opts.tokens)} us per token); ` +
        `gateway / relay CPU ${ratio(g.cpuMsPerStream.gateway, r.cpuMsPerStream.relay)}`,
    );
  }
  lines.push(`  client event loop    delay p99/max, ms: ${perMode((m) => `${f1(m.clientLoopDelayP99Ms)}/${f1(m.clientLoopDelayMaxMs)}`)}`);
  const tcp = level.tcp;
  if (tcp && (tcp.listenOverflows > 0 || tcp.syncookiesFailed > 0)) {
    lines.push(
      `  kernel TCP (machine-wide, warm-up included): ${tcp.listenOverflows} listen-queue overflows, ` +
        `${tcp.syncookiesSent} SYN cookies sent, ${tcp.syncookiesFailed} failed (each failure resets a client connection)`,
    );
  }
  for (const m of measured) {
    for (const [err, n] of Object.entries(m.errors).slice(0, 5)) lines.push(`  FAILED ${m.mode}: ${n} x ${err}`);
  }
  return lines.join('\n');
}

/** The added latencies of every level: the numbers most people look for. */
export function formatSummary(levels: LevelResult[]): string {
  const widths = [6, 17, 10, 10, 10, 10];
  const lines = [
    'Added latency (ms): relay - direct = one extra bare Node hop; gateway - relay = the gateway\'s own work',
    row(['conc.', 'difference', 'TTFT p50', 'TTFT p99', 'total p50', 'total p99'], widths, 2),
  ];
  for (const l of levels) {
    for (const p of pairsOf(l)) {
      lines.push(row([String(l.concurrency), p.label, signed(p.added.ttftP50), signed(p.added.ttftP99), signed(p.added.totalP50), signed(p.added.totalP99)], widths, 2));
    }
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
    relayCoreShare: round2(m.relayCoreShare),
    relayPeakCoreShare: round2(m.relayPeakCoreShare),
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
  relayProblemLogLines: number;
}

const roundAll = (o: object) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round2(v) : v]));

export function writeJson(file: string, info: RunInfo, levels: LevelResult[]): void {
  mkdirSync(dirname(file), { recursive: true });
  const doc = {
    ...info,
    durationMs: Math.round(info.durationMs),
    machine: { node: process.version, platform: process.platform, arch: process.arch, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavg: loadavg() },
    note:
      'Client, stand-in, relay and gateway share this machine; all traffic is on 127.0.0.1. ' +
      'addedMs = gateway percentile - direct percentile; addedMsByPair also has relay - direct (one extra bare Node hop) ' +
      'and gateway - relay (the gateway\'s own cost). Modes ran in rotated order, round by round.',
    levels: levels.map((l) => {
      const pairs = pairsOf(l);
      const gwDirect = pairs.find((p) => p.key === 'gatewayMinusDirect');
      return {
        concurrency: l.concurrency,
        rounds: l.rounds,
        modes: Object.keys(l.modes),
        addedMs: gwDirect ? roundAll(gwDirect.added) : null,
        addedMsByPair: Object.fromEntries(pairs.map((p) => [p.key, roundAll(p.added)])),
        gatewayMemory: l.memory.gateway ? roundAll(l.memory.gateway) : null,
        relayMemory: l.memory.relay ? roundAll(l.memory.relay) : null,
        kernelTcp: l.tcp ?? null,
        ...Object.fromEntries(Object.entries(l.modes).map(([mode, m]) => [mode, roundStats(m)])),
      };
    }),
  };
  writeFileSync(file, `${JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
}
