import { describe, expect, it } from 'vitest';
import { StartGate } from '../../src/chat/start-gate.js';
import { PromMetrics } from '../../src/node/prom-metrics.js';
import { parseExposition } from '../helpers/prometheus.js';

const nextPass = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

describe('gateway_turn_starts_waiting', () => {
  it('reads the start gate at scrape time: a burst past TURN_STARTS_PER_TICK, then nothing once it is through', async () => {
    const gate = new StartGate(2);
    const metrics = new PromMetrics({ defaultMetrics: false });
    metrics.watch({ socketConnections: () => ({}), realtimeSessions: () => 0, turnStartsWaiting: () => gate.waiting });
    const waiting = async () => parseExposition(await metrics.render()).value('gateway_turn_starts_waiting');

    expect(await waiting()).toBe(0);
    const started: number[] = [];
    const burst = Array.from({ length: 7 }, (_, i) => Promise.resolve(gate.admit()).then(() => started.push(i)));
    expect(await waiting()).toBe(5); // two go through in this pass
    for (let pass = 0; pass < 10 && started.length < 7; pass++) await nextPass();
    await Promise.all(burst);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(await waiting()).toBe(0);
  });
});
