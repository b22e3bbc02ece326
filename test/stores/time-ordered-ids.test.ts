import { beforeEach, describe, expect, it, vi } from 'vitest';
import type * as Ids from '../../src/stores/conversation-store.js';

let timeOrderedId: typeof Ids.timeOrderedId;
let monotonicNow: typeof Ids.monotonicNow;

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const timeOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

describe('message ids and dates', () => {
  // The generators keep state for the process (the last id's time, the last date): each test
  // starts from a fresh module, so what one test does to that state (a clock 60 s ahead) cannot
  // decide another's outcome, in any order.
  beforeEach(async () => {
    vi.resetModules();
    ({ timeOrderedId, monotonicNow } = await import('../../src/stores/conversation-store.js'));
  });

  it('ids are UUIDv7, strictly increasing in the process however many share a millisecond', () => {
    const ids = Array.from({ length: 50_000 }, () => timeOrderedId());
    for (const id of ids) expect(id).toMatch(UUID_V7);
    let ties = 0;
    for (let i = 1; i < ids.length; i++) {
      expect(ids[i]! > ids[i - 1]!).toBe(true);
      if (timeOf(ids[i]!) === timeOf(ids[i - 1]!)) ties++;
    }
    expect(ties).toBeGreaterThan(1_000); // thousands were made in the same millisecond
    // The id's time is the clock's: it moves on by itself only past 2,048-4,096 ids in one millisecond.
    expect(timeOf(ids.at(-1)!)).toBeLessThanOrEqual(Date.now() + 25);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('a clock that steps back, or a millisecond that overflows its counter, still gives increasing ids', () => {
    const now = Date.now() + 60_000; // ahead of the clock
    const first = timeOrderedId(now);
    const back = timeOrderedId(now - 5_000); // the clock stepped back 5 s
    expect(back > first).toBe(true);
    expect(timeOf(back)).toBe(now);
    // 4,096 more in the same millisecond: the counter (12 bits) overflows into the next one.
    let last = back;
    for (let i = 0; i < 4_096; i++) {
      const id = timeOrderedId(now);
      expect(id > last).toBe(true);
      last = id;
    }
    expect(timeOf(last)).toBe(now + 1);
  });

  it('dates never go back and never run ahead of the clock', () => {
    const dates = Array.from({ length: 100_000 }, () => monotonicNow());
    const after = Date.now();
    for (let i = 1; i < dates.length; i++) expect(dates[i]!).toBeGreaterThanOrEqual(dates[i - 1]!);
    // Strictly increasing dates (1 ms per tie) put the last of these 100,000 calls ~100 s ahead.
    expect(dates.at(-1)!).toBeLessThanOrEqual(after);
  });
});
