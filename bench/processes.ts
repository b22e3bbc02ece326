/**
 * Child processes of the benchmark (the stand-in, the bare relay and the real gateway entry), their
 * clean-up, and cheap CPU / memory readings from /proc.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { createInterface } from 'node:readline';

export interface ChildHandle {
  readonly name: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  readonly exited: Promise<string>;
  readonly hasExited: () => boolean;
  /** The last lines the child wrote (stdout and stderr). */
  readonly tail: () => string[];
  /** Lines that look like pino warn/error records (level >= 40) or anything on stderr. */
  readonly problemLines: () => number;
  /** Calls `fn` for every further stdout line. */
  onStdoutLine(fn: (line: string) => void): void;
  /** SIGTERM, then SIGKILL after `graceMs`. Safe to call more than once. */
  stop(graceMs?: number): Promise<void>;
}

const TAIL_LINES = 30;
const live = new Set<ChildHandle>();

// Last resort: whatever path the parent takes out (even process.exit), children die with it.
process.on('exit', () => {
  for (const child of live) if (!child.hasExited()) child.process.kill('SIGKILL');
});

/**
 * Spawns `node --import tsx <script> ...args` in `cwd` (plain `node <script>` for compiled
 * JavaScript), capturing its output line by line. `raiseFdLimit`: the child starts through
 * `bash -c 'ulimit -n <hard limit>; exec node ...'` (same pid once exec'd), for thousands of sockets.
 */
function spawnNode(name: string, cwd: string, script: string, args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[] = [], raiseFdLimit = false): ChildHandle {
  const loader = script.endsWith('.js') ? [] : ['--import', 'tsx'];
  const argv = [...nodeArgs, ...loader, script, ...args];
  const proc = raiseFdLimit
    ? spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'bash', process.execPath, ...argv], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, argv, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error(`could not spawn ${name}`);
  const lines: string[] = [];
  let problems = 0;
  let exitedFlag = false;
  const stdoutListeners: Array<(line: string) => void> = [];
  const remember = (line: string, stderr: boolean) => {
    lines.push(stderr ? `[stderr] ${line}` : line);
    if (lines.length > TAIL_LINES) lines.shift();
    if (stderr || /"level":(4|5|6)\d\b/.test(line)) problems++;
  };
  createInterface({ input: proc.stdout }).on('line', (l) => {
    remember(l, false);
    for (const fn of stdoutListeners) fn(l);
  });
  createInterface({ input: proc.stderr }).on('line', (l) => remember(l, true));
  proc.stdin.on('error', () => {}); // EPIPE once the child is gone

  const exited = new Promise<string>((resolve) => {
    proc.once('exit', (code, signal) => {
      exitedFlag = true;
      live.delete(handle);
      resolve(signal ?? String(code));
    });
  });
  let stopping: Promise<void> | undefined;
  const handle: ChildHandle = {
    name,
    pid: proc.pid,
    process: proc,
    exited,
    hasExited: () => exitedFlag,
    tail: () => [...lines],
    problemLines: () => problems,
    onStdoutLine: (fn) => void stdoutListeners.push(fn),
    stop: (graceMs = 3000) =>
      (stopping ??= (async () => {
        if (exitedFlag) return;
        proc.kill('SIGTERM');
        proc.stdin.end();
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })()),
  };
  live.add(handle);
  return handle;
}

/** Stops every child still running (used on errors, timeouts and SIGINT). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function diedEarly(child: ChildHandle): Promise<never> {
  return child.exited.then((code) => {
    throw new Error(`${child.name} exited early (${code}):\n  ${child.tail().join('\n  ')}`);
  });
}

/** The Node flags (`--…`, not `--import`) and the entry file of one of package.json's scripts. */
function scriptOf(name: string): { flags: string[]; entry: string } {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string | undefined> };
  const script = pkg.scripts[name];
  if (script === undefined) throw new Error(`package.json has no ${name} script`);
  const words = script.split(/\s+/);
  const entry = words.find((w) => w.endsWith('.js') || w.endsWith('.ts'));
  if (!entry) throw new Error(`package.json's ${name} script names no entry file`);
  return { flags: words.filter((a) => a.startsWith('--') && !a.startsWith('--import')), entry };
}

/** Read from package.json's start script, so the benchmark runs the gateway as users do: its flags and its (compiled) entry. */
const START = scriptOf('start');
/** The V8 flags of `npm start`; the relay and bare-Hono baselines run with them too. */
export const GATEWAY_NODE_FLAGS = START.flags;
/** The V8 flags of `npm run start:cluster`, for the cluster bench. */
export const CLUSTER_NODE_FLAGS = scriptOf('start:cluster').flags;

let built = false;
/** Compiles src/ into dist/ once per bench run (what `npm start` does first), so the measured gateway is the current code. */
export function buildGateway(root: string): void {
  if (built || !START.entry.endsWith('.js')) return;
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  built = true;
}

