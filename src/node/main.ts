import { existsSync } from 'node:fs';
import { ConfigError, loadConfig } from '../config.js';
import { StartupError } from './node-backends.js';
import { createNodeServer } from './server.js';

const EX_UNAVAILABLE = 69;
const EX_CONFIG = 78;

/** The Node entry: the only place that reads process.env. */
async function main(): Promise<void> {
  // A .env file in the working directory fills in what the real environment does not set.
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig(process.env);
  const server = await createNodeServer(config);
  try {
    await server.listen();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new StartupError(`PORT: ${config.host}:${config.port} is already in use; stop the process using it or set PORT to a free port`);
    if (code === 'EADDRNOTAVAIL') throw new StartupError(`HOST: ${config.host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its addresses`);
    if (code === 'EACCES') throw new StartupError(`PORT: not allowed to listen on ${config.port} (ports below 1024 need privileges); set PORT to 1024 or above`);
    throw err;
  }

  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    if (++signals > 1) process.exit(1); // a second signal means "now"
    server.services.logger.info({ signal }, 'signal received');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.services.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('unhandledRejection', (err) => server.services.logger.error({ err }, 'unhandled rejection'));
}

main().catch((err: unknown) => {
  // Start-up failures name the variable and the fix; no stack for those.
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
});
