import { existsSync } from 'node:fs';
import { loadConfig } from '../config.js';
import { exitOnStartupFailure, listenFailure, stopOnSignals } from './process-lifecycle.js';
import { createNodeServer } from './server.js';

/** The Node entry: the only place that reads process.env. */
async function main(): Promise<void> {
  // A .env file in the working directory fills in what the real environment does not set. A
  // variable set empty (or blank) counts as unset, as it does everywhere in the configuration:
  // it must not keep the file's value out (loadEnvFile never replaces a variable that exists).
  if (existsSync('.env')) {
    for (const [name, value] of Object.entries(process.env)) if (value !== undefined && value.trim() === '') delete process.env[name];
    process.loadEnvFile('.env');
  }
  const config = loadConfig(process.env);
  const server = await createNodeServer(config);
  try {
    await server.listen();
  } catch (err) {
    throw listenFailure(err, config.host, config.port) ?? err;
  }

  stopOnSignals(server, ['SIGTERM', 'SIGINT']);
}

main().catch(exitOnStartupFailure);