/** Resolves with the `url` of the first stdout line shaped like `{"url":"..."}`. */
function printedUrl(child: ChildHandle, what: string): Promise<string> {
  const url = new Promise<string>((resolve) => {
    child.onStdoutLine((line) => {
      try {
        const parsed = JSON.parse(line) as { url?: unknown };
        if (typeof parsed.url === 'string') resolve(parsed.url);
      } catch {
        /* not the URL line */
      }
    });
  });
  return withTimeout(Promise.race([url, diedEarly(child)]), 30_000, `${what} start-up`);
}

/** Starts any bench script that prints `{"url": ...}` when ready (e.g. bench/realtime-echo.ts). */
export async function startUrlProcess(root: string, name: string, script: string, args: string[] = []): Promise<{ child: ChildHandle; url: string }> {
  const child = spawnNode(name, root, script, args, minimalEnv({}));
  return { child, url: await printedUrl(child, name) };
}

/** Starts a bench script that needs no readiness line (its caller reads its stdout with `onStdoutLine`). */
export function startScriptProcess(root: string, name: string, script: string, args: string[] = [], options: { raiseFdLimit?: boolean } = {}): ChildHandle {
  return spawnNode(name, root, script, args, minimalEnv({}), [], options.raiseFdLimit);
}

/** Starts the OpenAI stand-in child and waits for the URL it prints. */
export async function startStandinProcess(root: string, tokens: number, paceMs: number): Promise<{ child: ChildHandle; url: string }> {
  const child = spawnNode('stand-in', root, 'bench/standin-process.ts', [String(tokens), String(paceMs)], minimalEnv({}));
  return { child, url: await printedUrl(child, 'stand-in') };
}

/**
 * Starts the bare SSE relay (bench/relay-process.ts) in front of the stand-in, with the same
 * V8 flags as the gateway, and waits for the URL it prints.
 */
export async function startRelayProcess(root: string, standinUrl: string, nodeArgs: string[] = []): Promise<{ child: ChildHandle; url: string }> {
  const child = spawnNode('relay', root, 'bench/relay-process.ts', [standinUrl], minimalEnv({}), [...GATEWAY_NODE_FLAGS, ...nodeArgs]);
  return { child, url: await printedUrl(child, 'relay') };
}

/**
 * Starts a bare Hono `streamSSE` endpoint (bench/bare-hono-process.ts) that replays the SSE
 * frames stored in `framesFile`, with the same V8 flags as the gateway.
 */
export async function startBareHonoProcess(root: string, framesFile: string): Promise<{ child: ChildHandle; url: string }> {
  const child = spawnNode('bare-hono', root, 'bench/bare-hono-process.ts', [framesFile], minimalEnv({}), GATEWAY_NODE_FLAGS);
  return { child, url: await printedUrl(child, 'bare-hono') };
}

