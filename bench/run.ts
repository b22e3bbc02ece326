/**
 * `npm run bench`: every figure of the performance issue in one run, each against a baseline
 * measured in the same run, as a summary table on stdout and bench/results/summary.json.
 *
 *   ttft     TTFT p50/p99 through the gateway vs straight to the stand-in (direct) and vs a
 *            bare Node SSE relay, at concurrency 1, 200 and 1,000 (bench/ttft.ts)
 *   cpu      gateway and relay CPU µs per relayed token, 50- and 200-token replies at c=200
 *   turns    turns/s on the embedded defaults vs a bare Hono streamSSE endpoint sending the
 *            same bytes, 16 clients (bench/turns.ts)
 *   idle     gateway RSS with 10,000 idle Socket.IO connections; base RSS compiled vs tsx
 *   eld      event-loop delay p99 inside the gateway with 1,000 Socket.IO streams (bench/socket-load.ts)
 *   cluster  turns/s of start:cluster with 2 worker processes vs 1, on Redis (bench/cluster.ts)
 *   resume   what resumable streams add to TTFT p50, in-process buffer and Redis (bench/resume-ttft.ts)
 *   profile  (--profile) self time per token by area, gateway vs relay (bench/profile.ts)
 *
 * Each section starts its own processes and stops them; a section that fails or overruns
 * its time budget is reported and the run goes on. A hard timeout ends the whole run (exit 2),
 * children always killed. See `npm run bench -- --help`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchOptions } from './args.js';
import { buildGateway, stopAllChildren } from './processes.js';
import { formatProfile, profilePerToken, type ProfileResult } from './profile.js';
import { formatLevel, formatSummary } from './report.js';
import type { LevelResult, ModeStats } from './runner.js';
import { measureEventLoopDelay, measureIdleSockets, type EldResult, type IdleResult } from './socket-load.js';
import { round2 } from './stats.js';
import { measureTtft, type TtftResult } from './ttft.js';
import { measureTurns, type TurnsResult } from './turns.js';
import { measureCluster, type ClusterResult } from './cluster.js';
import { measureResume, type ResumeResult } from './resume-ttft.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

export const SECTIONS = ['ttft', 'cpu', 'turns', 'idle', 'eld', 'cluster', 'resume', 'profile'] as const;
export type Section = (typeof SECTIONS)[number];
const DEFAULT_SECTIONS: readonly Section[] = ['ttft', 'cpu', 'turns', 'idle', 'eld', 'cluster', 'resume'];

const USAGE = `Usage: npm run bench -- [options]

  --only ttft,cpu,turns,idle,eld,cluster,resume,profile
                  sections to run (default: all but profile, which runs only when asked)
  --profile       add the profile section (self time per token by area, gateway vs relay)
  --quick         a fast smoke run: fewer rounds, 1,000 idle sockets, 200 Socket.IO streams
  --timeout 900   hard limit for the whole run, seconds (quick: 300); children are killed
  --out FILE      JSON results (default bench/results/summary.json for a full run,
                  bench/results/summary-partial.json with --only or --quick)
  --help

Sections, each against a baseline measured in the same run on the same machine:
  ttft     TTFT p50/p99 gateway vs direct (client -> stand-in) and vs a bare Node SSE relay,
           at concurrency 1, 200 and 1,000; 50 tokens at 20 ms/token
  cpu      CPU us per relayed token, gateway vs bare relay, 50- and 200-token replies, c=200
  turns    turns/s, gateway on embedded defaults (local model, no pause per token, SQLite in a
           temp DATA_DIR) vs a bare Hono streamSSE endpoint replaying the same bytes; 16 clients
  idle     gateway RSS before/after 10,000 idle Socket.IO connections (websocket, anonymous, /);
           base RSS of node dist/node/main.js vs tsx src/node/main.ts
  eld      event-loop delay p99 inside the gateway (bench/eld-probe.mjs, preloaded) with 1,000
           concurrent ai:chat streams on /, 50 tokens at 20 ms/token; baseline: the bare relay
           (same probe) carrying as many SSE streams of the same stand-in
  cluster  turns/s of start:cluster (compiled, REDIS_URL on a real redis-server) with 2 worker
           processes vs 1, local model, 32 keep-alive clients; also what the machine itself gives
           two CPU-bound processes (a fixed task twice at once vs once)
  resume   TTFT p50 with resumable streams on vs off (STREAM_RESUME_TTL_S=0), sequential SSE
           turns, in-process buffer and Redis Streams, gateways taking turns request by request
  profile  self CPU time per relayed token by area, gateway vs relay (bench/profile.ts)
Exit status: 0 ok, 1 a section failed or a stream failed, 2 hard timeout, 130 interrupted.`;

interface RunOptions {
  sections: Section[];
  quick: boolean;
  timeoutSeconds: number;
  out: string;
}

function parseRunArgs(argv: string[]): RunOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  let sections = [...DEFAULT_SECTIONS] as Section[];
  if (values.only !== undefined) {
    const given = values.only.split(',').map((s) => s.trim()).filter(Boolean);
    for (const s of given) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: unknown section "${s}" (known: ${SECTIONS.join(', ')})`);
    sections = SECTIONS.filter((s) => given.includes(s));
    if (sections.length === 0) throw new Error('--only needs at least one section');
  }
  if (values.profile && !sections.includes('profile')) sections.push('profile');
  const timeoutSeconds = Number(values.timeout ?? (values.quick ? 300 : 900));
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 10) throw new Error('--timeout must be an integer >= 10');
  const partial = values.quick || values.only !== undefined;
  return { sections, quick: values.quick, timeoutSeconds, out: values.out ?? `bench/results/${partial ? 'summary-partial' : 'summary'}.json` };
}

/** Sizes of every section, full or quick, and each section's time budget (seconds). */
function planFor(quick: boolean) {
  const q = <T>(full: T, small: T) => (quick ? small : full);
  const ttft: BenchOptions = {
    modes: ['direct', 'relay', 'gateway'],
    concurrency: [1, 200, 1000],
    tokens: 50,
    paceMs: 20,
    requests: q(30, 5),
    rounds: q(3, 1),
    warmupTurns: q(3000, 200),
    warmup: q(5, 2),
    warmupRounds: q(1, 0),
    timeoutSeconds: 0, // the run's own limits apply
    out: '',
    profile: false,
  };
  return {
    ttft,
    // Warmed as the TTFT section is (the per-turn code needs a few thousand turns); the per-token
    // code of 200-token replies is warm after fewer turns (each runs it 200 times).
    cpu: { concurrency: 200, tokens: [50, 200], rounds: q(3, 1), warmupRounds: 1, warmupTurns: { 50: q(3000, 200), 200: q(1000, 200) } as Record<number, number>, paceMs: 20 },
    turns: { clients: 16, roundMs: q(5000, 1500), rounds: q(2, 1) },
    idle: { connections: q(10_000, 1000), addresses: 4, settleMs: q(2000, 1000) },
    eld: { streams: q(1000, 200), rounds: q(3, 1), tokens: 50, paceMs: 20 },
    cluster: { concurrency: 32, seconds: q(8, 3), rounds: q(2, 1) },
    resume: { turns: q(400, 100) },
    profile: { concurrency: 200, rounds: q(3, 1), tokens: 50, paceMs: 20, top: 15 },
    budgetSeconds: {
      ttft: q(540, 150),
      cpu: q(320, 90),
      turns: q(120, 60),
      idle: q(330, 120),
      eld: q(300, 120),
      cluster: q(150, 60),
      resume: q(90, 45),
      profile: q(240, 120),
    } satisfies Record<Section, number>,
  };
}

