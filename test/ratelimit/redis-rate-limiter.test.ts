/**
 * Rate limits counted in the Redis of REDIS_URL (no Upstash): @upstash/ratelimit's sliding
 * window over the gateway's own node-redis connection, against a real redis-server.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCluster } from '../../src/cluster/redis-cluster.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger, type Logger } from '../../src/logger.js';
import { RedisRateLimiter, type RedisRateLimiterOptions } from '../../src/ratelimit/redis-rate-limiter.js';
import { UpstashRateLimiter } from '../../src/ratelimit/upstash-rate-limiter.js';
import { startGateway } from '../helpers/gateway.js';
import { spawnGateway } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/ports.js';
import { postChat } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer, type RedisServerHandle } from '../standins/redis-server.js';
import { startUpstashStandin } from '../standins/upstash-standin.js';
import { STALL_COOL_MS } from '../../src/stall-breaker.js';
import { expectChatDuringOutage, sharedWindowContract } from './shared-window-contract.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function connect(port: number): Promise<RedisCluster> {
  return RedisCluster.connect(loadConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_KEY_PREFIX: `c${Date.now()}` }), silentLogger);
}

function limiterOn(cluster: RedisCluster, options: Partial<RedisRateLimiterOptions> = {}): RedisRateLimiter {
  return new RedisRateLimiter({
    kind: 'redis',
    redis: cluster.ratelimitRedis(),
    windowMs: 60_000,
    prefix: `r${Date.now()}${Math.random().toString(36).slice(2, 6)}`,
    timeoutMs: 2000,
    failClosed: false,
    logger: silentLogger,
    ...options,
  });
}

function recordingLogger(errors: unknown[]): Logger {
  const logger: Logger = { ...silentLogger, error: (obj: object) => void errors.push(obj), child: () => logger };
  return logger;
}

describe('the REDIS_URL limiter against a real redis-server', () => {
  let redis: RedisServerHandle;
  let cluster: RedisCluster;

  beforeAll(async () => {
    redis = await startRedisServer();
    cluster = await connect(redis.port);
  });
  afterAll(async () => {
    await cluster?.close();
    await redis?.close();
  });

  sharedWindowContract((windowMs) => limiterOn(cluster, { windowMs }));

  it('answers a ping while Redis is up', async () => {
    await expect(limiterOn(cluster).ping()).resolves.toBeUndefined();
  });

  it('shares its counts with the Upstash limiter: same keys, same scripts', async () => {
    const upstash = await startUpstashStandin({ redisPort: redis.port, token: 'tok' });
    try {
      const prefix = `both${Date.now()}`;
      // An hour-long window: both limiters align windows to the clock, and with a minute one a
      // minute boundary between two calls (seen in CI) weighs the earlier ones down.
      const windowMs = 3_600_000;
      const viaUpstash = new UpstashRateLimiter({ url: upstash.url, token: 'tok', windowMs, prefix, timeoutMs: 2000, failClosed: false, logger: silentLogger });
      const viaRedis = limiterOn(cluster, { prefix, windowMs });
      expect((await viaUpstash.consume('chat:user:u1', 3)).allowed).toBe(true);
      expect((await viaUpstash.consume('chat:user:u1', 3)).allowed).toBe(true);
      expect(await viaRedis.consume('chat:user:u1', 3)).toMatchObject({ allowed: true, remaining: 0 });
      expect((await viaRedis.consume('chat:user:u1', 3)).allowed).toBe(false);
    } finally {
      await upstash.close();
    }
  });

  it('a gateway with REDIS_URL alone counts there: past the limit RATE_LIMIT (429) with Retry-After', async () => {
    const gw = await startGateway({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, RATE_LIMIT_PREFIX: `gw${Date.now()}`, RATE_LIMIT_ANON: '2', MEMORY_ENABLED: 'false' });
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { status: string; checks: Record<string, { status: string; kind: string }> };
      expect(ready).toMatchObject({ status: 'ready', checks: { rateLimiter: { status: 'ok', kind: 'redis' } } });
      const statuses: number[] = [];
      let refused: Response | undefined;
      for (let i = 0; i < 3; i++) {
        const res = await postChat(gw.url, { message: `hi ${i}`, maxTokens: 2 });
        statuses.push(res.status);
        if (res.status === 429) refused = res;
        else await res.text();
      }
      expect(statuses).toEqual([200, 200, 429]);
      expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await refused!.json()).toMatchObject({ code: 'RATE_LIMIT' });
    } finally {
      await gw.destroy();
    }
  });
});

describe('the REDIS_URL limiter when Redis stalls (frozen: connections open, nothing answers)', () => {
  it('a refused client answered from the process\'s own cache does not end the stall for everyone: the others are still not made to wait', async () => {
    const redis = await startRedisServer();
    const cluster = await connect(redis.port);
    try {
      // The refusal is remembered until its window's end, and windows are aligned to the clock:
      // an hour-long one, begun well before its end, outlasts this test (a minute-long one
      // could end during it, one run in thirty, and the refused client would then be asked anew).
      const WINDOW_MS = 3_600_000;
      const toWindowEnd = WINDOW_MS - (Date.now() % WINDOW_MS);
      if (toWindowEnd < 10_000) await new Promise((r) => setTimeout(r, toWindowEnd + 100));
      const limiter = limiterOn(cluster, { timeoutMs: 300, windowMs: WINDOW_MS });
      // Refused by Redis: remembered in the process as refused until its window resets.
      expect((await limiter.consume('refused', 1)).allowed).toBe(true);
      expect((await limiter.consume('refused', 1)).allowed).toBe(false);
      redis.freeze();
      // The first to ask waits the timeout and opens the breaker; the next is let through at once.
      const waited = performance.now();
      expect((await limiter.consume('a', 5)).allowed).toBe(true);
      expect(performance.now() - waited).toBeGreaterThan(250);
      const skipped = performance.now();
      expect((await limiter.consume('b', 5)).allowed).toBe(true);
      expect(performance.now() - skipped).toBeLessThan(100);
      // After the cool-off the refused client asks first: answered from the cache, Redis still frozen.
      await new Promise((r) => setTimeout(r, STALL_COOL_MS + 50));
      expect((await limiter.consume('refused', 1)).allowed).toBe(false);
      // Of the next four at once, one is the trial that waits; the others are let through at once
      // (before, the cached answer closed the breaker and all four waited on the frozen Redis).
      const waits = await Promise.all(
        ['c', 'd', 'e', 'f'].map(async (k) => {
          const started = performance.now();
          await limiter.consume(k, 5);
          return performance.now() - started;
        }),
      );
      expect(waits.filter((ms) => ms > 250)).toHaveLength(1);
    } finally {
      redis.thaw();
      await cluster.close();
      await redis.close();
    }
  }, 20_000);

  it('keeps a bounded number of limiters however many distinct limits API keys ask for', async () => {
    const redis = await startRedisServer();
    const cluster = await connect(redis.port);
    try {
      const limiter = limiterOn(cluster);
      const heapAfterGc = () => {
        gc();
        return getHeapStatistics().used_heap_size;
      };
      for (let limit = 1; limit <= 300; limit++) await limiter.consume(`warm:${limit}`, limit, 60_000);
      const before = heapAfterGc();
      // 5,000 limits, each a Ratelimit with a cache of its own (≈ 1.4 KB): 7 MB kept when none is let go.
      for (let limit = 1; limit <= 5_000; limit++) await limiter.consume(`key:${limit}`, limit, 60_000);
      expect(heapAfterGc() - before).toBeLessThan(2 * 1024 * 1024);
      // Its counts are in Redis: a limit made again counts on from them.
      expect(await limiter.consume('key:1', 1, 60_000)).toMatchObject({ allowed: false });
    } finally {
      await cluster.close();
      await redis.close();
    }
  }, 60_000);
});

describe('the REDIS_URL limiter when Redis goes away', () => {
  it('fails open (logged) or closed (RATE_LIMIT, 503) as configured, and counts again once Redis is back', async () => {
    const port = await freePort();
    let redis = await startRedisServer({ port });
    const cluster = await connect(port);
    try {
      const errors: unknown[] = [];
      const open = limiterOn(cluster, { logger: recordingLogger(errors) });
      const closed = limiterOn(cluster, { failClosed: true });
      expect((await open.consume('k1', 2)).allowed).toBe(true);

      await redis.close();
      await waitFor(() => !cluster.healthy, 5000);
      expect(await open.consume('k1', 2)).toMatchObject({ allowed: true });
      expect(errors).toHaveLength(1);
      await expect(closed.consume('k1', 2)).rejects.toMatchObject({ code: 'RATE_LIMIT', status: 503, details: { retryAfterSeconds: 5 } });
      await expect(open.ping()).rejects.toThrow();

      // A new Redis knows none of the scripts: the library's NOSCRIPT fallback sends them again.
      redis = await startRedisServer({ port });
      await waitFor(() => cluster.healthy, 10_000, 50);
      const decisions = [];
      for (let i = 0; i < 3; i++) decisions.push((await open.consume('k2', 2)).allowed);
      expect(decisions).toEqual([true, true, false]);
      expect(errors).toHaveLength(1);
    } finally {
      await cluster.close();
      await redis.close();
    }
  });

  it('a gateway process reports it on /readyz (degraded open, unavailable closed), chat follows the choice, and it does not crash', async () => {
    for (const failClosed of [false, true]) {
      const redis = await startRedisServer();
      const gw = await spawnGateway({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, RATE_LIMIT_FAIL_CLOSED: String(failClosed), MEMORY_ENABLED: 'false', JWT_SECRET: TEST_JWT_SECRET });
      try {
        await redis.close();
        const res = await waitFor(async () => {
          const r = await fetch(`${gw.url}/readyz`);
          const body = (await r.json()) as { status: string; checks: Record<string, { status: string; kind: string; effect?: string }> };
          return body.checks.rateLimiter?.status === 'down' ? { status: r.status, body } : undefined;
        }, 10_000, 50);
        expect(res.status).toBe(failClosed ? 503 : 200);
        expect(res.body.status).toBe(failClosed ? 'unavailable' : 'degraded');
        expect(res.body.checks.rateLimiter).toMatchObject({ status: 'down', kind: 'redis', effect: expect.any(String) });
        await expectChatDuringOutage(await postChat(gw.url, { message: 'hi', maxTokens: 2 }), failClosed);
        // The line comes through the child's stdout, which pino writes asynchronously, not with the
        // response: it may arrive after it.
        const logged = failClosed ? /rate limiter unavailable; request refused/ : /rate limiter unavailable; request let through/;
        await waitFor(() => logged.test(gw.output()), 5_000, 20).catch(() => undefined);
        expect(gw.output()).toMatch(logged);
        gw.assertAlive();
      } finally {
        await gw.destroy();
        await redis.close();
      }
    }
  });
});
