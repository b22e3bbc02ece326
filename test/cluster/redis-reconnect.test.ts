/**
 * RedisCluster across a Redis that goes away and comes back, against a real redis-server
 * behind a TCP relay the test controls: the relay can cut every connection at once (what the
 * clients see when Redis dies) and then reset the next few connections as soon as they send
 * something, or soon if they don't (what a Redis being killed does to a connection its
 * listening socket still took).
 */
import net from 'node:net';
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChatTurnEvent } from '../../src/chat/chat-pipeline.js';
import { RedisCluster } from '../../src/cluster/redis-cluster.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';

interface Relay {
  port: number;
  /** Closes every relayed connection (the clients see Redis go away), and resets the next `resets` connections on their first bytes (or after 20 ms). */
  cut(resets: number): void;
  /** Connections reset so far. */
  readonly reset: number;
  close(): Promise<void>;
}

async function startRelay(target: number): Promise<Relay> {
  const open = new Set<net.Socket>();
  let resetsLeft = 0;
  let reset = 0;
  const server = net.createServer((inbound) => {
    open.add(inbound);
    inbound.on('close', () => open.delete(inbound));
    inbound.on('error', () => undefined);
    if (resetsLeft > 0) {
      resetsLeft--;
      let done = false;
      const kill = () => {
        if (done) return;
        done = true;
        reset++;
        inbound.resetAndDestroy();
      };
      inbound.once('data', kill);
      setTimeout(kill, 20);
      return;
    }
    const outbound = net.connect(target, '127.0.0.1');
    open.add(outbound);
    outbound.on('close', () => {
      open.delete(outbound);
      inbound.destroy();
    });
    outbound.on('error', () => undefined);
    inbound.on('close', () => outbound.destroy());
    inbound.pipe(outbound).pipe(inbound);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut(resets) {
      resetsLeft = resets;
      for (const socket of open) socket.destroy();
    },
    get reset() {
      return reset;
    },
    close: () => {
      for (const socket of open) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The ids of the connections redis-server has, other than the one asking and `ignore`. */
async function connectionsTo(port: number, ignore: number[] = []): Promise<number[]> {
  const probe = createClient({ url: `redis://127.0.0.1:${port}` });
  probe.on('error', () => undefined);
  await probe.connect();
  try {
    const list = String(await probe.sendCommand(['CLIENT', 'LIST']));
    const own = Number(await probe.sendCommand(['CLIENT', 'ID']));
    return [...list.matchAll(/^id=(\d+) /gm)].map((m) => Number(m[1])).filter((id) => id !== own && !ignore.includes(id));
  } finally {
    probe.destroy();
  }
}

/** Once each of `count` connections (but `ignore`) is a new one (an id above every id in `before`). */
async function replaced(port: number, before: number[], count: number, ignore: number[] = []): Promise<void> {
  const last = Math.max(...before);
  await waitFor(async () => {
    const ids = await connectionsTo(port, ignore);
    return ids.length === count && ids.every((id) => id > last);
  }, 10_000, 50);
}

/** One PING through the cluster, given a short while: a connection that claims to be ready on a dead socket never answers. */
async function answers(cluster: RedisCluster): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([cluster.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), 500)))]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

describe('RedisCluster when Redis comes back', () => {
  let redis: RedisServerHandle | undefined;
  let relay: Relay | undefined;
  let cluster: RedisCluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    await relay?.close();
    await redis?.close();
    cluster = relay = redis = undefined;
  });

  async function start(): Promise<{ redis: RedisServerHandle; relay: Relay; cluster: RedisCluster }> {
    redis = await startRedisServer();
    relay = await startRelay(redis.port);
    const config = loadConfig({ REDIS_URL: `redis://127.0.0.1:${relay.port}`, REDIS_KEY_PREFIX: `reconnect${Date.now()}`, STREAM_RESUME_TTL_S: '600' });
    cluster = await RedisCluster.connect(config, silentLogger);
    return { redis, relay, cluster };
  }

  it('reconnects every connection that was reset while it reconnected, instead of calling a dead one ready', async () => {
    const { redis, relay, cluster } = await start();
    const before = await connectionsTo(redis.port);
    expect(before).toHaveLength(3);
    // Each connection reconnects at once and is reset on its first bytes: the handshake, if it sends one.
    relay.cut(3);
    await waitFor(() => relay.reset === 3, 5_000, 10);
    // The reconnect strategy retries within 2 s: all three are back, and commands are answered.
    await replaced(redis.port, before, 3);
    await waitFor(() => answers(cluster), 5_000, 50);
    expect(cluster.healthy).toBe(true);
  });

  it('drops a turn log whose connection was replaced while it was open, even with no event in the gap', async () => {
    const { redis, relay, cluster } = await start();
    const streams = cluster.streams!;
    const direct = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    direct.on('error', () => undefined);
    await direct.connect();
    const directId = Number(await direct.sendCommand(['CLIENT', 'ID']));
    try {
      const delta = (i: number): ChatTurnEvent => ({ type: 'delta', text: `w${i} ` });
      const log = streams.open('o/c');
      log.append(delta(1));
      log.append(delta(2));
      await waitFor(async () => (await streams.extent('o/c', log.turnId))?.lastSeq === 2, 5_000, 10);
      // Redis restarts empty between two events: the connection is replaced, nothing was refused.
      const before = await connectionsTo(redis.port, [directId]);
      relay.cut(0);
      await direct.flushAll();
      await replaced(redis.port, before, 3, [directId]);
      await waitFor(() => answers(cluster), 5_000, 20);
      log.append(delta(3));
      log.append({ type: 'end', conversationId: 'c', messageId: 'm', content: 'w1 w2 w3 ', finishReason: 'stop', usage: undefined, model: 'local' });
      // Its commands are pipelined on the connection PING uses: once PING answers, Redis has run them.
      await cluster.ping();
      // Not a log that starts at event 3 (a resume after event 1 would skip event 2): no log at all.
      expect(await streams.extent('o/c', log.turnId)).toBeUndefined();
      expect(await streams.latest('o/c')).toBeUndefined();
    } finally {
      direct.destroy();
    }
  });
});
