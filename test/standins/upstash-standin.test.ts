import { createHash, randomUUID } from 'node:crypto';
import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer } from './redis-server.js';
import { RespClient, RespError, rewriteScript, startUpstashStandin } from './upstash-standin.js';

type RedisServer = Awaited<ReturnType<typeof startRedisServer>>;
type Standin = Awaited<ReturnType<typeof startUpstashStandin>>;

const TOKEN = 'standin-test-token';
const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Window-based limiters reset at multiples of the window; start tests well inside a window. */
async function awaitFreshWindow(windowMs: number, minLeftMs = 3000): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < minLeftMs) await sleep(left + 20);
}

let redisServer: RedisServer;
let standin: Standin;

beforeAll(async () => {
  redisServer = await startRedisServer();
  standin = await startUpstashStandin({ redisPort: redisServer.port, token: TOKEN });
});

afterAll(async () => {
  await standin?.close();
  await redisServer?.close();
});

interface RawResponse {
  status: number;
  body: unknown;
}

async function rawPost(
  path: string,
  body: unknown,
  opts: { token?: string | null; base64?: boolean } = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (opts.base64) headers['Upstash-Encoding'] = 'base64';
  const res = await fetch(`${standin.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as unknown };
}

describe('wire protocol (raw HTTP)', () => {
  it('rejects missing or wrong tokens with 401 {"error":"Unauthorized"}', async () => {
    expect(await rawPost('/', ['PING'], { token: null })).toEqual({ status: 401, body: { error: 'Unauthorized' } });
    expect(await rawPost('/', ['PING'], { token: 'nope' })).toEqual({ status: 401, body: { error: 'Unauthorized' } });
    expect(await rawPost('/pipeline', [['PING']], { token: 'nope' })).toEqual({
      status: 401,
      body: { error: 'Unauthorized' },
    });
  });

  it('runs single commands, with and without base64 encoding', async () => {
    const key = `raw:${randomUUID()}`;
    expect(await rawPost('/', ['SET', key, 'héllo ✓'])).toEqual({ status: 200, body: { result: 'OK' } });
    expect(await rawPost('/', ['GET', key])).toEqual({ status: 200, body: { result: 'héllo ✓' } });
    expect(await rawPost('/', ['GET', key], { base64: true })).toEqual({ status: 200, body: { result: b64('héllo ✓') } });
    // Simple strings other than OK are encoded too; OK is sent verbatim.
    expect(await rawPost('/', ['PING'], { base64: true })).toEqual({ status: 200, body: { result: b64('PONG') } });
    expect(await rawPost('/', ['SET', key, 'x'], { base64: true })).toEqual({ status: 200, body: { result: 'OK' } });
    // JSON numbers are accepted as arguments; integers come back as JSON numbers.
    expect(await rawPost('/', ['INCRBY', `${key}:n`, 5], { base64: true })).toEqual({ status: 200, body: { result: 5 } });
    expect(await rawPost('/', ['GET', `${key}:missing`], { base64: true })).toEqual({ status: 200, body: { result: null } });
  });

  it('reports command errors as 400 {"error":"ERR ..."}', async () => {
    const key = `raw:${randomUUID()}`;
    await rawPost('/', ['SET', key, 'not a number']);
    expect(await rawPost('/', ['INCR', key])).toEqual({
      status: 400,
      body: { error: 'ERR value is not an integer or out of range' },
    });
    const unknown = await rawPost('/', ['NOSUCHCOMMAND', 'x']);
    expect(unknown.status).toBe(400);
    expect((unknown.body as { error: string }).error).toMatch(/^ERR unknown command/);
  });

  it('runs /pipeline with per-command results and errors, base64-encoding nested strings', async () => {
    const key = `raw:${randomUUID()}`;
    const res = await rawPost(
      '/pipeline',
      [['RPUSH', key, 'a', 'bé'], ['LRANGE', key, 0, -1], ['INCR', key], ['LLEN', key]],
      { base64: true },
    );
    expect(res.status).toBe(200);
    expect(res.body).toEqual([
      { result: 2 },
      { result: [b64('a'), b64('bé')] },
      { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
      { result: 2 },
    ]);
  });

  it('handles replies that arrive in many TCP chunks (large bulk strings and arrays)', async () => {
    const key = `raw:${randomUUID()}`;
    const big = 'é'.repeat(1_000_000); // 2 MB of UTF-8
    expect(await rawPost('/', ['SET', `${key}:big`, big])).toEqual({ status: 200, body: { result: 'OK' } });
    const got = await rawPost('/', ['GET', `${key}:big`], { base64: true });
    expect(Buffer.from((got.body as { result: string }).result, 'base64').toString('utf8')).toBe(big);
    const items = Array.from({ length: 20_000 }, (_, i) => `item-${i}`);
    expect(await rawPost('/', ['RPUSH', `${key}:list`, ...items])).toEqual({ status: 200, body: { result: 20_000 } });
    expect(await rawPost('/', ['LRANGE', `${key}:list`, 0, -1])).toEqual({ status: 200, body: { result: items } });
  });

  it('runs /multi-exec atomically', async () => {
    const key = `raw:${randomUUID()}`;
    const res = await rawPost('/multi-exec', [['SET', key, '1'], ['INCR', key], ['GET', key]]);
    expect(res).toEqual({ status: 200, body: [{ result: 'OK' }, { result: 2 }, { result: '2' }] });
    const aborted = await rawPost('/multi-exec', [['SET', key, '5'], ['GET']]);
    expect(aborted.status).toBe(400);
    expect((aborted.body as { error: string }).error).toMatch(/^EXECABORT/);
    expect(await rawPost('/', ['GET', key])).toEqual({ status: 200, body: { result: '2' } });
  });

  it('real Redis 7.0 rejects the allow-key-locking shebang (the trap this stand-in works around)', async () => {
    const direct = new RespClient(redisServer.port);
    try {
      const reply = await direct.command(['EVAL', '#!lua flags=allow-key-locking\nreturn 1', '0']);
      expect(reply).toBeInstanceOf(RespError);
      expect((reply as RespError).message).toMatch(/Unexpected flag in script shebang: allow-key-locking/);
    } finally {
      await direct.close();
    }
  });

  it('rewrites shebang flags without changing line numbers and keeps supported flags', () => {
    expect(rewriteScript('#!lua flags=allow-key-locking\nreturn 1')).toBe('#!lua\nreturn 1');
    expect(rewriteScript('#!lua flags=no-writes,allow-key-locking\nreturn 1')).toBe('#!lua flags=no-writes\nreturn 1');
    expect(rewriteScript('#!lua name=mylib\nreturn 1')).toBe('#!lua name=mylib\nreturn 1');
    expect(rewriteScript('return 1')).toBe('return 1');
  });

  it('serves EVALSHA / SCRIPT LOAD / SCRIPT EXISTS with the client-side SHA of the original script', async () => {
    const script = `#!lua flags=allow-key-locking\n-- ${randomUUID()}\nreturn {KEYS[1], ARGV[1], 7}`;
    const sha = sha1(script);
    const before = await rawPost('/', ['EVALSHA', sha, 1, 'k', 'v']);
    expect(before.status).toBe(400);
    expect((before.body as { error: string }).error).toMatch(/^NOSCRIPT/);
    expect(await rawPost('/', ['EVAL', script, 1, 'k', 'vé'], { base64: true })).toEqual({
      status: 200,
      body: { result: [b64('k'), b64('vé'), 7] },
    });
    expect(await rawPost('/', ['EVALSHA', sha, 1, 'k2', 'v2'])).toEqual({ status: 200, body: { result: ['k2', 'v2', 7] } });
    expect(await rawPost('/', ['SCRIPT', 'EXISTS', sha, '0'.repeat(40)])).toEqual({ status: 200, body: { result: [1, 0] } });

    const loaded = `#!lua flags=no-writes,allow-key-locking\n-- ${randomUUID()}\nreturn ARGV[1]`;
    expect(await rawPost('/', ['SCRIPT', 'LOAD', loaded])).toEqual({ status: 200, body: { result: sha1(loaded) } });
    expect(await rawPost('/', ['EVALSHA_RO', sha1(loaded), 0, 'ro'])).toEqual({ status: 200, body: { result: 'ro' } });
  });
});

