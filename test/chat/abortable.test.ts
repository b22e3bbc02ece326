import { describe, expect, it } from 'vitest';
import { abortable } from '../../src/chat/abortable.js';

/** A source that yields `n` items and then waits forever, recording whether it was told to return. */
function stuckSource(n: number) {
  const state = { returned: false };
  const iterable: AsyncIterable<number> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: () => (i < n ? Promise.resolve({ done: false, value: i++ }) : new Promise<IteratorResult<number>>(() => {})),
        return: async () => {
          state.returned = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return { iterable, state };
}

describe('abortable', () => {
  it('passes items through and finishes with the source', async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    const out: number[] = [];
    for await (const x of abortable(three(), new AbortController().signal)) out.push(x);
    expect(out).toEqual([1, 2, 3]);
  });

  it('throws the abort reason while the source is stuck waiting, and tells it to return', async () => {
    const { iterable, state } = stuckSource(2);
    const controller = new AbortController();
    const reason = new Error('stop');
    const out: number[] = [];
    setTimeout(() => controller.abort(reason), 20);
    await expect(
      (async () => {
        for await (const x of abortable(iterable, controller.signal)) out.push(x);
      })(),
    ).rejects.toBe(reason);
    expect(out).toEqual([0, 1]);
    expect(state.returned).toBe(true);
  });

  it('throws at once when the abort came while the consumer held an item', async () => {
    const { iterable } = stuckSource(5);
    const controller = new AbortController();
    const out: number[] = [];
    await expect(
      (async () => {
        for await (const x of abortable(iterable, controller.signal)) {
          out.push(x);
          if (x === 1) controller.abort('held');
        }
      })(),
    ).rejects.toBe('held');
    expect(out).toEqual([0, 1]);
  });

  it('refuses to start on an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort('early');
    const { iterable } = stuckSource(1);
    await expect(abortable(iterable, controller.signal).next()).rejects.toBe('early');
  });
});
