/**
 * A stop for a conversation whose turn is still being admitted (registered with
 * TurnTracker.pending, not tracked yet) aborts it through its controller, whether the stop
 * comes from this node (stopConversationTurn) or another (stopWhenStarted); a released
 * registration is not stopped any more.
 */
import { describe, expect, it } from 'vitest';
import { stopConversationTurn, stopConversationTurnWithReply } from '../../src/chat/stop-turn.js';
import type { TurnAbort } from '../../src/chat/turn-abort.js';
import { TurnTracker } from '../../src/chat/turn-tracker.js';

const never = new Promise<void>(() => {});

describe('TurnTracker.pending', () => {
  it('lets a stop on this node abort a turn being admitted, under any of its keys', async () => {
    const turns = new TurnTracker();
    const controller = new AbortController();
    turns.pending(['anon:a/c1', 'ip:1.2.3.4/c1'], controller, Promise.resolve());
    expect(await stopConversationTurn({ turns, coordinator: undefined }, 'ip:1.2.3.4/c1')).toBe(true);
    expect(controller.signal.aborted).toBe(true);
    expect((controller.signal.reason as TurnAbort).kind).toBe('stop');
  });

  it('lets a stop from another node abort it too', () => {
    const turns = new TurnTracker();
    const controller = new AbortController();
    turns.pending(['u1/c1'], controller, never);
    turns.stopWhenStarted('u1/c1');
    expect(controller.signal.aborted).toBe(true);
  });

  it('forgets a released turn, and stops nothing of another conversation', async () => {
    const turns = new TurnTracker();
    const a = new AbortController();
    const b = new AbortController();
    const release = turns.pending(['u1/a'], a, never);
    turns.pending(['u1/b'], b, never);
    release();
    expect(await stopConversationTurn({ turns, coordinator: undefined }, 'u1/a')).toBe(false);
    expect(a.signal.aborted).toBe(false);
    expect(b.signal.aborted).toBe(false);
  });

  it('waits (bounded) for a stopped pending turn without a kept log, naming no reply', async () => {
    const turns = new TurnTracker();
    const controller = new AbortController();
    turns.pending(['u1/c1'], controller, never);
    const started = performance.now();
    const result = await stopConversationTurnWithReply({ turns, coordinator: undefined, streams: undefined }, 'u1/c1', 100);
    expect(result).toEqual({ stopped: true, messageId: null });
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
