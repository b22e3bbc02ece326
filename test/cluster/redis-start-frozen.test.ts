/**
 * A node started while its Redis accepts connections but answers nothing (the process frozen with
 * SIGSTOP: the kernel still accepts them): start-up gives up within the connect timeout (5 s)
 * instead of waiting forever on the stop channel's SUBSCRIBE, closes every connection it opened,
 * and the process exits 69 with the reason, as it does when nothing listens at REDIS_URL.
 */
import { spawn } from 'node:child_process';
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisCluster, RedisConnectError } from '../../src/cluster/redis-cluster.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { tempDataDir } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

/** Settles with what `work` did, or says it was still pending after `ms`. */
function within<T>(work: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; pending?: true }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<{ pending: true }>((resolve) => (timer = setTimeout(() => resolve({ pending: true }), ms))),
  ]).finally(() => clearTimeout(timer));
}

describe('start-up against a Redis that does not answer', () => {
  let redis: RedisServerHandle | undefined;
  afterEach(async () => {
    redis?.thaw();
    await redis?.close();
    redis = undefined;
  });

  it('RedisCluster.connect throws RedisConnectError within the connect timeout and leaves no connection open', async () => {
    redis = await startRedisServer();
    redis.freeze();
    const config = loadConfig({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: `frozen${Date.now()}`, JWT_SECRET: TEST_JWT_SECRET, DATA_DIR: tempDataDir() });
    const started = performance.now();
    const outcome = await within(RedisCluster.connect(config, silentLogger), 8_000);
    const ms = performance.now() - started;
    if (outcome.value) await outcome.value.close();
    expect(outcome.pending, 'still connecting after 8 s').toBeUndefined();
    expect(outcome.error).toBeInstanceOf(RedisConnectError);
    expect((outcome.error as Error).message).toMatch(/REDIS_URL: could not connect \(no answer within 5000 ms\)/);
    expect(ms).toBeGreaterThan(4_500);

    // Once Redis runs again, it sees every one of those connections closed: only the probe's is left.
    redis.thaw();
    const probe = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    await probe.connect();
    try {
      await waitFor(async () => (await probe.clientList()).length === 1, 3_000, 50);
    } finally {
      probe.destroy();
    }
  }, 20_000);

  it('the process exits 69 and says why, within the connect timeout', async () => {
    redis = await startRedisServer();
    redis.freeze();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/node/main.ts'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: tempDataDir(),
        JWT_SECRET: TEST_JWT_SECRET,
        MEMORY_ENABLED: 'false',
        LOG_PRETTY: 'false',
        REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      // tsx's start-up takes a few seconds of its own on a busy machine.
      const outcome = await within(exited, 15_000);
      expect(outcome.pending, `still running after 15 s:\n${out}`).toBeUndefined();
      expect(outcome.value, out).toBe(69);
      expect(out).toMatch(/REDIS_URL: could not connect \(no answer within 5000 ms\)/);
      expect(out).not.toMatch(/unhandled|uncaught/i);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      process.removeListener('exit', killOnExit);
    }
  }, 25_000);
});
