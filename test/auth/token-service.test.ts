import { afterEach, describe, expect, it, vi } from 'vitest';
import { TokenService } from '../../src/auth/token-service.js';
import { AnonymousSessions, ANONYMOUS_COOKIE } from '../../src/auth/anonymous-sessions.js';

const secret = new TextEncoder().encode('a-test-secret-of-enough-length-0123456789');

describe('TokenService: remembered verifications never outlive the token', () => {
  afterEach(() => vi.useRealTimers());

  it('a token verified once is refused as expired after its exp, from the cache as from a fresh check', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const tokens = new TokenService({ secret, ttlSeconds: 60, clockSkewSeconds: 5, issuer: 'test' });
    const token = await tokens.issue({ id: 'u1', email: 'u1@example.com' }, 'sid-1');
    const first = await tokens.verify(token);
    expect(first).toEqual({ userId: 'u1', email: 'u1@example.com', sessionId: 'sid-1', source: 'local' });
    vi.setSystemTime(new Date('2026-01-01T00:01:04Z')); // within exp + skew
    expect(await tokens.verify(token)).toEqual(first);
    vi.setSystemTime(new Date('2026-01-01T00:01:06Z')); // past exp + skew
    await expect(tokens.verify(token)).rejects.toThrow(/token expired/);
    await expect(tokens.verify(token)).rejects.toThrow(/token expired/); // no longer cached: jose says so too
    // A second service with the same secret never saw it: the same answer.
    await expect(new TokenService({ secret, ttlSeconds: 60, clockSkewSeconds: 5, issuer: 'test' }).verify(token)).rejects.toThrow(/token expired/);
  });

  it('a verified token does not vouch for a tampered copy of itself', async () => {
    const tokens = new TokenService({ secret, ttlSeconds: 60, clockSkewSeconds: 5, issuer: 'test' });
    const token = await tokens.issue({ id: 'u1', email: 'u1@example.com' }, 'sid-1');
    await tokens.verify(token);
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'u2' })).toString('base64url')}.${s}`;
    await expect(tokens.verify(forged)).rejects.toThrow(/Invalid token/);
    const flipped = `${h}.${p}.${s.slice(0, -2)}${s.at(-2) === 'A' ? 'B' : 'A'}${s.at(-1)}`;
    await expect(tokens.verify(flipped)).rejects.toThrow(/Invalid token/);
    await expect(tokens.verify(token)).resolves.toMatchObject({ userId: 'u1' });
  });
});

describe('AnonymousSessions', () => {
  const sessions = new AnonymousSessions(secret);
  const cookie = (value: string) => `${ANONYMOUS_COOKIE}=${value}`;

  it('reads back what it issued, and nothing it did not sign', () => {
    const { id, value } = sessions.issue();
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(sessions.read(`theme=dark; ${cookie(value)}`)).toBe(id);
    expect(new AnonymousSessions(new TextEncoder().encode('another secret')).read(cookie(value))).toBeNull();
    const [, signature] = value.split('.') as [string, string];
    const other = sessions.issue();
    expect(sessions.read(cookie(`${other.id}.${signature}`))).toBeNull(); // someone else's signature
    expect(sessions.read(cookie(`${id}.${signature.slice(0, -1)}`))).toBeNull(); // truncated
    expect(sessions.read(cookie(`${id}.${'A'.repeat(43)}`))).toBeNull();
    expect(sessions.read(cookie(id))).toBeNull();
    expect(sessions.read(cookie(`${'x'.repeat(200)}.${signature}`))).toBeNull();
    expect(sessions.read(undefined)).toBeNull();
    expect(new Set(Array.from({ length: 100 }, () => sessions.issue().id)).size).toBe(100);
  });

  it('issues cookies made ahead in batches that are each unique and each readable', () => {
    const fresh = new AnonymousSessions(secret);
    // Several batches of cookies made ahead (64 at a time), across their boundaries.
    const issued = Array.from({ length: 300 }, () => fresh.issue());
    expect(new Set(issued.map((i) => i.id)).size).toBe(300);
    expect(new Set(issued.map((i) => i.value)).size).toBe(300);
    for (const { id, value } of issued) {
      expect(value.startsWith(`${id}.`)).toBe(true);
      expect(sessions.read(cookie(value))).toBe(id); // another instance on the same secret: signed, not remembered
    }
  });

  it('remembers a checked cookie by its exact value only, and never a forged one', () => {
    const fresh = new AnonymousSessions(secret);
    const { id, value } = fresh.issue();
    expect(fresh.read(cookie(value))).toBe(id);
    expect(fresh.read(cookie(value))).toBe(id); // the second read is the remembered one
    const [, signature] = value.split('.') as [string, string];
    const forged = `${'B'.repeat(22)}.${signature}`;
    expect(fresh.read(cookie(forged))).toBeNull();
    expect(fresh.read(cookie(forged))).toBeNull();
    expect(fresh.read(cookie(`${value}x`))).toBeNull();
    // Over its bound, the oldest checked cookie is forgotten, and still reads (checked again).
    const many = Array.from({ length: 4200 }, () => fresh.issue());
    for (const m of many) expect(fresh.read(cookie(m.value))).toBe(m.id);
    expect(fresh.read(cookie(value))).toBe(id);
  });
});
