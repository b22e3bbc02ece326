/**
 * Turns per second: `clients` concurrent clients each send `POST /api/v2/ai/chat/stream`
 * turns back to back for a fixed time, reading every reply to its end. The gateway runs its
 * embedded defaults (the `local` model with no pause per token, SQLite in a temp DATA_DIR, no
 * keys); the baseline is a bare Hono `streamSSE` endpoint (bench/bare-hono-process.ts)
 * replaying the very same SSE bytes the gateway sent for the same prompt. Targets alternate
 * round by round, their order rotating, so machine noise hits all of them alike.
 *
 * {@link measureTurnRates} takes any list of targets, so a variant of the gateway (e.g. with
 * metrics on and off) is one more entry of {@link TurnsOptions.gateways}.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readProcStats, startBareHonoProcess, startGatewayProcess, type ChildHandle } from './processes.js';
import { summarize, type Summary } from './stats.js';

export interface TurnTarget {
  name: string;
  /** Full URL of the SSE route. */
  url: string;
  body: string;
  /** The server process, for its CPU per turn. */
  pid?: number;
}

export interface TurnRate {
  name: string;
  /** Completed turns (a 200 reply read to its `done` frame). */
  turns: number;
  failures: number;
  errors: Record<string, number>;
  seconds: number;
  turnsPerSecond: number;
  /** Server CPU per completed turn (NaN without a pid). */
  cpuMsPerTurn: number;
  /** Request sent -> reply read to its end. */
  latencyMs: Summary;
}

export interface TurnRateOptions {
  clients: number;
  /** How long the clients start new turns, per round and target. */
  roundMs: number;
  rounds: number;
  stopSignal: AbortSignal;
  log(line: string): void;
}

const DONE = '"done":true';