interface CpuResult {
  concurrency: number;
  byTokens: Array<{ tokens: number; gatewayUsPerToken: number; relayUsPerToken: number; ratio: number; failures: number; level: LevelResult }>;
}

interface Results {
  ttft?: TtftResult;
  cpu?: CpuResult;
  turns?: TurnsResult;
  idle?: IdleResult;
  eld?: EldResult;
  cluster?: ClusterResult;
  resume?: ResumeResult;
  profile?: ProfileResult;
}

/** One line of the summary table. */
interface Row {
  metric: string;
  unit: string;
  gateway: number;
  baseline: number;
  baselineName: string;
  /** gateway / baseline. */
  ratio: number;
  /** gateway - baseline, where that difference is what the target is about. */
  added?: number;
  target?: string;
  pass?: boolean;
}

const usPerToken = (m: ModeStats | undefined, hop: 'gateway' | 'relay', tokens: number) => ((m?.cpuMsPerStream[hop] ?? Number.NaN) * 1000) / tokens;
const n = (x: number) => x.toLocaleString('en-US');

function rowsOf(r: Results, plan: ReturnType<typeof planFor>): Row[] {
  const rows: Row[] = [];
  for (const level of r.ttft?.levels ?? []) {
    const { direct, relay, gateway } = level.modes;
    if (!gateway) continue;
    const c = level.concurrency;
    for (const p of ['p50', 'p99'] as const) {
      for (const [name, base] of [
        ['relay', relay],
        ['direct', direct],
      ] as const) {
        if (!base) continue;
        const g = gateway.ttftMs[p];
        const b = base.ttftMs[p];
        const row: Row = { metric: `TTFT ${p}, c=${n(c)}`, unit: 'ms', gateway: g, baseline: b, baselineName: name, ratio: g / b, added: g - b };
        if (name === 'relay' && p === 'p50' && c === 1) Object.assign(row, { target: '<= relay +1.5 ms', pass: g - b <= 1.5 });
        if (name === 'relay' && p === 'p50' && c === 200) Object.assign(row, { target: '<= 1.5x relay', pass: g / b <= 1.5 });
        rows.push(row);
      }
    }
  }
  for (const t of r.cpu?.byTokens ?? []) {
    const limit = t.tokens <= 50 ? 1.5 : 1.25;
    rows.push({
      metric: `CPU per token, ${t.tokens}-token replies, c=${r.cpu!.concurrency}`,
      unit: 'us',
      gateway: t.gatewayUsPerToken,
      baseline: t.relayUsPerToken,
      baselineName: 'relay',
      ratio: t.ratio,
      target: `<= ${limit}x`,
      pass: t.ratio <= limit && t.failures === 0,
    });
  }
  if (r.turns) {
    const g = r.turns.rates['gateway'];
    const b = r.turns.rates['bare-hono'];
    if (g && b) {
      const ratio = g.turnsPerSecond / b.turnsPerSecond;
      rows.push({
        metric: `turns/s, ${r.turns.clients} clients, local model`,
        unit: '/s',
        gateway: g.turnsPerSecond,
        baseline: b.turnsPerSecond,
        baselineName: 'bare Hono',
        ratio,
        target: '>= 0.75x',
        pass: ratio >= 0.75 && g.failures === 0,
      });
    }
    const off = r.turns.rates['no-metrics'];
    if (g && off) {
      const ratio = g.turnsPerSecond / off.turnsPerSecond;
      rows.push({
        metric: 'turns/s, metrics on vs off',
        unit: '/s',
        gateway: g.turnsPerSecond,
        baseline: off.turnsPerSecond,
        baselineName: 'METRICS_ENABLED=false',
        ratio,
        target: '>= 0.97x',
        pass: ratio >= 0.97 && g.failures === 0,
      });
    }
  }
  if (r.idle) {
    const i = r.idle;
    rows.push({
      metric: `RSS, ${n(i.connected)} idle Socket.IO conns`,
      unit: 'MB',
      gateway: i.rssAfterMb,
      baseline: i.rssBeforeMb,
      baselineName: 'no conns',
      ratio: i.rssAfterMb / i.rssBeforeMb,
      target: `<= 300 MB (${n(plan.idle.connections)})`,
      pass: i.rssAfterMb <= 300 && i.failed === 0 && i.connected === plan.idle.connections,
    });
    rows.push({ metric: 'RSS per idle Socket.IO conn', unit: 'KB', gateway: i.kbPerConnection, baseline: Number.NaN, baselineName: '', ratio: Number.NaN });
    rows.push({
      metric: 'base RSS, compiled entry',
      unit: 'MB',
      gateway: i.baseRssMb.compiled,
      baseline: i.baseRssMb.tsx,
      baselineName: 'tsx src',
      ratio: i.baseRssMb.compiled / i.baseRssMb.tsx,
    });
  }
  if (r.eld) {
    const e = r.eld;
    const base = e.relay ? { p99: e.relay.loaded.p99, name: 'bare relay' } : { p99: e.idle.p99, name: 'idle' };
    rows.push({
      metric: `event-loop delay p99, ${n(e.streams)} Socket.IO streams`,
      unit: 'ms',
      gateway: e.loaded.p99,
      baseline: base.p99,
      baselineName: base.name,
      ratio: e.loaded.p99 / base.p99,
      target: '<= 50 ms, 0 failed',
      pass: e.loaded.p99 <= 50 && e.failures === 0,
    });
    if (e.relay) {
      rows.push({
        metric: `CPU per stream at ${n(e.streams)} streams`,
        unit: 'ms',
        gateway: e.gatewayCpuMsPerStream,
        baseline: e.relay.cpuMsPerStream,
        baselineName: 'bare relay',
        ratio: e.gatewayCpuMsPerStream / e.relay.cpuMsPerStream,
      });
    }
    rows.push({
      metric: `failed streams of ${n(e.streams * e.rounds)} (eld)`,
      unit: '',
      gateway: e.failures,
      baseline: Number.NaN,
      baselineName: '',
      ratio: Number.NaN,
      target: '0',
      pass: e.failures === 0,
    });
  }
  if (r.cluster) {
    const c = r.cluster;
    const failed = c.runs.reduce((sum, run) => sum + run.failures, 0);
    rows.push({
      metric: `turns/s, start:cluster 2 processes vs 1`,
      unit: '/s',
      gateway: c.median.two,
      baseline: c.median.one,
      baselineName: '1 process',
      ratio: c.speedup,
      target: '>= 1.7x',
      pass: c.speedup >= 1.7 && failed === 0,
    });
    rows.push({ metric: 'the machine: 2 CPU-bound processes vs 1', unit: 'x', gateway: c.machineSpeedup, baseline: Number.NaN, baselineName: '', ratio: Number.NaN });
  }
  if (r.resume) {
    const t = r.resume.ttftMs;
    for (const [name, on, off] of [
      ['in-process', t.memory, t.off],
      ['Redis', t.redis, t.redisOff],
    ] as const) {
      rows.push({
        metric: `TTFT p50, resumable streams (${name})`,
        unit: 'ms',
        gateway: on.p50,
        baseline: off.p50,
        baselineName: 'resume off',
        ratio: on.p50 / off.p50,
        added: on.p50 - off.p50,
        target: '<= +0.5 ms',
        pass: on.p50 - off.p50 <= 0.5,
      });
    }
  }
  if (r.profile) {
    const { gateway, relay } = r.profile.perTokenUs;
    rows.push({ metric: 'profiled self time per token, c=200', unit: 'us', gateway, baseline: relay, baselineName: 'relay', ratio: gateway / relay });
  }
  return rows;
}

