import { ConfigError } from '../config.js';
import { StartupError } from './node-backends.js';
import type { NodeServer } from './server.js';

const EX_UNAVAILABLE = 69;
const EX_CONFIG = 78;

/**
 * Why listening on host:port failed, in the words of the variables to change (HOST and PORT, or
 * METRICS_HOST and METRICS_PORT); undefined for an error it does not know.
 */
export function listenFailure(err: unknown, host: string, port: number, names: { host: string; port: string } = { host: 'HOST', port: 'PORT' }): StartupError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return new StartupError(`${names.port}: ${host}:${port} is already in use; stop the process using it or set ${names.port} to a free port`);
  if (code === 'EADDRNOTAVAIL') return new StartupError(`${names.host}: ${host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its addresses`);
  if (code === 'EACCES') return new StartupError(`${names.port}: not allowed to listen on ${port} (ports below 1024 need privileges); set ${names.port} to 1024 or above`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return new StartupError(`${names.host}: ${host} does not resolve to an address; use 127.0.0.1, 0.0.0.0 or one of this machine's addresses`);
  return undefined;
}

/** A process that could not start: the message names the variable and the fix (no stack for those), and the exit code says which kind. */
export function exitOnStartupFailure(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(EX_CONFIG);
  }
  if (err instanceof StartupError) {
    console.error(`Cannot start: ${err.message}`);
    process.exit(EX_UNAVAILABLE);
  }
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}

/**
 * What a gateway process does with signals and stray rejections, the same in `npm start`
 * (main.ts) and in every `start:cluster` worker: the first signal closes the server
 * gracefully and exits 0 (1 if closing failed), a second one exits 1 at once; a rejection
 * nobody handled is logged, and the process keeps serving.
 *
 * `signals` are the ones that stop it. A worker stops on SIGTERM only: a Ctrl-C reaches the
 * whole process group, and the primary turns it into one SIGTERM per worker, so a worker that
 * also took SIGINT as a stop would see a second signal and exit without draining.
 */
export function stopOnSignals(server: NodeServer, signals: readonly NodeJS.Signals[], ignored: readonly NodeJS.Signals[] = []): void {
  const logger = server.services.logger;
  let received = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    if (++received > 1) process.exit(1); // a second signal means "now"
    logger.info({ signal }, 'signal received');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, shutdown);
  for (const signal of ignored) process.on(signal, () => undefined);
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
}
