import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { InProcessTurnStreams } from '../../src/chat/turn-streams.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('a running turn log', () => {
  it('holds a reference per token, not an object: under 16 bytes a delta while the turn runs, and replays them all', async () => {
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 64 * 1024 * 1024 });
    const token = ' tok'; // one string for every delta: what is measured is what the log adds per event
    // Many deltas, so that what else the heap gains meanwhile (a few KB of compiled code) is a small share of each.
    const count = 200_000;
    gc();
    gc();
    const before = process.memoryUsage().heapUsed;
    const log = streams.open('o/m');
    log.append({ type: 'start', conversationId: 'm', conversationCreated: true, userMessageId: 'u', content: 'hi', model: 'local' });
    for (let i = 0; i < count; i++) log.append({ type: 'delta', text: token });
    gc();
    gc();
    const perDelta = (process.memoryUsage().heapUsed - before) / count;
    expect(perDelta).toBeLessThan(16);

    // Still running: a follower gets every event, as recorded.
    const controller = new AbortController();
    let deltas = 0;
    let first: unknown;
    const following = (async () => {
      for await (const { seq, event } of streams.follow('o/m', log.turnId, 0, controller.signal)) {
        if (seq === 1) first = event;
        else if (event.type === 'delta' && event.text === token) deltas++;
        if (seq === count + 1) controller.abort();
      }
    })();
    await following;
    expect(first).toMatchObject({ type: 'start', conversationId: 'm' });
    expect(deltas).toBe(count);
  });
});
