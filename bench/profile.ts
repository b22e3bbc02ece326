/**
 * Where the gateway's time goes per relayed token, next to the bare relay's: each is profiled
 * through the inspector protocol for exactly the measured rounds (by default 3 rounds of 200
 * concurrent streams of 50 tokens at 20 ms, after a warm-up round), then the profile's self
 * time is grouped by area (package, gateway folder, GC, native) and divided by the tokens relayed.
 *
 *   npx tsx bench/profile.ts [--concurrency 200] [--rounds 3] [--tokens 50] [--pace 20] [--top 15] [--interval 1000]
 *
 * Results: stdout and bench/results/profile.json; the raw profiles are written to
 * bench/results/profiles/{gateway,relay}.cpuprofile (open them in Chrome DevTools or speedscope).
 * `npm run bench -- --profile` runs the same through {@link profilePerToken}.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import WebSocket from 'ws';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { summarise } from './cpuprofile-summary.js';
import { freePort, startGatewayProcess, startRelayProcess, startStandinProcess, runBench, stopAllChildren, type ChildHandle } from './processes.js';
import { runLevel, warmUp, type RunContext } from './runner.js';
import type { Mode } from './sse-client.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/profile.ts [--concurrency 200] [--rounds 3] [--tokens 50] [--pace 20] [--top 15] [--interval 1000]';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROFILES = resolve(ROOT, 'bench/results/profiles');
const log = (line: string) => process.stderr.write(`${line}\n`);

export interface ProfileOptions {
  concurrency: number;
  rounds: number;
  tokens: number;
  paceMs: number;
  /** Functions listed per process. */
  top: number;
  /** The profiler's sampling interval (µs); V8's default is 1000. Finer costs the profiled process more. */
  intervalUs?: number;
  /** Ends the run early: in-flight streams are cut. */
  stopSignal?: AbortSignal;
  log?: (line: string) => void;
}

interface HopProfile {
  byArea: Map<string, number>;
  byFunction: Map<string, number>;
  totalMs: number;
  tokens: number;
}

export interface ProfileResult {
  options: Omit<ProfileOptions, 'stopSignal' | 'log'>;
  /** Self time per relayed token (µs), idle and (program) left out. */
  perTokenUs: { gateway: number; relay: number };
  /** Areas by gateway self time per token, largest first. */
  areas: Array<{ area: string; gateway: number; relay: number }>;
  /** The `top` functions by self time per token (µs) of each process. */
  functions: { gateway: Array<[string, number]>; relay: Array<[string, number]> };
}

/**
 * A V8 profiler session over the inspector protocol of a process started with
 * `--inspect=127.0.0.1:<port>`: profiles exactly the measured window (no start-up, no warm-up).
 */
async function profiler(port: number, intervalUs: number) {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 1 << 30 });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let id = 0;
  const pending = new Map<number, (result: unknown) => void>();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  });
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve) => {
      pending.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: intervalUs });
  return {
    start: () => call('Profiler.start'),
    stop: async () => {
      const { profile } = (await call('Profiler.stop')) as { profile: unknown };
      ws.close();
      return profile;
    },
  };
}

