import { describe, expect, it } from 'vitest';
import { StartGate } from '../../src/chat/start-gate.js';
import { ReadScheduler } from '../../src/models/read-scheduler.js';
import { PromMetrics } from '../../src/node/prom-metrics.js';
import { parseExposition } from '../helpers/prometheus.js';

const nextPass = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

describe('gateway_turn_starts_waiting', () => {
  it('reads the start gate at scrape time: a burst past TURN_STARTS_PER_TICK, then nothing once it is through', async () => {
    const gate = new StartGate(2);
    const metrics = new PromMetrics({ defaultMetrics: false });
    metrics.watch({ socketConnections: () => ({}), realtimeSessions: () => 0, turnStartsWaiting: () => gate.waiting, streamReadsWaiting: () => 0 });
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

describe('gateway_stream_reads_waiting', () => {
  it('reads the read scheduler at scrape time: streams held past their slice, then nothing once they had their turn', async () => {
    const reads = new ReadScheduler(1);
    const metrics = new PromMetrics({ defaultMetrics: false });
    metrics.watch({ socketConnections: () => ({}), realtimeSessions: () => 0, turnStartsWaiting: () => 0, streamReadsWaiting: () => reads.waiting });
    const waiting = async () => parseExposition(await metrics.render()).value('gateway_stream_reads_waiting');

    expect(await waiting()).toBe(0);
    // The pass's first read starts its slice; once it is spent, reads are held.
    expect(reads.admit()).toBe(true);
    const spent = performance.now() + 2;
    while (performance.now() < spent);
    expect(reads.admit()).toBe(false);
    const served: number[] = [];
    for (let i = 0; i < 3; i++) reads.wait(() => served.push(i));
    // While streams wait, no read jumps the queue, whatever the clock says.
    expect(reads.admit()).toBe(false);
    expect(await waiting()).toBe(3);
    for (let pass = 0; pass < 10 && served.length < 3; pass++) await nextPass();
    expect(served).toEqual([0, 1, 2]);
    expect(await waiting()).toBe(0);
    expect(reads.admit()).toBe(true);
  });
});
