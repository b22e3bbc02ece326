import { describe, expect, it } from 'vitest';
import { StartGate } from '../../src/chat/start-gate.js';
import { passCounter } from '../helpers/wait.js';

/** Resolves after `passes` turns of the event loop. */
const passes = (n: number) => new Promise<void>((resolve) => {
  const step = (left: number) => (left === 0 ? resolve() : setImmediate(() => step(left - 1)));
  step(n);
});

describe('StartGate', () => {
  it('lets perPass starts through in a pass, queues the rest in arrival order, and lets the loop turn in between', async () => {
    const gate = new StartGate(3);
    const order: number[] = [];
    const passOf: number[] = [];
    const passes = passCounter();
    let timerRanAt = -1;
    setTimeout(() => (timerRanAt = order.length), 0);
    // Due before the burst begins (a timer waits at least 1 ms; warm, the whole burst can take less).
    const due = Date.now() + 2;
    while (Date.now() < due);

    const starts = Array.from({ length: 10 }, (_, i) =>
      (async () => {
        const wait = gate.admit();
        if (wait) await wait;
        order.push(i);
        passOf.push(passes.now());
      })(),
    );
    expect(order).toEqual([0, 1, 2]); // room for three in this pass: they did not wait
    expect(gate.waiting).toBe(7);
    await Promise.all(starts);
    passes.stop();

    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const perPass = new Map<number, number>();
    for (const p of passOf) perPass.set(p, (perPass.get(p) ?? 0) + 1);
    expect(Math.max(...perPass.values())).toBeLessThanOrEqual(3);
    expect(perPass.size).toBeGreaterThanOrEqual(4);
    // A timer due at the start ran before the burst was through.
    expect(timerRanAt).toBeGreaterThanOrEqual(0);
    expect(timerRanAt).toBeLessThan(10);
    expect(gate.waiting).toBe(0);
  });

  it('a start arriving while others wait queues behind them; with room and nobody waiting it does not wait at all', async () => {
    const gate = new StartGate(2);
    await passes(2);
    expect(gate.admit()).toBeUndefined();
    expect(gate.admit()).toBeUndefined();
    const third = gate.admit();
    expect(third).toBeInstanceOf(Promise);
    const fourth = gate.admit(); // queued behind the third even if a new pass had room
    const done: string[] = [];
    await Promise.all([third!.then(() => done.push('third')), fourth!.then(() => done.push('fourth'))]);
    expect(done).toEqual(['third', 'fourth']);
    await passes(3);
    expect(gate.admit()).toBeUndefined();
  });

  it('0 lets everything through at once', () => {
    const gate = new StartGate(0);
    for (let i = 0; i < 100; i++) expect(gate.admit()).toBeUndefined();
  });
});