async function profileHop(mode: Exclude<Mode, 'direct'>, standinUrl: string, standinPid: number, opts: ProfileOptions): Promise<HopProfile> {
  const { concurrency: CONCURRENCY, rounds: ROUNDS, tokens: TOKENS, paceMs: PACE } = opts;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-profile-'));
  let child: ChildHandle | undefined;
  try {
    const inspectPort = await freePort();
    const inspect = [`--inspect=127.0.0.1:${inspectPort}`];
    const started = mode === 'gateway' ? await startGatewayProcess(ROOT, standinUrl, dataDir, inspect) : await startRelayProcess(ROOT, standinUrl, inspect);
    child = started.child;
    const ctx: RunContext = {
      modes: [mode],
      standinUrl,
      standinPid,
      ...(mode === 'gateway' ? { gateway: { url: started.url, pid: child.pid } } : { relay: { url: started.url, pid: child.pid } }),
      tokens: TOKENS,
      requestTimeoutMs: 30_000 + 5 * TOKENS * PACE,
      stopSignal: opts.stopSignal ?? new AbortController().signal,
      log,
    };
    log(`profile: ${mode} (pid ${child.pid}) warm-up`);
    await warmUp(ctx, CONCURRENCY, 1);
    log(`profile: ${mode} ${ROUNDS} round(s) x ${CONCURRENCY} streams`);
    const session = await profiler(inspectPort, opts.intervalUs ?? 1000);
    await session.start();
    const level = await runLevel(ctx, CONCURRENCY, ROUNDS);
    const profile = await session.stop();
    writeFileSync(join(PROFILES, `${mode}.cpuprofile`), JSON.stringify(profile));
    const summary = summarise(profile as Parameters<typeof summarise>[0]);
    return { ...summary, tokens: level.modes[mode]!.streams * TOKENS };
  } finally {
    await child?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Profiles the gateway, then the bare relay, each in its own process against one stand-in,
 * and groups their self time per relayed token; writes the raw profiles and
 * bench/results/profile.json. Stops every process it started.
 */
export async function profilePerToken(opts: ProfileOptions): Promise<ProfileResult> {
  mkdirSync(PROFILES, { recursive: true });
  const standin = await startStandinProcess(ROOT, opts.tokens, opts.paceMs);
  try {
    const gateway = await profileHop('gateway', standin.url, standin.child.pid, opts);
    const relay = await profileHop('relay', standin.url, standin.child.pid, opts);
    const perToken = (ms: number, tokens: number) => (ms * 1000) / tokens;
    // Startup and idle time are not per-token costs.
    const skip = new Set(['(idle)', '(program)']);
    const areas = [...new Set([...gateway.byArea.keys(), ...relay.byArea.keys()])].filter((a) => !skip.has(a));
    const rows = areas
      .map((area) => ({ area, gateway: perToken(gateway.byArea.get(area) ?? 0, gateway.tokens), relay: perToken(relay.byArea.get(area) ?? 0, relay.tokens) }))
      .sort((a, b) => b.gateway - a.gateway);
    const total = (x: HopProfile) => perToken([...x.byArea].filter(([a]) => !skip.has(a)).reduce((s, [, ms]) => s + ms, 0), x.tokens);
    const topFunctions = (hop: HopProfile): Array<[string, number]> =>
      [...hop.byFunction]
        .filter(([k]) => !k.startsWith('(idle)'))
        .sort((a, b) => b[1] - a[1])
        .slice(0, opts.top)
        .map(([fn, ms]) => [fn, perToken(ms, hop.tokens)]);
    const { concurrency, rounds, tokens, paceMs, top } = opts;
    const result: ProfileResult = {
      options: { concurrency, rounds, tokens, paceMs, top },
      perTokenUs: { gateway: total(gateway), relay: total(relay) },
      areas: rows,
      functions: { gateway: topFunctions(gateway), relay: topFunctions(relay) },
    };
    writeFileSync(
      resolve(ROOT, 'bench/results/profile.json'),
      `${JSON.stringify({ at: new Date().toISOString(), concurrency, rounds, tokens, paceMs, perTokenUs: result.perTokenUs, areas: rows }, null, 2)}\n`,
    );
    return result;
  } finally {
    await standin.child.stop();
  }
}

/** The report: areas side by side, then each process's top functions. */
export function formatProfile(p: ProfileResult): string {
  const { concurrency, tokens, paceMs } = p.options;
  const lines = [`Self CPU time per relayed token (µs), ${concurrency} concurrent streams of ${tokens} tokens at ${paceMs} ms:`];
  lines.push(`${'area'.padEnd(34)}${'gateway'.padStart(10)}${'relay'.padStart(10)}`);
  for (const r of p.areas.filter((r) => r.gateway >= 0.05 || r.relay >= 0.05)) lines.push(`${r.area.padEnd(34)}${r.gateway.toFixed(2).padStart(10)}${r.relay.toFixed(2).padStart(10)}`);
  const { gateway, relay } = p.perTokenUs;
  lines.push(`${'total'.padEnd(34)}${gateway.toFixed(2).padStart(10)}${relay.toFixed(2).padStart(10)}   ratio ${(gateway / relay).toFixed(2)}x`);
  for (const [name, fns] of [
    ['Gateway', p.functions.gateway],
    ['Relay', p.functions.relay],
  ] as const) {
    lines.push('', `${name} functions by self time per token (µs):`);
    for (const [fn, us] of fns) lines.push(`${us.toFixed(2).padStart(8)}  ${fn}`);
  }
  return lines.join('\n');
}

async function main() {
  const { pace, interval, ...counts } = scriptArgs(USAGE, { concurrency: 200, rounds: 3, tokens: 50, pace: 20, top: 15, interval: 1000 });
  try {
    const result = await profilePerToken({ ...counts, paceMs: pace, intervalUs: interval, log });
    console.log(formatProfile(result));
  } finally {
    await stopAllChildren();
  }
}

// Run as a script, not when imported by bench/run.ts.
if (import.meta.url === pathToFileURL(resolve(process.argv[1] ?? '')).href) {
  runBench(main);
}
