import { existsSync } from 'node:fs';
import { loadConfig } from '../config.js';
import { StartupError } from './node-backends.js';
import { exitOnStartupFailure, stopOnSignals } from './process-lifecycle.js';
import { createNodeServer } from './server.js';

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

  stopOnSignals(server, ['SIGTERM', 'SIGINT']);
}

main().catch(exitOnStartupFailure);
