import { describe, expect, it } from 'vitest';
import { EXACT_COUNT_MAX_CHARS, countTokens, countTokensBounded } from '../../src/models/tokenizer.js';

describe('countTokensBounded', () => {
  it('is exact up to EXACT_COUNT_MAX_CHARS', () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(200);
    expect(text.length).toBeLessThanOrEqual(EXACT_COUNT_MAX_CHARS);
    expect(countTokensBounded(text)).toBe(countTokens(text));
  });

  it('beyond it, answers an upper bound (UTF-8 bytes) without tokenising: megabytes of a stalled reply cost milliseconds', () => {
    for (const text of [' w123'.repeat(200_000), 'é'.repeat(300_000), '😀'.repeat(100_000), 'x'.repeat(EXACT_COUNT_MAX_CHARS + 1)]) {
      const started = performance.now();
      const bounded = countTokensBounded(text);
      const ms = performance.now() - started;
      expect(bounded).toBe(Buffer.byteLength(text, 'utf8'));
      expect(ms).toBeLessThan(50);
    }
    // An upper bound: never below the exact count (checked on a size that is still quick to count exactly).
    const sample = 'naïve café 😀 text '.repeat(2_000);
    expect(sample.length).toBeGreaterThan(EXACT_COUNT_MAX_CHARS);
    expect(countTokensBounded(sample)).toBeGreaterThanOrEqual(countTokens(sample));
  });
});
