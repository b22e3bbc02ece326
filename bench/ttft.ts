/**
 * `npm run bench:ttft` (and the TTFT section of `npm run bench`): time-to-first-token and total stream time, straight to an OpenAI stand-in
 * ("direct"), through a bare Node SSE relay ("relay") and through the real gateway process
 * ("gateway"), at several concurrency levels. relay - direct is the cost of any extra Node
 * HTTP hop; gateway - relay is the gateway's own work. Everything runs on 127.0.0.1 and stops
 * by itself (see `--help`).
 *
 *   client (this process) ──► stand-in child                 direct
 *   client (this process) ──► relay child ──► stand-in        relay
 *   client (this process) ──► gateway child ──► stand-in      gateway
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { USAGE, WARMUP_BATCH, parseBenchArgs, type BenchOptions } from './args.js';
import {
  readTcpCounters,
  startGatewayProcess,
  startRelayProcess,
  startStandinProcess,
  stopAllChildren,
  type ChildHandle,
} from './processes.js';
import { formatLevel, formatSummary, writeJson } from './report.js';
import { runLevel, warmUp, type LevelResult, type RunContext } from './runner.js';
import { directTarget, gatewayTarget, measureStream, relayTarget } from './sse-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

/** What {@link measureTtft} fills in as it goes, so a caller that gives up (hard timeout) can still show it. */
export interface TtftProgress {
  levels: LevelResult[];
  gateway?: ChildHandle;
  relay?: ChildHandle;
  /** Removed by measureTtft when it ends; a caller that exits before that removes it. */
  dataDir?: string;
}

export interface TtftResult {
  levels: LevelResult[];
  loadAtStart: number;
  /** Failed streams, measured rounds and warm-up together. */
  failures: number;
  warmupFailures: number;
  /** Gateway warn/error log lines while measuring (start-up lines not counted). */
  gatewayProblemLines: number;
  gatewayTail: string[];
  relayProblemLines: number;
  relayTail: string[];
}

/**
 * Runs the measured modes' processes (stand-in, relay, gateway), checks one stream per mode,
 * warms up and measures every concurrency level; stops its processes and removes its data
 * directory however it ends. `stopSignal` cuts the run (in-flight streams end, no new round).
 */
