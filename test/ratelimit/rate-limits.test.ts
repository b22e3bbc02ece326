import { messagesOf } from '../helpers/conversations.js';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { MemoryRateLimiter } from '../../src/ratelimit/memory-rate-limiter.js';
import { expectChatDuringOutage, sharedWindowContract } from './shared-window-contract.js';
import { UpstashRateLimiter } from '../../src/ratelimit/upstash-rate-limiter.js';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer } from '../standins/redis-server.js';
import { startUpstashStandin } from '../standins/upstash-standin.js';
import { freePort } from '../helpers/ports.js';

describe('chat rate limits (embedded limiter)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
  });
  afterAll(() => gw.destroy());

  it('the 21st anonymous turn within the window gets 429 with Retry-After and RateLimit headers; nothing is stored for it', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await postChat(gw.url, { message: `anon ${i}`, sessionId: 'anon-limit' });
      statuses.push(res.status);
      if (i === 0) {
        expect(res.headers.get('ratelimit-limit')).toBe('20');
        expect(res.headers.get('ratelimit-remaining')).toBe('19');
      }
      await res.text();
    }
    expect(statuses).toEqual(Array(20).fill(200));
    const refused = await postChat(gw.url, { message: 'one too many', sessionId: 'anon-limit' });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(900);
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(await refused.json()).toMatchObject({ code: 'RATE_LIMIT', error: expect.stringMatching(/Too many chat requests/) });
    const items = await messagesOf(gw, 'anon-limit');
    expect(items.filter((m) => m.role === 'user')).toHaveLength(20);
  });

  it('an authenticated user gets 100 turns, the 101st is refused', async () => {
    const user = await register(gw.url, 'hundred@example.com');
    const results = await Promise.all(
      Array.from({ length: 101 }, (_, i) => postChat(gw.url, { message: `turn ${i}` }, bearer(user)).then(async (r) => (await r.text(), r.status))),
    );
    expect(results.filter((s) => s === 200)).toHaveLength(100);
    expect(results.filter((s) => s === 429)).toHaveLength(1);
  });

  it('sign-in attempts are limited per IP too', async () => {
    const tight = await startGateway({ RATE_LIMIT_AUTH: '3' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${tight.url}/api/v2/auth/login`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ email: 'x@example.com', password: 'guess' }),
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429]);
    } finally {
      await tight.destroy();
    }
  });

  it('X-Forwarded-For is ignored unless TRUST_PROXY is on', async () => {
    const spoof = async (g: TestGateway, ip: string) => (await postChat(g.url, { message: 'x' }, { 'X-Forwarded-For': ip })).headers.get('ratelimit-remaining');
    const strict = await startGateway({ RATE_LIMIT_ANON: '5' });
    const proxied = await startGateway({ RATE_LIMIT_ANON: '5', TRUST_PROXY: 'true' });
    try {
      expect([await spoof(strict, '1.1.1.1'), await spoof(strict, '2.2.2.2')]).toEqual(['4', '3']);
      expect([await spoof(proxied, '1.1.1.1'), await spoof(proxied, '2.2.2.2'), await spoof(proxied, 'evil, 2.2.2.2')]).toEqual(['4', '4', '3']);
    } finally {
      await strict.destroy();
      await proxied.destroy();
    }
  });
});

describe('behind a trusted proxy, an IPv6 client is its network', () => {
  const remaining = async (g: TestGateway, ip: string) => {
    const res = await postChat(g.url, { message: 'x' }, { 'X-Forwarded-For': ip });
    await res.text();
    return res.headers.get('ratelimit-remaining');
  };

  it('addresses of one /56 share the anonymous chat limit, the next /56 and IPv4 clients (mapped or not) have their own', async () => {
    const gw = await startGateway({ RATE_LIMIT_ANON: '5', TRUST_PROXY: 'true' });
    try {
      expect([await remaining(gw, '2001:db8:1:2::10'), await remaining(gw, '2001:db8:1:2::99'), await remaining(gw, '2001:db8:1:ff::1')]).toEqual(['4', '3', '2']);
      expect(await remaining(gw, '2001:db8:1:100::1')).toBe('4');
      expect([await remaining(gw, '::ffff:203.0.113.10'), await remaining(gw, '203.0.113.10'), await remaining(gw, '::ffff:203.0.113.44')]).toEqual(['4', '3', '4']);
    } finally {
      await gw.destroy();
    }
  });

  it('RATE_LIMIT_IPV6_PREFIX=128 counts each address alone', async () => {
    const gw = await startGateway({ RATE_LIMIT_ANON: '5', TRUST_PROXY: 'true', RATE_LIMIT_IPV6_PREFIX: '128' });
    try {
      expect([await remaining(gw, '2001:db8:1:2::10'), await remaining(gw, '2001:db8:1:2::99'), await remaining(gw, '2001:db8:1:2:0::10')]).toEqual(['4', '4', '3']);
    } finally {
      await gw.destroy();
    }
  });

  it('sign-in attempts from addresses of one /56 are throttled together', async () => {
    const gw = await startGateway({ RATE_LIMIT_AUTH: '3', TRUST_PROXY: 'true' });
    try {
      const statuses: number[] = [];
      for (const ip of ['2001:db8:7::1', '2001:db8:7::2', '2001:db8:7:1::3', '2001:db8:7:2::4', '2001:db8:8::1']) {
        const res = await fetch(`${gw.url}/api/v2/auth/login`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': ip },
          body: JSON.stringify({ email: `guess-${statuses.length}@example.com`, password: 'guess' }),
        });
        await res.text();
        statuses.push(res.status);
      }
      // 2001:db8:8::/56 is another client.
      expect(statuses).toEqual([401, 401, 401, 429, 401]);
    } finally {
      await gw.destroy();
    }
  });
});

describe('a window given per call (an API key\'s own per-minute limit)', () => {
  it('the embedded limiter counts that key in its own window, the others in the configured one', async () => {
    let now = 1_000_000 * 900_000; // the start of a 15-minute window, and so of a minute
    const limiter = new MemoryRateLimiter(900_000, () => now);
    const minute = [];
    for (let i = 0; i < 3; i++) minute.push(await limiter.consume('chat:key:k', 2, 60_000));
    expect(minute.map((d) => d.allowed)).toEqual([true, true, false]);
    expect(minute[2]!.reset).toBe(now + 60_000);
    expect((await limiter.consume('chat:user:u', 2)).reset).toBe(now + 900_000);
    // Two minutes on, the per-minute key has room again; the 15-minute one still counts.
    now += 120_000;
    expect((await limiter.consume('chat:key:k', 2, 60_000)).allowed).toBe(true);
    await limiter.consume('chat:user:u', 2);
    expect((await limiter.consume('chat:user:u', 2)).allowed).toBe(false);
  });
});

describe('Upstash limiter against a real Redis behind an Upstash REST stand-in', () => {
  let redis: Awaited<ReturnType<typeof startRedisServer>>;
  let upstash: Awaited<ReturnType<typeof startUpstashStandin>>;
  const TOKEN = 'upstash-test-token';

  beforeAll(async () => {
    redis = await startRedisServer();
    upstash = await startUpstashStandin({ redisPort: redis.port, token: TOKEN });
  });
  afterAll(async () => {
    await upstash.close();
    await redis.close();
  });

  sharedWindowContract(
    (windowMs) => new UpstashRateLimiter({ url: upstash.url, token: TOKEN, windowMs, prefix: `t${Date.now()}${Math.random().toString(36).slice(2, 6)}`, timeoutMs: 2000, failClosed: false, logger: silentLogger }),
  );

  it('lets requests through (and says so) when Upstash refuses the credentials', async () => {
    const errors: unknown[] = [];
    const logger = { ...silentLogger, error: (obj: object) => errors.push(obj), child: () => logger };
    const limiter = new UpstashRateLimiter({ url: upstash.url, token: 'wrong', windowMs: 60_000, prefix: 'bad', timeoutMs: 2000, failClosed: false, logger });
    expect((await limiter.consume('k', 1)).allowed).toBe(true);
    expect(errors).toHaveLength(1);
    await expect(limiter.ping()).rejects.toThrow();
  });

  it('with RATE_LIMIT_FAIL_CLOSED refuses with RATE_LIMIT (HTTP 503) while Upstash cannot answer', async () => {
    const limiter = new UpstashRateLimiter({ url: upstash.url, token: 'wrong', windowMs: 60_000, prefix: 'bad', timeoutMs: 2000, failClosed: true, logger: silentLogger });
    await expect(limiter.consume('k', 1)).rejects.toMatchObject({ code: 'RATE_LIMIT', status: 503, details: { retryAfterSeconds: 5 } });
  });

  it('/readyz reports a limiter outage: degraded when it fails open, unavailable (503) when it fails closed; chat follows the choice', async () => {
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    for (const failClosed of [false, true]) {
      const gw = await startGateway({ UPSTASH_REDIS_REST_URL: unreachable, UPSTASH_REDIS_REST_TOKEN: TOKEN, RATE_LIMIT_FAIL_CLOSED: String(failClosed) });
      try {
        const res = await fetch(`${gw.url}/readyz`);
        const body = (await res.json()) as { status: string; checks: Record<string, { status: string; kind: string; effect?: string }> };
        expect(res.status).toBe(failClosed ? 503 : 200);
        expect(body.status).toBe(failClosed ? 'unavailable' : 'degraded');
        expect(body.checks.store).toMatchObject({ status: 'ok', kind: 'sqlite' });
        expect(body.checks.rateLimiter).toMatchObject({ status: 'down', kind: 'upstash', effect: expect.any(String) });
        await expectChatDuringOutage(await postChat(gw.url, { message: 'hi' }), failClosed);
      } finally {
        await gw.destroy();
      }
    }
  });

  it('two gateway processes sharing Upstash admit exactly the limit between them', async () => {
    const LIMIT = 12;
    const prefix = `shared${Date.now()}`;
    const procs = await Promise.all(
      [0, 1].map(async () => {
        const port = await freePort();
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/node/main.ts'], {
          env: {
            PATH: process.env.PATH ?? '',
            HOST: '127.0.0.1',
            PORT: String(port),
            LOG_LEVEL: 'warn',
            DATA_DIR: tempDataDir(),
            JWT_SECRET: TEST_JWT_SECRET,
            UPSTASH_REDIS_REST_URL: upstash.url,
            UPSTASH_REDIS_REST_TOKEN: TOKEN,
            RATE_LIMIT_PREFIX: prefix,
            RATE_LIMIT_ANON: String(LIMIT),
          },
          stdio: 'ignore',
        });
        const url = `http://127.0.0.1:${port}`;
        await waitFor(() => fetch(`${url}/readyz`).then((r) => r.ok, () => false), 20_000, 100);
        return { child, url };
      }),
    );
    try {
      const ready = await (await fetch(`${procs[0]!.url}/readyz`)).json();
      expect(ready).toMatchObject({ status: 'ready', checks: { rateLimiter: { status: 'ok', kind: 'upstash' } } });
      const statuses = await Promise.all(
        Array.from({ length: 30 }, (_, i) => postChat(procs[i % 2]!.url, { message: `shared ${i}` }).then(async (r) => (await r.text(), r.status))),
      );
      expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
      expect(statuses.filter((s) => s === 429)).toHaveLength(30 - LIMIT);
      // Both processes took part in admitting and refusing.
      const byProc = [0, 1].map((p) => statuses.filter((s, i) => i % 2 === p && s === 200).length);
      expect(byProc[0]! + byProc[1]!).toBe(LIMIT);
      const ok = await readSse(await postChat(procs[0]!.url, { message: 'still limited?' }));
      expect(ok).toEqual([]);
    } finally {
      for (const p of procs) p.child.kill('SIGTERM');
    }
  });
});
