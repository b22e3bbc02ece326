/**
 * A real gateway process: `src/node/main.ts` (the entry `npm start` runs, through tsx) as a
 * child of the test process, on an ephemeral loopback port. What it prints is kept (its last
 * lines) for failure messages, and it is killed if the test process exits first.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env } from '../../src/config.js';
import type { ConversationStore } from '../../src/stores/conversation-store.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { tempDataDir } from './gateway.js';
import { waitFor } from './wait.js';

export interface GatewayProcess {
  url: string;
  port: number;
  dataDir: string;
  pid: number;
  /**
   * The conversations in its DATA_DIR's SQLite file, opened in the test process on first use
   * (WAL lets another process read what the gateway writes).
   */
  readonly store: ConversationStore;
  /** Whether the process is still running. */
  alive(): boolean;
  /** How it ended (undefined while it runs): its exit code, or the signal that killed it. */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Throws, with how it ended and what it printed, when the process is no longer running. */
  assertAlive(): void;
  /** What it printed lately (stdout and stderr, interleaved). */
  output(): string;
  /** SIGTERM (a graceful shutdown), then waits for it to exit; SIGKILL if it takes too long. */
  close(): Promise<void>;
  /** Closes and removes the data directory. */
  destroy(): Promise<void>;
}

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = 'src/node/main.ts';
const OUTPUT_LINES = 200;
const START_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 15_000;

/**
 * Starts `src/node/main.ts` with only `env` (plus PATH and test defaults), not this process's
 * environment (`nodeArgs`: more Node flags, e.g. a preload), so a developer's variables never leak in; `.env` in the repository would still
 * be read, as `npm start` reads it. Resolves once `/healthz` answers.
 */
export async function spawnGateway(env: Env = {}, options: { nodeArgs?: string[] } = {}): Promise<GatewayProcess> {
  const dataDir = env.DATA_DIR ?? tempDataDir();
  const child = spawn(process.execPath, ['--import', 'tsx', ...(options.nodeArgs ?? []), ENTRY], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'info',
      SHUTDOWN_GRACE_MS: '2000',
      ...env,
      // Port 0 and the `listening` log line: no window in which another process takes the port.
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_PRETTY: 'false',
      DATA_DIR: dataDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit').then(() => process.removeListener('exit', killOnExit));

  const lines: string[] = [];
  let listeningPort: number | undefined;
  const keep = (stream: 'out' | 'err') => {
    let partial = '';
    return (chunk: Buffer) => {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        if (listeningPort === undefined && stream === 'out') listeningPort = portOf(line);
        lines.push(stream === 'err' ? `[stderr] ${line}` : line);
        if (lines.length > OUTPUT_LINES) lines.shift();
      }
    };
  };
  child.stdout!.on('data', keep('out'));
  child.stderr!.on('data', keep('err'));

  const output = () => lines.join('\n');
  const ended = () => child.exitCode !== null || child.signalCode !== null;
  const failure = (what: string) => new Error(`gateway process ${child.pid} ${what} (exit code ${child.exitCode}, signal ${child.signalCode}); its last output:\n${output()}`);

  let url = '';
  let port = 0;
  try {
    port = await waitFor(() => {
      if (ended()) throw failure('exited before it listened');
      return listeningPort;
    }, START_TIMEOUT_MS, 50);
    url = `http://127.0.0.1:${port}`;
    await waitFor(async () => {
      if (ended()) throw failure('exited before /healthz answered');
      return (await fetch(`${url}/healthz`).catch(() => undefined))?.ok;
    }, 10_000, 50);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err instanceof Error && err.message.startsWith('gateway process') ? err : failure(`was not healthy in time (${String(err)})`);
  }

  let store: SqliteConversationStore | undefined;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      if (!ended()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      await store?.close();
    })());

  return {
    url,
    port,
    dataDir,
    pid: child.pid!,
    get store() {
      return (store ??= new SqliteConversationStore(join(dataDir, 'gateway.sqlite')));
    },
    alive: () => !ended(),
    exit: () => (ended() ? { code: child.exitCode, signal: child.signalCode } : undefined),
    assertAlive: () => {
      if (ended()) throw failure('is no longer running');
    },
    output,
    close,
    destroy: async () => {
      await close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The port of the gateway's JSON `listening` log line, if this line is it. */
function portOf(line: string): number | undefined {
  if (!line.includes('"listening"')) return undefined;
  try {
    const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
    return entry.msg === 'listening' && typeof entry.port === 'number' ? entry.port : undefined;
  } catch {
    return undefined;
  }
}
