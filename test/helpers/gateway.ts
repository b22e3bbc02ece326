import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { loadConfig, type Env } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { createNodeServer, type NodeServer } from '../../src/node/server.js';

export interface TestGateway {
  url: string;
  port: number;
  server: NodeServer;
  dataDir: string;
  close(): Promise<void>;
  /** Closes and removes the data directory. */
  destroy(): Promise<void>;
}

export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'gateway-test-'));
}

/** A real listening gateway on an ephemeral loopback port. */
export async function startGateway(env: Env = {}): Promise<TestGateway> {
  const dataDir = env.DATA_DIR ?? tempDataDir();
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', SHUTDOWN_GRACE_MS: '2000', ...env, DATA_DIR: dataDir });
  const server = await createNodeServer(config, { logger: silentLogger });
  const { port } = await server.listen();
  const close = () => server.close();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    dataDir,
    close,
    destroy: async () => {
      await close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A gateway for the tests of the describe block it is called in: started before them, with
 * `env` (a function when the env depends on what an earlier hook started, such as a stand-in's
 * URL), and destroyed after them. Answers the gateway, to be called inside the tests.
 */
export function gatewayForSuite(env: Env | (() => Env) = {}): () => TestGateway {
  let gw: TestGateway | undefined;
  beforeAll(async () => {
    gw = await startGateway(typeof env === 'function' ? env() : env);
  });
  afterAll(async () => {
    await gw?.destroy();
  });
  return () => {
    if (!gw) throw new Error('gatewayForSuite: the gateway is not started (called outside a test?)');
    return gw;
  };
}