export async function measureTtft(opts: BenchOptions, stopSignal: AbortSignal, log: (line: string) => void, progress: TtftProgress = { levels: [] }): Promise<TtftResult> {
  const loadAtStart = loadavg()[0] ?? 0;
  log(
    `bench: ${cpus().length} CPU(s), load ${loadAtStart.toFixed(2)}; modes ${opts.modes.join(', ')}; ` +
      `levels ${opts.concurrency.join(', ')}; ${opts.tokens} tokens x ${opts.paceMs} ms`,
  );
  if (loadAtStart > cpus().length / 2) log('bench: WARNING: the machine is already busy; other processes will distort the numbers');
  const dataDir = mkdtempSync(join(tmpdir(), 'gateway-bench-'));
  progress.dataDir = dataDir;
  const started: ChildHandle[] = [];
  try {
    const standin = await startStandinProcess(ROOT, opts.tokens, opts.paceMs);
    started.push(standin.child);
    log(`bench: stand-in ${standin.url} (pid ${standin.child.pid})`);
    // Only the processes of the measured modes run: an idle one would still share the cores.
    const rl = opts.modes.includes('relay') ? await startRelayProcess(ROOT, standin.url) : undefined;
    if (rl) {
      started.push(rl.child);
      progress.relay = rl.child;
      log(`bench: relay ${rl.url} (pid ${rl.child.pid})`);
    }
    const profileDir = resolve(ROOT, 'bench/results/profiles');
    if (opts.profile && !opts.modes.includes('gateway')) log('bench: --profile ignored: the gateway mode is not measured');
    const gw = opts.modes.includes('gateway')
      ? await startGatewayProcess(ROOT, standin.url, dataDir, opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])
      : undefined;
    if (gw) {
      started.push(gw.child);
      progress.gateway = gw.child;
    }
    const startupProblemLines = gw?.child.problemLines() ?? 0; // e.g. "JWT_SECRET is not set" at start-up
    if (gw) log(`bench: gateway ${gw.url} (pid ${gw.child.pid}, data ${dataDir})`);
    const gatewayTail = () => (gw ? `\ngateway log tail:\n  ${gw.child.tail().join('\n  ')}` : '');
    const relayTail = () => (rl ? `\nrelay log tail:\n  ${rl.child.tail().join('\n  ')}` : '');

    const ctx: RunContext = {
      modes: opts.modes,
      standinUrl: standin.url,
      standinPid: standin.child.pid,
      ...(rl ? { relay: { url: rl.url, pid: rl.child.pid } } : {}),
      ...(gw ? { gateway: { url: gw.url, pid: gw.child.pid } } : {}),
      tokens: opts.tokens,
      requestTimeoutMs: 30_000 + 5 * opts.tokens * opts.paceMs,
      stopSignal,
      log,
    };

    // One request each way before anything else: a broken set-up should fail loudly, at once.
    // (measureStream checks the count of content events and the terminator.)
    const checks = [
      ...(opts.modes.includes('direct') ? [['direct', directTarget(ctx.standinUrl)] as const] : []),
      ...(rl ? [['relay', relayTarget(rl.url)] as const] : []),
      ...(gw ? [['gateway', gatewayTarget(gw.url)] as const] : []),
    ];
    for (const [mode, target] of checks) {
      const r = await measureStream(mode, target, opts.tokens, ctx.requestTimeoutMs, ctx.stopSignal);
      if (!r.ok) throw new Error(`sanity check failed for ${mode}: ${r.error ?? '?'}${gatewayTail()}${relayTail()}`);
    }

    let warmupFailures = 0;
    if (opts.warmupTurns > 0) {
      const batch = Math.min(WARMUP_BATCH, opts.warmupTurns);
      const rounds = Math.ceil(opts.warmupTurns / batch);
      log(`bench: JIT warm-up, ${rounds * batch} turns per mode, ${batch} at a time`);
      warmupFailures += await warmUp(ctx, batch, rounds);
    }
    if (opts.warmup > 0) {
      log(`bench: warm-up, ${opts.warmup} sequential request(s) per mode`);
      warmupFailures += await warmUp(ctx, 1, opts.warmup);
    }
    for (const concurrency of opts.concurrency) {
      const rounds = concurrency === 1 ? opts.requests : opts.rounds;
      const tcpBefore = readTcpCounters();
      if (concurrency > 1 && opts.warmupRounds > 0) {
        log(`bench: c=${concurrency} warm-up, ${opts.warmupRounds} round(s) per mode`);
        warmupFailures += await warmUp(ctx, concurrency, opts.warmupRounds);
      }
      log(`bench: c=${concurrency}, ${rounds} measured round(s) per mode`);
      progress.levels.push(await runLevel(ctx, concurrency, rounds, tcpBefore));
    }
    stopSignal.throwIfAborted();
    const levels = progress.levels;
    const failures = levels.reduce((n, l) => n + Object.values(l.modes).reduce((k, m) => k + m.failures, 0), 0) + warmupFailures;
    return {
      levels,
      loadAtStart,
      failures,
      warmupFailures,
      gatewayProblemLines: (gw?.child.problemLines() ?? 0) - startupProblemLines,
      gatewayTail: gw?.child.tail() ?? [],
      relayProblemLines: rl?.child.problemLines() ?? 0,
      relayTail: rl?.child.tail() ?? [],
    };
  } finally {
    await Promise.all(started.map((c) => c.stop()));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Aborted when the run must stop (timeout, signal, error): in-flight streams and the level loop end. */
const stopping = new AbortController();
let shuttingDown: Promise<never> | undefined;

const cliProgress: TtftProgress = { levels: [] };

/** Stops the children, removes the data directory, exits. The first call decides the exit code. */
function shutdown(code: number, reason?: string): Promise<never> {
  shuttingDown ??= (async () => {
    stopping.abort();
    if (reason) log(reason);
    await stopAllChildren().catch(() => {});
    if (cliProgress.dataDir) rmSync(cliProgress.dataDir, { recursive: true, force: true });
    process.exit(code);
  })();
  return shuttingDown;
}

function parseOptions(): BenchOptions {
  try {
    const opts = parseBenchArgs(process.argv.slice(2));
    if (!opts) {
      console.log(USAGE);
      process.exit(0);
    }
    return opts;
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(64);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const progress = cliProgress;

  const hardTimeout = setTimeout(() => {
    for (const l of progress.levels) console.log(`\n${formatLevel(l, opts)}`);
    const { gateway, relay } = progress;
    const tail =
      (gateway ? `\ngateway log tail:\n  ${gateway.tail().join('\n  ')}` : '') +
      (relay && relay.problemLines() > 0 ? `\nrelay log tail:\n  ${relay.tail().join('\n  ')}` : '');
    void shutdown(2, `\nbench: hard timeout of ${opts.timeoutSeconds} s reached; partial results above${tail}`);
  }, opts.timeoutSeconds * 1000);
  hardTimeout.unref();

  const result = await measureTtft(opts, stopping.signal, log, progress);
  const { levels, failures, warmupFailures } = result;
  console.log('');
  for (const l of levels) console.log(`${formatLevel(l, opts)}\n`);
  console.log(formatSummary(levels));
  console.log(
    '\nNote: client, stand-in, relay and gateway share this machine\'s ' +
      `${cpus().length} core(s); client-side and stand-in delays inflate every mode.`,
  );
  if (opts.modes.includes('gateway') && result.gatewayProblemLines > 0) {
    console.log(`\ngateway wrote ${result.gatewayProblemLines} warn/error log line(s) while measuring; last lines:\n  ${result.gatewayTail.join('\n  ')}`);
  }
  if (result.relayProblemLines > 0) {
    console.log(`\nrelay wrote ${result.relayProblemLines} stderr line(s); last lines:\n  ${result.relayTail.join('\n  ')}`);
  }

  const out = resolve(ROOT, opts.out);
  writeJson(
    out,
    {
      startedAt,
      loadAverageAtStart: result.loadAtStart,
      durationMs: performance.now() - started,
      options: opts,
      failures,
      warmupFailures,
      gatewayProblemLogLines: result.gatewayProblemLines,
      gatewayLogTail: result.gatewayTail,
      relayProblemLogLines: result.relayProblemLines,
    },
    levels,
  );
  console.log(`\nResults written to ${out}`);
  if (opts.profile && opts.modes.includes('gateway')) console.log(`Gateway CPU profile: ${resolve(ROOT, 'bench/results/profiles')}/ (written when the gateway exits)`);
  if (failures > 0) {
    await shutdown(1, `bench: ${failures} stream(s) failed (including ${warmupFailures} during warm-up)`);
  }
  log(`bench: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await shutdown(0);
}

// Run as a script (`npm run bench:ttft`), not when imported by bench/run.ts.
if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  process.on('SIGINT', () => void shutdown(130, '\nbench: interrupted'));
  process.on('SIGTERM', () => void shutdown(143, '\nbench: terminated'));
  process.on('unhandledRejection', (err) => void shutdown(1, `bench: unhandled rejection: ${String(err)}`));

  main().catch((err: unknown) => {
    // Once the run is stopping, errors are the in-flight work being cut: the first reason stands.
    if (!stopping.signal.aborted) void shutdown(1, `bench: ${err instanceof Error ? err.message : String(err)}`);
  });
}
