/**
 * Test helper: runs a throwaway real `redis-server` (Debian's package) on a free loopback port.
 *
 * Nothing is persisted (`--save ''`, `--appendonly no`) and the process is killed on `close()`
 * (and, as a last resort, when the test process exits).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import { freePort } from '../helpers/ports.js';

export interface RedisServerHandle {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s). Idempotent. */
  close(): Promise<void>;
  /** Kills the server at once (SIGKILL, as a crash would), and waits for it to be gone. Idempotent. */
  kill(): Promise<void>;
  /** Freezes the process (SIGSTOP): the kernel still accepts connections and takes commands, nothing answers. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void;
}

const NOT_INSTALLED =
  'redis-server executable not found on PATH. Install Debian\'s redis-server (apt-get install -y redis-server) to run these tests.';

/** One PING over a fresh connection; resolves true iff the server answered +PONG. */
function pingOnce(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Attempt {
  child: ChildProcess;
  output: () => string;
  exited: () => boolean;
}

function spawnRedis(port: number): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'redis-server',
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--save', '',
        '--appendonly', 'no',
        '--protected-mode', 'yes',
        '--daemonize', 'no',
        '--dir', os.tmpdir(),
        '--logfile', '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let hasExited = false;
    const collect = (chunk: Buffer): void => {
      out = (out + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('exit', () => {
      hasExited = true;
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      hasExited = true;
      reject(err.code === 'ENOENT' ? new Error(NOT_INSTALLED) : err);
    });
    child.once('spawn', () => resolve({ child, output: () => out, exited: () => hasExited }));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** `port`: a given one (to start Redis again at the same address after `close()`), else a free one. */
export async function startRedisServer(options: { port?: number } = {}): Promise<RedisServerHandle> {
  let lastError = '';
  // The free-port probe is racy (another process may grab the port before redis binds it), so retry.
  for (let attempt = 0; attempt < (options.port ? 1 : 5); attempt++) {
    const port = options.port ?? (await freePort());
    const { child, output, exited } = await spawnRedis(port);
    const killOnExit = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', killOnExit);

    const deadline = Date.now() + 10_000;
    let ready = false;
    while (!exited() && Date.now() < deadline) {
      if (await pingOnce(port, 500)) {
        ready = true;
        break;
      }
      await sleep(25);
    }
    if (ready && !exited()) {
      let closing: Promise<void> | undefined;
      return {
        port,
        close: () => {
          child.kill('SIGCONT');
          closing ??= stop(child).finally(() => process.removeListener('exit', killOnExit));
          return closing;
        },
        kill: async () => {
          if (child.exitCode === null && child.signalCode === null) {
            const exited = once(child, 'exit');
            child.kill('SIGKILL');
            await exited;
          }
          process.removeListener('exit', killOnExit);
        },
        freeze: () => child.kill('SIGSTOP'),
        thaw: () => child.kill('SIGCONT'),
      };
    }
    await stop(child);
    process.removeListener('exit', killOnExit);
    lastError = output();
    if (!/address already in use/i.test(lastError)) break;
  }
  throw new Error(`redis-server did not become ready. Output:\n${lastError}`);
}