function formatRows(rows: Row[]): string {
  const num = (x: number, unit: string) => {
    if (!Number.isFinite(x)) return '-';
    const digits = unit === '/s' || (unit === '' && Number.isInteger(x)) ? 0 : 1;
    return `${x.toFixed(digits)}${unit && unit !== '/s' ? ` ${unit}` : ''}`;
  };
  const table = [
    ['metric', 'gateway', 'baseline', 'ratio', 'target', 'met'],
    ...rows.map((r) => [
      r.metric,
      num(r.gateway, r.unit),
      Number.isFinite(r.baseline) ? `${num(r.baseline, r.unit)} ${r.baselineName}` : '-',
      Number.isFinite(r.ratio) ? `${r.ratio.toFixed(3)}x${r.added !== undefined ? ` (${r.added >= 0 ? '+' : ''}${r.added.toFixed(1)} ${r.unit})` : ''}` : '-',
      r.target ?? '',
      r.pass === undefined ? '' : r.pass ? 'yes' : 'NO',
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/** A level without its raw samples, numbers rounded. */
function compactLevel(l: LevelResult) {
  const modes = Object.fromEntries(
    Object.entries(l.modes).map(([mode, m]) => [
      mode,
      {
        ok: m.ok,
        streams: m.streams,
        errors: m.errors,
        ttftMs: { p50: round2(m.ttftMs.p50), p90: round2(m.ttftMs.p90), p99: round2(m.ttftMs.p99), max: round2(m.ttftMs.max) },
        totalMs: { p50: round2(m.totalMs.p50), p99: round2(m.totalMs.p99) },
        cpuMsPerStream: Object.fromEntries(Object.entries(m.cpuMsPerStream).map(([k, v]) => [k, round2(v)])),
        clientLoopDelayP99Ms: round2(m.clientLoopDelayP99Ms),
      },
    ]),
  );
  return { concurrency: l.concurrency, rounds: l.rounds, modes, memoryMb: l.memory, kernelTcp: l.tcp };
}

function gitHead(): { commit: string; dirty: boolean } | undefined {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    // Changes to what is measured; the results files themselves do not count.
    const status = execFileSync('git', ['status', '--porcelain', '--', 'src', 'bench', 'package.json', 'package-lock.json', ':(exclude)bench/results'], { cwd: ROOT, encoding: 'utf8' });
    const dirty = status.trim() !== '';
    return { commit, dirty };
  } catch {
    return undefined;
  }
}

function writeSummary(file: string, doc: object): void {
  mkdirSync(dirname(file), { recursive: true });
  const clean = (_k: string, v: unknown) => (typeof v === 'number' ? (Number.isFinite(v) ? round2(v) : null) : v instanceof Map ? Object.fromEntries(v) : v);
  writeFileSync(file, `${JSON.stringify(doc, clean, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------

const stopping = new AbortController();
let shuttingDown: Promise<never> | undefined;
let finishReport: ((partial: string) => void) | undefined;
/** The section running now: on a stop it gets a few seconds to unwind (stop its children, remove its temp files). */
let running: Promise<unknown> | undefined;

function shutdown(code: number, reason?: string): Promise<never> {
  shuttingDown ??= (async () => {
    stopping.abort(new Error(reason ?? 'stopped'));
    if (reason) log(reason);
    if (running) await Promise.race([running.catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
    try {
      finishReport?.(reason ?? 'stopped');
    } catch (err) {
      log(`bench: could not write the partial report: ${String(err)}`);
    }
    await stopAllChildren().catch(() => {});
    process.exit(code);
  })();
  return shuttingDown;
}

async function main(): Promise<void> {
  let opts: RunOptions | undefined;
  try {
    opts = parseRunArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(64);
  }
  if (!opts) {
    console.log(USAGE);
    process.exit(0);
  }
  const { sections, quick } = opts;
  const plan = planFor(quick);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const loadAtStart = loadavg();
  const results: Results = {};
  const errors: Partial<Record<Section, string>> = {};
  const durations: Partial<Record<Section, number>> = {};
  /** 1-minute load average when each section started: other work on the machine shows here. */
  const loadAtSectionStart: Partial<Record<Section, number>> = {};
  const out = resolve(ROOT, opts.out);

  const report = (partial?: string) => {
    const rows = rowsOf(results, plan);
    const kind = quick ? 'quick run' : DEFAULT_SECTIONS.every((x) => sections.includes(x)) ? 'full run' : 'partial run';
    console.log(`\n== Summary (${kind}: ${sections.join(', ')}; ${cpus().length} cores shared by clients, stand-ins and servers) ==`);
    console.log(formatRows(rows));
    for (const [s, e] of Object.entries(errors)) console.log(`section ${s} FAILED: ${e}`);
    if (partial) console.log(`(partial: ${partial.trim()})`);
    writeSummary(out, {
      startedAt,
      durationS: (performance.now() - started) / 1000,
      ...(partial ? { partial: partial.trim() } : {}),
      quick,
      sections,
      git: gitHead(),
      machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavgAtStart: loadAtStart, loadavgAtEnd: loadavg() },
      note:
        'Client, stand-ins and servers share this machine; all traffic is on 127.0.0.1. Each ratio is gateway / baseline from the same run. ' +
        'TTFT: percentiles of each mode, rounds rotated; CPU from /proc (request overhead included); ELD from monitorEventLoopDelay(resolution 10 ms) inside the gateway.',
      rows,
      errors,
      sectionDurationsS: durations,
      loadAtSectionStart,
      plan: { ...plan, ttft: { ...plan.ttft, timeoutSeconds: undefined, out: undefined } },
      results: {
        ...(results.ttft
          ? {
              ttft: {
                ...results.ttft,
                levels: results.ttft.levels.map(compactLevel),
                // The log tails only where they say something.
                gatewayTail: results.ttft.gatewayProblemLines > 0 ? results.ttft.gatewayTail : undefined,
                relayTail: results.ttft.relayProblemLines > 0 ? results.ttft.relayTail : undefined,
              },
            }
          : {}),
        ...(results.cpu ? { cpu: { ...results.cpu, byTokens: results.cpu.byTokens.map((t) => ({ ...t, level: compactLevel(t.level) })) } } : {}),
        ...(results.turns ? { turns: results.turns } : {}),
        ...(results.idle ? { idle: results.idle } : {}),
        ...(results.cluster ? { cluster: results.cluster } : {}),
        ...(results.resume ? { resume: results.resume } : {}),
        ...(results.eld ? { eld: results.eld } : {}),
        ...(results.profile ? { profile: { perTokenUs: results.profile.perTokenUs, areas: results.profile.areas } } : {}),
      },
    });
    console.log(`\nResults written to ${out}`);
  };
  finishReport = report;

  const hardTimeout = setTimeout(() => void shutdown(2, `\nbench: hard timeout of ${opts.timeoutSeconds} s reached; partial results follow`), opts.timeoutSeconds * 1000);
  hardTimeout.unref();

  log(`bench: sections ${sections.join(', ')}${quick ? ' (quick)' : ''}; ${cpus().length} CPU(s), load ${loadAtStart[0]?.toFixed(2)}; hard timeout ${opts.timeoutSeconds} s`);
  if ((loadAtStart[0] ?? 0) > cpus().length / 2) log('bench: WARNING: the machine is already busy; other processes will distort the numbers');
  log('bench: compiling the gateway (npm run build)');
  buildGateway(ROOT);

  /** Runs one section within its budget; a failure or overrun is recorded and its children killed. */
  const section = async <T>(name: Section, fn: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> => {
    if (!sections.includes(name) || stopping.signal.aborted) return undefined;
    const budget = plan.budgetSeconds[name];
    const ctl = new AbortController();
    const onStop = () => ctl.abort(stopping.signal.reason);
    stopping.signal.addEventListener('abort', onStop, { once: true });
    const timer = setTimeout(() => ctl.abort(new Error(`over its ${budget} s budget`)), budget * 1000);
    // An aborted section normally unwinds by itself within seconds; if not, it is given up on.
    const givenUp = new Promise<never>((_, reject) =>
      ctl.signal.addEventListener('abort', () => setTimeout(() => reject(ctl.signal.reason as Error), 15_000).unref(), { once: true }),
    );
    const t0 = performance.now();
    loadAtSectionStart[name] = loadavg()[0] ?? Number.NaN;
    log(`\n== ${name} (budget ${budget} s; load average ${loadAtSectionStart[name].toFixed(2)}) ==`);
    try {
      const work = fn(ctl.signal);
      running = work;
      return await Promise.race([work, givenUp]);
    } catch (err) {
      const reason = ctl.signal.aborted ? ctl.signal.reason : err;
      errors[name] = reason instanceof Error ? reason.message : String(reason);
      log(`bench: section ${name} failed: ${errors[name]}`);
      await stopAllChildren().catch(() => {});
      return undefined;
    } finally {
      clearTimeout(timer);
      stopping.signal.removeEventListener('abort', onStop);
      durations[name] = (performance.now() - t0) / 1000;
      log(`bench: ${name} took ${durations[name].toFixed(0)} s`);
    }
  };

  results.ttft = await section('ttft', async (signal) => {
    const r = await measureTtft(plan.ttft, signal, log);
    console.log('');
    for (const l of r.levels) console.log(`${formatLevel(l, plan.ttft)}\n`);
    console.log(formatSummary(r.levels));
    if (r.gatewayProblemLines > 0) console.log(`\ngateway wrote ${r.gatewayProblemLines} warn/error log line(s) while measuring; last lines:\n  ${r.gatewayTail.join('\n  ')}`);
    if (r.relayProblemLines > 0) console.log(`\nrelay wrote ${r.relayProblemLines} stderr line(s); last lines:\n  ${r.relayTail.join('\n  ')}`);
    return r;
  });

  results.cpu = await section('cpu', async (signal) => {
    const { concurrency, rounds, warmupRounds, warmupTurns, paceMs } = plan.cpu;
    const byTokens: CpuResult['byTokens'] = [];
    for (const tokens of plan.cpu.tokens) {
      const opts: BenchOptions = { ...plan.ttft, modes: ['relay', 'gateway'], concurrency: [concurrency], tokens, paceMs, rounds, warmupTurns: warmupTurns[tokens] ?? plan.ttft.warmupTurns, warmup: 0, warmupRounds };
      const r = await measureTtft(opts, signal, log);
      const level = r.levels[0]!;
      console.log(`\n${formatLevel(level, opts)}`);
      const g = usPerToken(level.modes.gateway, 'gateway', tokens);
      const rl = usPerToken(level.modes.relay, 'relay', tokens);
      byTokens.push({ tokens, gatewayUsPerToken: g, relayUsPerToken: rl, ratio: g / rl, failures: r.failures, level });
    }
    return { concurrency, byTokens };
  });

  results.turns = await section('turns', async (signal) => {
    // The same gateway with METRICS_ENABLED=false alongside: what /metrics costs in turns/s (issue 11: <= 3 %).
    const r = await measureTurns({ root: ROOT, ...plan.turns, gateways: [{ name: 'gateway' }, { name: 'no-metrics', env: { METRICS_ENABLED: 'false' } }], stopSignal: signal, log });
    console.log(`\nTurns/s, ${r.clients} clients, reply of ${r.reply.frames} SSE frames (${r.reply.bytes} bytes):`);
    for (const t of Object.values(r.rates)) {
      console.log(
        `  ${t.name.padEnd(10)} ${t.turnsPerSecond.toFixed(0).padStart(6)} turns/s  (${t.turns} turns in ${t.seconds.toFixed(1)} s, ${t.failures} failed; ` +
          `latency p50 ${t.latencyMs.p50.toFixed(1)} ms, p99 ${t.latencyMs.p99.toFixed(1)} ms; server CPU ${t.cpuMsPerTurn.toFixed(2)} ms/turn)`,
      );
    }
    return r;
  });

  results.idle = await section('idle', async (signal) => {
    const r = await measureIdleSockets({ root: ROOT, ...plan.idle, stopSignal: signal, log });
    console.log(
      `\nIdle Socket.IO: ${r.connected}/${r.connections} connected (${r.failed} failed, ${r.openAtReading} open at reading) in ${(r.connectMs / 1000).toFixed(1)} s; ` +
        `gateway RSS ${r.rssBeforeMb.toFixed(1)} -> ${r.rssAfterMb.toFixed(1)} MB (peak ${r.peakMb.toFixed(1)}), ${r.kbPerConnection.toFixed(1)} KB per connection; ` +
        `base RSS compiled ${r.baseRssMb.compiled.toFixed(1)} MB, tsx ${r.baseRssMb.tsx.toFixed(1)} MB`,
    );
    const { before: hb, after: ha } = r.heap;
    const perConn = (a: number, b: number) => (((a - b) * 1024) / Math.max(1, r.connected)).toFixed(1);
    console.log(
      `  inside the gateway (MB, before -> after): JS heap used ${hb.heapUsed} -> ${ha.heapUsed} (${perConn(ha.heapUsed, hb.heapUsed)} KB/conn), ` +
        `heap total ${hb.heapTotal} -> ${ha.heapTotal}, external ${hb.external} -> ${ha.external} (${perConn(ha.external, hb.external)} KB/conn), ` +
        `array buffers ${hb.arrayBuffers} -> ${ha.arrayBuffers}`,
    );
    return r;
  });

  results.eld = await section('eld', async (signal) => {
    const r = await measureEventLoopDelay({ root: ROOT, ...plan.eld, stopSignal: signal, log });
    console.log(
      `\nEvent-loop delay in the gateway, ${r.rounds} round(s) of ${r.streams} Socket.IO streams (${r.tokens} tokens x ${r.paceMs} ms): ` +
        `p50 ${r.loaded.p50} / p99 ${r.loaded.p99} / max ${r.loaded.max} ms, loop busy ${(r.loaded.utilization * 100).toFixed(0)} %; ` +
        `idle p99 ${r.idle.p99} ms; ${r.ok} ok, ${r.failures} failed; client TTFT p50 ${r.ttftMs.p50.toFixed(1)} / p99 ${r.ttftMs.p99.toFixed(1)} ms, ` +
        `total p50 ${r.totalMs.p50.toFixed(0)} / p99 ${r.totalMs.p99.toFixed(0)} ms; gateway CPU ${r.gatewayCpuMsPerStream.toFixed(2)} ms/stream`,
    );
    for (const [e, k] of Object.entries(r.errors).slice(0, 5)) console.log(`  FAILED: ${k} x ${e}`);
    if (r.relay) {
      const l = r.relay.loaded;
      console.log(
        `The bare relay, same streams over SSE: p50 ${l.p50} / p99 ${l.p99} / max ${l.max} ms, loop busy ${(l.utilization * 100).toFixed(0)} %; ` +
          `${r.relay.ok} ok, ${r.relay.failures} failed; relay CPU ${r.relay.cpuMsPerStream.toFixed(2)} ms/stream`,
      );
    }
    return r;
  });

  results.cluster = await section('cluster', async (signal) => {
    const r = await measureCluster({ root: ROOT, ...plan.cluster, stopSignal: signal, log });
    console.log(
      `\nstart:cluster on Redis, ${r.concurrency} clients: 1 process ${r.median.one} turns/s, 2 processes ${r.median.two} turns/s = ${r.speedup}x ` +
        `(best possible from the CPU measured per turn: ${r.ceiling}x; the machine gives two CPU-bound processes ${r.machineSpeedup}x)`,
    );
    return r;
  });

  results.resume = await section('resume', async (signal) => {
    const r = await measureResume({ ...plan.resume, stopSignal: signal, log });
    const t = r.ttftMs;
    console.log(
      `\nResumable streams, TTFT p50/p90 ms over ${r.turns} turns each: off ${t.off.p50}/${t.off.p90}, in-process ${t.memory.p50}/${t.memory.p90}; ` +
        `with Redis: off ${t.redisOff.p50}/${t.redisOff.p90}, Redis Streams ${t.redis.p50}/${t.redis.p90}; cost ${r.costP50Ms.memory} / ${r.costP50Ms.redis} ms`,
    );
    return r;
  });

  results.profile = await section('profile', async (signal) => {
    const r = await profilePerToken({ ...plan.profile, stopSignal: signal, log });
    console.log(`\n${formatProfile(r)}`);
    return r;
  });

  if (stopping.signal.aborted) return;
  clearTimeout(hardTimeout);
  finishReport = undefined;
  report();
  const streamFailures =
    (results.ttft?.failures ?? 0) +
    (results.cpu?.byTokens.reduce((s, t) => s + t.failures, 0) ?? 0) +
    (results.eld?.failures ?? 0) +
    Object.values(results.turns?.rates ?? {}).reduce((s, t) => s + t.failures, 0) +
    (results.idle?.failed ?? 0) +
    (results.cluster?.runs.reduce((sum, run) => sum + run.failures, 0) ?? 0);
  log(`bench: done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (Object.keys(errors).length > 0 || streamFailures > 0) {
    await shutdown(1, `bench: ${Object.keys(errors).length} section(s) failed, ${streamFailures} stream(s)/connection(s) failed`);
  }
  await shutdown(0);
}

process.on('SIGINT', () => void shutdown(130, '\nbench: interrupted'));
process.on('SIGTERM', () => void shutdown(143, '\nbench: terminated'));
process.on('unhandledRejection', (err) => void shutdown(1, `bench: unhandled rejection: ${String(err)}`));

main().catch((err: unknown) => {
  if (!stopping.signal.aborted) void shutdown(1, `bench: ${err instanceof Error ? err.message : String(err)}`);
});
