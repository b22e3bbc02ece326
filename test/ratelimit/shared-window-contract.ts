/** What every Redis-backed limiter (Upstash REST, or the REDIS_URL connection) must do: one sliding-window contract. */
import { expect, it } from 'vitest';
import type { RateLimiter } from '../../src/ratelimit/rate-limiter.js';

/** `make(windowMs)`: a fresh limiter (its own key prefix) whose configured window is `windowMs`. */
export function sharedWindowContract(make: (windowMs: number) => RateLimiter): void {
  it('counts per key and refuses past the limit, with when to retry', async () => {
    const limiter = make(60_000);
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await limiter.consume('chat:ip:1.2.3.4', 3));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(decisions.map((d) => d.remaining)).toEqual([2, 1, 0, 0]);
    expect(decisions[3]!.reset).toBeGreaterThan(Date.now());
    expect(decisions[3]!.reset - Date.now()).toBeLessThanOrEqual(60_000);
    expect((await limiter.consume('chat:ip:5.6.7.8', 3)).allowed).toBe(true);
  });

  it('a window given per call is counted apart from the configured one', async () => {
    const limiter = make(900_000);
    const decisions = [];
    for (let i = 0; i < 3; i++) decisions.push(await limiter.consume('chat:key:k', 2, 60_000));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, false]);
    expect(decisions[2]!.reset - Date.now()).toBeLessThanOrEqual(60_000);
    expect((await limiter.consume('chat:key:k', 2)).allowed).toBe(true);
  });
}

/**
 * A chat request while the shared limiter is down: refused with RATE_LIMIT (503, Retry-After 5)
 * under RATE_LIMIT_FAIL_CLOSED, let through and streamed otherwise.
 */
export async function expectChatDuringOutage(chat: Response, failClosed: boolean): Promise<void> {
  if (failClosed) {
    expect(chat.status).toBe(503);
    expect(chat.headers.get('retry-after')).toBe('5');
    expect(await chat.json()).toMatchObject({ code: 'RATE_LIMIT' });
  } else {
    expect(chat.status).toBe(200);
    await chat.text();
  }
}
