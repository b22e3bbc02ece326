/**
 * `npm run bench`: time-to-first-token and total stream time, straight to an OpenAI stand-in
 * ("direct") versus through the real gateway process ("gateway"), at several concurrency
 * levels. Everything runs on 127.0.0.1 and stops by itself (see `--help`).
 *
 *   client (this process) ──► stand-in child                 direct
 *   client (this process) ──► gateway child ──► stand-in      gateway
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { USAGE, parseBenchArgs, type BenchOptions } from './args.js';
import { readTcpCounters, startGatewayProcess, startStandinProcess, stopAllChildren, type ChildHandle } from './processes.js';
import { formatLevel, formatSummary, writeJson } from './report.js';
import { runLevel, warmUp, type LevelResult, type RunContext } from './runner.js';
import { directTarget, gatewayTarget, measureStream } from './sse-client.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

let dataDir: string | undefined;
let gateway: ChildHandle | undefined;
/** Aborted when the run must stop (timeout, signal, error): in-flight streams and the level loop end. */
const stopping = new AbortController();
let shuttingDown: Promise<never> | undefined;

/** Stops the children, removes the data directory, exits. The first call decides the exit code. */
function shutdown(code: number, reason?: string): Promise<never> {
  shuttingDown ??= (async () => {
    stopping.abort();
    if (reason) log(reason);
    await stopAllChildren().catch(() => {});
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
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
  const levels: LevelResult[] = [];

  const hardTimeout = setTimeout(() => {
    for (const l of levels) console.log(`\n${formatLevel(l, opts)}`);
    const tail = gateway ? `\ngateway log tail:\n  ${gateway.tail().join('\n  ')}` : '';
    void shutdown(2, `\nbench: hard timeout of ${opts.timeoutSeconds} s reached; partial results above${tail}`);
  }, opts.timeoutSeconds * 1000);
  hardTimeout.unref();

  const loadAtStart = loadavg()[0] ?? 0;
  log(`bench: ${cpus().length} CPU(s), load ${loadAtStart.toFixed(2)}; levels ${opts.concurrency.join(', ')}; ${opts.tokens} tokens x ${opts.paceMs} ms`);
  if (loadAtStart > cpus().length / 2) log('bench: WARNING: the machine is already busy; other processes will distort the numbers');
  dataDir = mkdtempSync(join(tmpdir(), 'gateway-bench-'));
  const standin = await startStandinProcess(ROOT, opts.tokens, opts.paceMs);
  log(`bench: stand-in ${standin.url} (pid ${standin.child.pid})`);
  const profileDir = resolve(ROOT, 'bench/results/profiles');
  const gw = await startGatewayProcess(ROOT, standin.url, dataDir, opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []);
  gateway = gw.child;
  const startupProblemLines = gw.child.problemLines(); // e.g. "JWT_SECRET is not set" at start-up
  log(`bench: gateway ${gw.url} (pid ${gw.child.pid}, data ${dataDir})`);

  const ctx: RunContext = {
    standinUrl: standin.url,
    gatewayUrl: gw.url,
    gatewayPid: gw.child.pid,
    standinPid: standin.child.pid,
    tokens: opts.tokens,
    requestTimeoutMs: 30_000 + 5 * opts.tokens * opts.paceMs,
    stopSignal: stopping.signal,
    log,
  };

  // One request each way before anything else: a broken set-up should fail loudly, at once.
  for (const [mode, target] of [
    ['direct', directTarget(ctx.standinUrl)],
    ['gateway', gatewayTarget(ctx.gatewayUrl)],
  ] as const) {
    const r = await measureStream(mode, target, opts.tokens, ctx.requestTimeoutMs, ctx.stopSignal);
    if (!r.ok) throw new Error(`sanity check failed for ${mode}: ${r.error ?? '?'}\ngateway log tail:\n  ${gw.child.tail().join('\n  ')}`);
  }

  let warmupFailures = 0;
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
    levels.push(await runLevel(ctx, concurrency, rounds, tcpBefore));
  }

  if (stopping.signal.aborted) return;
  const failures = levels.reduce((n, l) => n + l.direct.failures + l.gateway.failures, 0) + warmupFailures;
  console.log('');
  for (const l of levels) console.log(`${formatLevel(l, opts)}\n`);
  console.log(formatSummary(levels));
  console.log(
    '\nNote: client, stand-in and gateway share this machine\'s ' +
      `${cpus().length} core(s); client-side and stand-in delays inflate both modes.`,
  );
  const problemLines = gw.child.problemLines() - startupProblemLines;
  if (problemLines > 0) {
    console.log(`\ngateway wrote ${problemLines} warn/error log line(s) while measuring; last lines:\n  ${gw.child.tail().join('\n  ')}`);
  }

  const out = resolve(ROOT, opts.out);
  writeJson(
    out,
    {
      startedAt,
      loadAverageAtStart: loadAtStart,
      durationMs: performance.now() - started,
      options: opts,
      failures,
      warmupFailures,
      gatewayProblemLogLines: problemLines,
      gatewayLogTail: gw.child.tail(),
    },
    levels,
  );
  console.log(`\nResults written to ${out}`);
  if (opts.profile) console.log(`Gateway CPU profile: ${profileDir}/ (written when the gateway exits)`);
  if (failures > 0) {
    await shutdown(1, `bench: ${failures} stream(s) failed (including ${warmupFailures} during warm-up)`);
  }
  log(`bench: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await shutdown(0);
}

process.on('SIGINT', () => void shutdown(130, '\nbench: interrupted'));
process.on('SIGTERM', () => void shutdown(143, '\nbench: terminated'));
process.on('unhandledRejection', (err) => void shutdown(1, `bench: unhandled rejection: ${String(err)}`));

main().catch((err: unknown) => {
  // Once the run is stopping, errors are the in-flight work being cut: the first reason stands.
  if (!stopping.signal.aborted) void shutdown(1, `bench: ${err instanceof Error ? err.message : String(err)}`);
});
