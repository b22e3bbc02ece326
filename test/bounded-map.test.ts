import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../src/bounded-map.js';

describe('BoundedMap as the in-process caches use it', () => {
  it('keeps at most max entries, dropping the oldest, and a key set again becomes the newest', () => {
    const map = new BoundedMap<string, number>(3);
    for (const [i, key] of ['a', 'b', 'c'].entries()) map.set(key, i);
    map.set('a', 10); // set again: now the newest, the size unchanged
    expect([...map]).toEqual([['b', 1], ['c', 2], ['a', 10]]);
    map.set('d', 3); // over the bound: the oldest (b) goes
    expect([...map]).toEqual([['c', 2], ['a', 10], ['d', 3]]);
    for (let i = 0; i < 1000; i++) map.set(`k${i}`, i);
    expect([...map.keys()]).toEqual(['k997', 'k998', 'k999']);
  });
});

describe('BoundedMap', () => {
  it('is a Map (what @upstash/ratelimit checks before it takes one as its cache) that keeps at most max entries, dropping the oldest', () => {
    const map = new BoundedMap<string, number>(3);
    expect(map instanceof Map).toBe(true);
    map.set('a', 1).set('b', 2).set('c', 3);
    map.set('a', 10); // set again: the newest, the size unchanged
    expect([...map]).toEqual([['b', 2], ['c', 3], ['a', 10]]);
    map.set('d', 4);
    expect([...map]).toEqual([['c', 3], ['a', 10], ['d', 4]]);
    for (let i = 0; i < 10_000; i++) map.set(`id${i}`, i);
    expect(map.size).toBe(3);
    expect(map.get('id9999')).toBe(9999);
    expect(map.has('a')).toBe(false);
  });
});
