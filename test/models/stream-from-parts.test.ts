import { describe, expect, it } from 'vitest';
import { streamFromParts, type ModelStreamPart } from '../../src/models/language-model.js';

/** A source that yields `n` text parts and then waits forever, recording whether it was told to return. */
function stuckSource(n: number) {
  const state = { returned: false };
  const iterable: AsyncIterable<ModelStreamPart> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: () =>
          i < n ? Promise.resolve({ done: false, value: { type: 'text-delta', text: String(i++) } as ModelStreamPart }) : new Promise<IteratorResult<ModelStreamPart>>(() => {}),
        return: async () => {
          state.returned = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return { iterable, state };
}

describe('streamFromParts (a ModelStream over an iterator of parts)', () => {
  it('pushes the text and settles with the finish', async () => {
    async function* parts(): AsyncGenerator<ModelStreamPart> {
      yield { type: 'text-delta', text: 'a' };
      yield { type: 'text-delta', text: 'b' };
      yield { type: 'finish', finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 2 } };
    }
    const out: string[] = [];
    const stream = streamFromParts(parts(), (t) => out.push(t), new AbortController().signal);
    expect(await stream.done).toEqual({ finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 2 } });
    expect(out).toEqual(['a', 'b']);
  });

  it('rejects with the abort reason while the source is stuck waiting, and tells it to return', async () => {
    const { iterable, state } = stuckSource(2);
    const controller = new AbortController();
    const reason = new Error('stop');
    const out: string[] = [];
    setTimeout(() => controller.abort(reason), 20);
    await expect(streamFromParts(iterable, (t) => out.push(t), controller.signal).done).rejects.toBe(reason);
    expect(out).toEqual(['0', '1']);
    expect(state.returned).toBe(true);
  });

  it('stops pulling while paused', async () => {
    const { iterable } = stuckSource(5);
    const out: string[] = [];
    const stream = streamFromParts(
      iterable,
      (t) => {
        out.push(t);
        if (t === '1') stream.pause();
      },
      new AbortController().signal,
    );
    await new Promise((r) => setTimeout(r, 30));
    expect(out).toEqual(['0', '1']);
    stream.resume();
    await new Promise((r) => setTimeout(r, 30));
    expect(out).toEqual(['0', '1', '2', '3', '4']);
  });

  it('refuses to start on an aborted signal, and a source without a finish is an error', async () => {
    const controller = new AbortController();
    controller.abort('early');
    await expect(streamFromParts(stuckSource(1).iterable, () => {}, controller.signal).done).rejects.toBe('early');
    async function* noFinish(): AsyncGenerator<ModelStreamPart> {
      yield { type: 'text-delta', text: 'x' };
    }
    await expect(streamFromParts(noFinish(), () => {}, new AbortController().signal).done).rejects.toThrow(/without a finish/);
  });
});