const clientVariants = [
  { name: 'default settings (auto-pipelining on)', extra: {}, autoPipelined: true },
  { name: 'enableAutoPipelining: true', extra: { enableAutoPipelining: true }, autoPipelined: true },
  { name: 'enableAutoPipelining: false', extra: { enableAutoPipelining: false }, autoPipelined: false },
  {
    name: 'responseEncoding: false (no base64)',
    extra: { enableAutoPipelining: false, responseEncoding: false as const },
    autoPipelined: false,
  },
];

describe.each(clientVariants)('@upstash/redis client, $name', ({ extra, autoPipelined }) => {
  const client = (): Redis => new Redis({ url: standin.url, token: TOKEN, ...extra });

  it('set/get/incr/expire/ttl/del', async () => {
    const redis = client();
    const k = `client:${randomUUID()}`;
    expect(await redis.set(`${k}:s`, 'héllo ✓ 日本')).toBe('OK');
    expect(await redis.get<string>(`${k}:s`)).toBe('héllo ✓ 日本');
    expect(await redis.set(`${k}:obj`, { a: 1, b: ['x', 'y'] })).toBe('OK');
    expect(await redis.get<{ a: number; b: string[] }>(`${k}:obj`)).toEqual({ a: 1, b: ['x', 'y'] });
    expect(await redis.get(`${k}:missing`)).toBeNull();
    expect(await redis.incr(`${k}:n`)).toBe(1);
    expect(await redis.incr(`${k}:n`)).toBe(2);
    expect(await redis.incrby(`${k}:n`, 40)).toBe(42);
    expect(await redis.get<number>(`${k}:n`)).toBe(42);
    expect(await redis.ttl(`${k}:n`)).toBe(-1);
    expect(await redis.expire(`${k}:n`, 100)).toBe(1);
    const ttl = await redis.ttl(`${k}:n`);
    expect(ttl).toBeGreaterThan(90);
    expect(ttl).toBeLessThanOrEqual(100);
    expect(await redis.set(`${k}:px`, 'v', { px: 50 })).toBe('OK');
    await sleep(120);
    expect(await redis.get(`${k}:px`)).toBeNull();
    expect(await redis.del(`${k}:s`, `${k}:obj`, `${k}:missing`)).toBe(2);
    expect(await redis.exists(`${k}:s`)).toBe(0);
  });

  it('explicit pipeline and multi', async () => {
    const redis = client();
    const k = `client:${randomUUID()}`;
    const res = await redis
      .pipeline()
      .set(`${k}:a`, 'one')
      .incr(`${k}:b`)
      .incr(`${k}:b`)
      .get(`${k}:a`)
      .rpush(`${k}:l`, 'x', 'ý')
      .lrange(`${k}:l`, 0, -1)
      .exec();
    expect(res).toEqual(['OK', 1, 2, 'one', 2, ['x', 'ý']]);

    const tx = await redis.multi().set(`${k}:t`, 10).incrby(`${k}:t`, 5).get(`${k}:t`).exec();
    expect(tx).toEqual(['OK', 15, 15]);

    await expect(redis.pipeline().set(`${k}:w`, 'str').incr(`${k}:w`).exec()).rejects.toThrow(
      /ERR value is not an integer/,
    );
  });

  it('surfaces command errors', async () => {
    const redis = client();
    const k = `client:${randomUUID()}`;
    await redis.set(k, 'text');
    await expect(redis.incr(k)).rejects.toThrow(/ERR value is not an integer or out of range/);
  });

  it(`concurrent commands take ${autoPipelined ? 'one batched' : 'separate'} round trip(s)`, async () => {
    const redis = client();
    const k = `client:${randomUUID()}`;
    await redis.set(k, 'v');
    const before = standin.requestCount();
    const values = await Promise.all([redis.get(k), redis.get(k), redis.get(k), redis.get(k), redis.get(k)]);
    expect(values).toEqual(['v', 'v', 'v', 'v', 'v']);
    expect(standin.requestCount() - before).toBe(autoPipelined ? 1 : 5);
  });

  it('wrong token → Unauthorized error', async () => {
    const bad = new Redis({ url: standin.url, token: 'wrong-token', ...extra });
    await expect(bad.get('anything')).rejects.toThrow(/Unauthorized/);
  });
});

