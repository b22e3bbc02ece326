/**
 * RedisCluster.close() with the Socket.IO Redis Streams adapter on it, against a real
 * redis-server: closing while Redis is away rejects nothing unhandled (the adapter drops the
 * promises of its SUBSCRIBE and of its copies' disconnect), and no connection outlives the
 * close, neither the adapter's stream reader nor a copy that would come back with Redis.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisCluster } from '../../src/cluster/redis-cluster.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

/** Clients connected to that Redis, other than the one asking. */
async function connectionsTo(port: number): Promise<number> {
  const probe = createClient({ url: `redis://127.0.0.1:${port}` });
  probe.on('error', () => undefined);
  await probe.connect();
  try {
    const list = String(await probe.sendCommand(['CLIENT', 'LIST']));
    return list.split('\n').filter((line) => line.trim() !== '').length - 1;
  } finally {
    probe.destroy();
  }
}

/** A cluster and a Socket.IO server on its adapter, with `/` and `/ai` subscribed in Redis. */
async function start(redis: RedisServerHandle) {
  const config = loadConfig({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_KEY_PREFIX: `close${Date.now()}` });
  const cluster = await RedisCluster.connect(config, silentLogger);
  const io = new Server(createServer(), { adapter: cluster.socketAdapter() });
  io.of('/ai');
  // Three connections of its own, then the adapter's stream reader and pub/sub connection.
  await waitFor(async () => (await connectionsTo(redis.port)) === 5, 10_000, 50);
  return { cluster, io };
}

describe('RedisCluster.close with the Socket.IO adapter', () => {
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => void unhandled.push(reason);
  let redis: RedisServerHandle | undefined;

  afterEach(async () => {
    process.off('unhandledRejection', record);
    unhandled.length = 0;
    await redis?.close();
  });

  it('with Redis up, leaves no connection behind (the adapter\'s blocked stream reader included)', async () => {
    redis = await startRedisServer();
    const { cluster, io } = await start(redis);
    await io.close();
    await cluster.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await connectionsTo(redis.port)).toBe(0);
  });

  it('with Redis down: nothing unhandled, commands queued for it fail at close, and no copy reconnects when Redis is back', async () => {
    redis = await startRedisServer();
    const port = redis.port;
    const { cluster, io } = await start(redis);
    process.on('unhandledRejection', record);
    await redis.close();
    await waitFor(() => !cluster.healthy, 5_000, 20);
    // Queued while Redis is away: a broadcast (XADD, whose failure the adapter catches) and a
    // namespace's SUBSCRIBE (whose promise the adapter drops).
    io.of('/ai').to('user:someone').emit('chat:message', { content: 'x', isComplete: false });
    io.of('/late');
    await io.close();
    await cluster.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(unhandled).toEqual([]);

    // Longer than the longest reconnect delay (2 s): a copy left open would be back by now.
    redis = await startRedisServer({ port });
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(await connectionsTo(port)).toBe(0);
  }, 20_000);
});