/** An unused loopback port (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

/** Resolves once something accepts connections on loopback `port`; rejects after `ms`. */
export async function waitForPort(port: number, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listened on port ${port} within ${ms} ms`);
}

/** A throwaway Debian redis-server on a free loopback port (no persistence), killed with the bench. */
export async function startRedisProcess(): Promise<{ port: number; pid: number; stop(): void }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const stop = () => void child.kill('SIGKILL');
  process.once('exit', stop);
  // A missing binary is an 'error' event on the child: a clear failure of this section, not a crash of the bench.
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(err.code === 'ENOENT' ? 'redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)' : `redis-server: ${err.message}`)),
    );
    child.once('exit', (code, signal) => reject(new Error(`redis-server exited at start (${signal ?? `code ${String(code)}`})`)));
  });
  failed.catch(() => {});
  try {
    await Promise.race([waitForPort(port, 10_000), failed]);
  } catch (err) {
    stop();
    throw err;
  }
  return { port, pid: child.pid!, stop };
}

export interface GatewayProcessOptions {
  /** Another entry than package.json's (e.g. `src/node/main.ts`, run under tsx). */
  entry?: string;
  /** Start through bash with the open-file limit raised to the hard limit (many sockets). */
  raiseFdLimit?: boolean;
}

/**
 * Starts the real gateway entry (the compiled `dist/node/main.js`, as `npm start` does) and polls /healthz until it answers 200.
 * `standinUrl`: the OpenAI-compatible upstream (`gpt-4o-mini` is then the default model); `undefined`
 * runs the embedded defaults (no provider, no key: the `local` model). `nodeArgs` go before the script (e.g. `--cpu-prof`).
 */
export async function startGatewayProcess(
  root: string,
  standinUrl: string | undefined,
  dataDir: string,
  nodeArgs: string[] = [],
  extraEnv: Record<string, string> = {},
  options: GatewayProcessOptions = {},
): Promise<{ child: ChildHandle; url: string }> {
  const entry = options.entry ?? START.entry;
  if (entry === START.entry) buildGateway(root);
  const port = await freePort();
  const upstream: Record<string, string> = standinUrl === undefined ? {} : { OPENAI_BASE_URL: standinUrl, OPENAI_API_KEY: 'bench', DEFAULT_MODEL: 'gpt-4o-mini' };
  const child = spawnNode(
    'gateway',
    root,
    entry,
    [],
    minimalEnv({
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ...upstream,
      RATE_LIMIT_ANON: '1000000',
      RATE_LIMIT_USER: '1000000',
      // Every bench client connects from 127.0.0.1 (10,000 idle Socket.IO connections, 1,000 streams).
      SOCKET_MAX_CONNECTIONS_PER_IP: '0',
      SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: '0',
      PROVIDER_MAX_RETRIES: '0',
      SHUTDOWN_GRACE_MS: '1000',
      ...extraEnv,
      ...experimentEnv(),
    }),
    // The same V8 flags as `npm start`; BENCH_GATEWAY_NODE_ARGS adds some (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`).
    [...GATEWAY_NODE_FLAGS, ...nodeArgs, ...experimentNodeArgs()],
    options.raiseFdLimit,
  );
  const url = `http://127.0.0.1:${port}`;
  const healthy = (async () => {
    for (;;) {
      try {
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        /* not listening yet */
      }
      if (child.hasExited()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await withTimeout(Promise.race([healthy, diedEarly(child)]), 30_000, 'gateway start-up');
  return { child, url };
}

/** `K=V,K2=V2` as a record; `K=` unsets K (undefined); an entry without `=` or a name is left out. */
export function parseEnvList(raw: string | undefined): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const pair of (raw ?? '').split(',')) {
    const at = pair.indexOf('=');
    if (at > 0) env[pair.slice(0, at).trim()] = pair.slice(at + 1) || undefined;
  }
  return env;
}

/** `BENCH_GATEWAY_ENV=K=V,K2=V2`: settings for every gateway a bench starts (to compare one against the defaults). */
export function experimentEnv(): Record<string, string | undefined> {
  return parseEnvList(process.env.BENCH_GATEWAY_ENV);
}

/** `BENCH_GATEWAY_NODE_ARGS="--cpu-prof ..."`: Node flags for every gateway process a bench starts. */
export function experimentNodeArgs(): string[] {
  return process.env.BENCH_GATEWAY_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
}

/**
 * A small, explicit environment so that variables of the caller's shell (API keys, store
 * URLs...) cannot change what is measured.
 */
function minimalEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) {
    const v = process.env[key];
    if (v !== undefined) env[key] = v;
  }
  return { ...env, ...extra };
}

export interface ProcStats {
  /** User + system CPU time since the process started. */
  cpuMs: number;
  rssMb: number;
  /** Peak resident set size. */
  hwmMb: number;
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU and memory of a process from /proc (Linux only; `undefined` elsewhere or once it is gone). */
export function readProcStats(pid: number): ProcStats | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is [0], utime [11], stime [12] (fields 14 and 15 of proc(5)).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { cpuMs: (ticks * 1000) / ticksPerSecond(), rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** The soft limit on open files of a process (Linux; `undefined` elsewhere). */
export function openFileLimit(pid: number): number | undefined {
  try {
    const soft = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
    return soft === undefined ? undefined : soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return undefined;
  }
}

/** Machine-wide TCP counters that explain refused / reset connections under a connection storm. */
export interface TcpCounters {
  /** Connections dropped because a listener's accept queue was full (its backlog). */
  listenOverflows: number;
  /** SYN cookies sent because a SYN queue was full. */
  syncookiesSent: number;
  /** ACKs with an invalid SYN cookie: the client gets a reset (ECONNRESET). */
  syncookiesFailed: number;
}

/** From /proc/net/netstat (Linux; `undefined` elsewhere). Counts every process on the machine, not only ours. */
export function readTcpCounters(): TcpCounters | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const names = lines.find((l) => l.startsWith('TcpExt:'))?.split(/\s+/) ?? [];
    const values = lines.filter((l) => l.startsWith('TcpExt:'))[1]?.split(/\s+/) ?? [];
    const get = (key: string) => Number(values[names.indexOf(key)] ?? NaN);
    return { listenOverflows: get('ListenOverflows'), syncookiesSent: get('SyncookiesSent'), syncookiesFailed: get('SyncookiesFailed') };
  } catch {
    return undefined;
  }
}

/** Runs a bench script's main: exit 0 when it resolves; on an error print it, stop every child, exit 1. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    async (err: unknown) => {
      console.error(err);
      await stopAllChildren();
      process.exit(1);
    },
  );
}