describe('@upstash/ratelimit against the stand-in', () => {
  const WINDOW_MS = 10_000;
  const newRedis = (token = TOKEN): Redis => new Redis({ url: standin.url, token });

  for (const [name, limiter] of [
    ['slidingWindow', Ratelimit.slidingWindow(5, '10 s')],
    ['fixedWindow', Ratelimit.fixedWindow(5, '10 s')],
  ] as const) {
    it(`${name}(5, "10 s"): exactly 5 of 8 succeed; identifiers are independent`, async () => {
      const ratelimit = new Ratelimit({
        redis: newRedis(),
        limiter,
        prefix: `rl:${randomUUID()}`,
        ephemeralCache: false, // make every call reach Redis
      });
      await awaitFreshWindow(WINDOW_MS);
      const start = Date.now();
      const results = [];
      for (let i = 0; i < 8; i++) results.push(await ratelimit.limit('user-a'));

      expect(results.map((r) => r.success)).toEqual([true, true, true, true, true, false, false, false]);
      expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0, 0]);
      expect(results.every((r) => r.limit === 5)).toBe(true);
      expect(results.some((r) => r.reason === 'timeout')).toBe(false);
      const expectedReset = (Math.floor(start / WINDOW_MS) + 1) * WINDOW_MS;
      for (const r of results) {
        expect(r.reset).toBe(expectedReset);
        expect(r.reset).toBeGreaterThan(start);
        expect(r.reset).toBeLessThanOrEqual(start + WINDOW_MS);
      }

      const other = await ratelimit.limit('user-b');
      expect(other.success).toBe(true);
      expect(other.remaining).toBe(4);

      const remaining = await ratelimit.getRemaining('user-a');
      expect(remaining.remaining).toBe(0);
      expect(remaining.limit).toBe(5);
    });
  }

  it('after the first NOSCRIPT → EVAL fallback, each limit() is one EVALSHA round trip', async () => {
    // Fresh Redis + stand-in so the script is certainly not cached yet.
    const freshRedis = await startRedisServer();
    const fresh = await startUpstashStandin({ redisPort: freshRedis.port, token: TOKEN });
    try {
      const ratelimit = new Ratelimit({
        redis: new Redis({ url: fresh.url, token: TOKEN }),
        limiter: Ratelimit.slidingWindow(5, '10 s'),
        prefix: `rl:${randomUUID()}`,
        ephemeralCache: false,
      });
      await awaitFreshWindow(WINDOW_MS);
      let before = fresh.requestCount();
      expect((await ratelimit.limit('u')).remaining).toBe(4);
      expect(fresh.requestCount() - before).toBe(2); // EVALSHA (NOSCRIPT) + EVAL
      before = fresh.requestCount();
      expect((await ratelimit.limit('u')).remaining).toBe(3);
      expect((await ratelimit.limit('u')).remaining).toBe(2);
      expect(fresh.requestCount() - before).toBe(2); // EVALSHA translated to the rewritten script's SHA
    } finally {
      await fresh.close();
      await freshRedis.close();
    }
  });

  it('wrong token → limit() rejects with Unauthorized', async () => {
    const ratelimit = new Ratelimit({
      redis: newRedis('wrong-token'),
      limiter: Ratelimit.slidingWindow(5, '10 s'),
      prefix: `rl:${randomUUID()}`,
    });
    await expect(ratelimit.limit('user-a')).rejects.toThrow(/Unauthorized/);
  });

  for (const [name, makeLimiter] of [
    ['slidingWindow', () => Ratelimit.slidingWindow(10, '10 s')],
    ['fixedWindow', () => Ratelimit.fixedWindow(10, '10 s')],
  ] as const) {
    it(`${name}: two instances with separate clients share one limit (2×15 concurrent → exactly 10)`, async () => {
      const prefix = `rl:${randomUUID()}`;
      // Two "server processes": separate Redis clients, separate Ratelimit instances, same prefix.
      const a = new Ratelimit({ redis: newRedis(), limiter: makeLimiter(), prefix });
      const b = new Ratelimit({ redis: newRedis(), limiter: makeLimiter(), prefix });
      await awaitFreshWindow(WINDOW_MS);
      const calls = [];
      for (let i = 0; i < 15; i++) calls.push(a.limit('shared-user'), b.limit('shared-user'));
      const results = await Promise.all(calls);

      expect(results.some((r) => r.reason === 'timeout')).toBe(false);
      expect(results.filter((r) => r.success)).toHaveLength(10);
      expect(results.filter((r) => !r.success)).toHaveLength(20);
      // Each successful call saw a distinct remaining count 9..0.
      expect(
        results
          .filter((r) => r.success)
          .map((r) => r.remaining)
          .sort((x, y) => x - y),
      ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      // Both instances now agree the identifier is exhausted.
      expect((await a.getRemaining('shared-user')).remaining).toBe(0);
      expect((await b.getRemaining('shared-user')).remaining).toBe(0);
      // An unrelated identifier is unaffected.
      expect((await a.limit('someone-else')).remaining).toBe(9);
    });
  }
});