/** One turn; resolves with its latency, or throws with a short reason. */
async function turn(target: TurnTarget, signal: AbortSignal): Promise<number> {
  const started = performance.now();
  const res = await fetch(target.url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: target.body,
    signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  if (!text.includes(DONE)) throw new Error('reply without its done frame');
  return performance.now() - started;
}

/** `clients` loops of back-to-back turns for `ms`; every turn started is waited for and counted. */
async function runRound(target: TurnTarget, clients: number, ms: number, signal: AbortSignal) {
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const cpuBefore = target.pid === undefined ? undefined : readProcStats(target.pid)?.cpuMs;
  const started = performance.now();
  const deadline = started + ms;
  const loop = async () => {
    while (performance.now() < deadline && !signal.aborted) {
      try {
        latencies.push(await turn(target, signal));
      } catch (err) {
        if (signal.aborted) return;
        const reason = err instanceof Error ? err.message : String(err);
        errors[reason] = (errors[reason] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  signal.throwIfAborted();
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = target.pid === undefined ? undefined : readProcStats(target.pid)?.cpuMs;
  return { latencies, errors, seconds, cpuMs: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : Number.NaN };
}

/** Measures every target, `rounds` times each, in rotated order; a warm-up round of `roundMs / 2` each first. */
export async function measureTurnRates(targets: readonly TurnTarget[], opts: TurnRateOptions): Promise<Record<string, TurnRate>> {
  for (const t of targets) await runRound(t, opts.clients, opts.roundMs / 2, opts.stopSignal);
  const acc = new Map(targets.map((t) => [t.name, { latencies: [] as number[], errors: {} as Record<string, number>, seconds: 0, cpuMs: 0 }]));
  for (let i = 0; i < opts.rounds; i++) {
    for (let k = 0; k < targets.length; k++) {
      const target = targets[(i + k) % targets.length]!;
      const r = await runRound(target, opts.clients, opts.roundMs, opts.stopSignal);
      const a = acc.get(target.name)!;
      a.latencies.push(...r.latencies);
      for (const [e, n] of Object.entries(r.errors)) a.errors[e] = (a.errors[e] ?? 0) + n;
      a.seconds += r.seconds;
      a.cpuMs += r.cpuMs;
      opts.log(`  turns round ${i + 1}/${opts.rounds} ${target.name.padEnd(10)} ${(r.latencies.length / r.seconds).toFixed(0)} turns/s`);
    }
  }
  const out: Record<string, TurnRate> = {};
  for (const [name, a] of acc) {
    const failures = Object.values(a.errors).reduce((s, n) => s + n, 0);
    out[name] = {
      name,
      turns: a.latencies.length,
      failures,
      errors: a.errors,
      seconds: a.seconds,
      turnsPerSecond: a.latencies.length / a.seconds,
      cpuMsPerTurn: a.cpuMs / a.latencies.length,
      latencyMs: summarize(a.latencies),
    };
  }
  return out;
}

export interface TurnsOptions extends TurnRateOptions {
  root: string;
  /** Gateways to measure, each with extra environment (default: one, named "gateway", as configured by default). */
  gateways?: ReadonlyArray<{ name: string; env?: Record<string, string> }>;
}

export interface TurnsResult {
  /** Per target: each gateway variant and "bare-hono". */
  rates: Record<string, TurnRate>;
  /** The recorded reply the bare endpoint replays. */
  reply: { frames: number; bytes: number };
  clients: number;
  roundMs: number;
  rounds: number;
}

/** SSE text cut into complete frames, each with its blank line. */
export function splitFrames(text: string): string[] {
  return text.split(/(?<=\n\n)/).filter((f) => f.length > 0);
}

/** Starts the gateway(s) on embedded defaults and the bare Hono endpoint, measures, stops them all. */
export async function measureTurns(opts: TurnsOptions): Promise<TurnsResult> {
  const gateways = opts.gateways ?? [{ name: 'gateway' }];
  const tmp = mkdtempSync(join(tmpdir(), 'bench-turns-'));
  const children: ChildHandle[] = [];
  const body = JSON.stringify({ message: 'bench' });
  try {
    const targets: TurnTarget[] = [];
    for (const [i, g] of gateways.entries()) {
      // No OPENAI_* and no DEFAULT_MODEL: the local model answers; no pause between its tokens.
      const gw = await startGatewayProcess(opts.root, undefined, join(tmp, `data-${i}`), [], { LOCAL_MODEL_TOKEN_DELAY_MS: '0', ...g.env });
      children.push(gw.child);
      targets.push({ name: g.name, url: `${gw.url}/api/v2/ai/chat/stream`, body, pid: gw.child.pid });
    }
    // One reply of the (first) gateway, recorded and replayed byte for byte by the bare endpoint.
    const first = targets[0]!;
    const recorded = await fetch(first.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, signal: opts.stopSignal }).then((r) => r.text());
    if (!recorded.includes(DONE)) throw new Error(`the gateway's reply has no done frame: ${recorded.slice(0, 200)}`);
    const frames = splitFrames(recorded);
    const framesFile = join(tmp, 'frames.json');
    writeFileSync(framesFile, JSON.stringify(frames));
    const bare = await startBareHonoProcess(opts.root, framesFile);
    children.push(bare.child);
    const bareTarget: TurnTarget = { name: 'bare-hono', url: `${bare.url}/api/v2/ai/chat/stream`, body, pid: bare.child.pid };
    const replayed = await fetch(bareTarget.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, signal: opts.stopSignal }).then((r) => r.text());
    if (replayed !== recorded) throw new Error('the bare Hono endpoint does not send the recorded bytes');
    opts.log(`turns: ${gateways.map((g) => g.name).join(', ')} vs bare-hono; reply of ${frames.length} frames, ${Buffer.byteLength(recorded)} bytes; ${opts.clients} clients`);
    const rates = await measureTurnRates([...targets, bareTarget], opts);
    return { rates, reply: { frames: frames.length, bytes: Buffer.byteLength(recorded) }, clients: opts.clients, roundMs: opts.roundMs, rounds: opts.rounds };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(tmp, { recursive: true, force: true });
  }
}
