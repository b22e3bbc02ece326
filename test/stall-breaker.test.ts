import { describe, expect, it } from 'vitest';
import { StallBreaker } from '../src/stall-breaker.js';

describe('StallBreaker', () => {
  it('skips the service after a failure, lets one trial through after the cool-off, and closes when it answers', () => {
    const b = new StallBreaker(1_000);
    expect(b.skip(0)).toBe(false);
    expect(b.failed(10)).toBe(true);
    expect(b.failed(20)).toBe(false); // already open: not a new stall
    expect(b.open).toBe(true);
    expect(b.skip(500)).toBe(true);
    expect(b.skip(1_019)).toBe(true);
    expect(b.skip(1_020)).toBe(false); // the trial
    expect(b.skip(1_021)).toBe(true); // others wait for it
    expect(b.failed(1_500)).toBe(false); // still open: no new stall reported
    expect(b.skip(2_499)).toBe(true);
    expect(b.skip(2_500)).toBe(false); // the next trial
    expect(b.succeeded()).toBe(true);
    expect(b.open).toBe(false);
    expect(b.skip(2_501)).toBe(false);
    expect(b.succeeded()).toBe(false);
  });

  it('a trial that ends without an answer either way (released) hands the trial to the next caller', () => {
    const b = new StallBreaker(100);
    b.failed(0);
    expect(b.skip(100)).toBe(false);
    expect(b.skip(101)).toBe(true);
    b.released();
    expect(b.skip(102)).toBe(false);
    expect(b.open).toBe(true);
  });
});
