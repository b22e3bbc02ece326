import { withDeadline } from '../stall-breaker.js';
import type { TurnCoordinator } from './turn-coordinator.js';
import type { TurnTracker } from './turn-tracker.js';
import type { TurnStreams } from './turn-streams.js';

type StopServices = { turns: TurnTracker; coordinator: TurnCoordinator | undefined };

/** How long a stop waits for the end of a turn it cannot await directly (another node's, one still being admitted) to name the stored reply. */
export const STOP_END_WAIT_MS = 5_000;

/**
 * Stops a conversation's running turn wherever it runs: here at once (resolving once its partial
 * reply is stored), on another node through the coordinator. A turn this node is still admitting
 * for that conversation is stopped too (it starts stopped). True when a turn was running or admitted.
 */
export async function stopConversationTurn(services: StopServices, conversationKey: string): Promise<boolean> {
  const { turns, coordinator } = services;
  if (turns.isRunning(conversationKey)) return (await turns.abortConversation(conversationKey, 'stop')) > 0;
  if (turns.stopPending(conversationKey).length > 0) return true;
  if (!coordinator) return false;
  const running = await coordinator.isRunning(conversationKey).catch(() => false);
  if (running) await coordinator.publishStop(conversationKey).catch(() => undefined);
  return running;
}

/**
 * {@link stopConversationTurn}, then the id of the reply the stopped turn stored, read from its
 * recorded end (null when the turn's events are not kept, or its end did not come within
 * `waitMs`: another node's turn, one that was still being admitted).
 */
export async function stopConversationTurnWithReply(
  services: StopServices & { streams: TurnStreams | undefined },
  conversationKey: string,
  waitMs = STOP_END_WAIT_MS,
): Promise<{ stopped: boolean; messageId: string | null }> {
  const { turns, coordinator, streams } = services;
  // A turn running here: its log is open (it opens as the turn is tracked), and the stop resolves once it is stored.
  if (turns.isRunning(conversationKey)) {
    // Aborted at once (the call aborts before it waits); the log is read while the reply is stored.
    const stopping = turns.abortConversation(conversationKey, 'stop');
    const latest = await streams?.latest(conversationKey).catch(() => undefined);
    const stopped = (await stopping) > 0;
    return { stopped, messageId: stopped && latest ? await replyOf(streams!, conversationKey, latest.turnId, waitMs) : null };
  }
  const pending = turns.stopPending(conversationKey);
  if (pending.length > 0) {
    // Its request ends once the stopped turn is stored, or once it was refused (no new log then).
    const before = await streams?.latest(conversationKey).catch(() => undefined);
    const ended = await within(Promise.all(pending).then(() => true), waitMs);
    const latest = ended ? await streams?.latest(conversationKey).catch(() => undefined) : undefined;
    const fresh = latest?.ended && latest.turnId !== before?.turnId;
    return { stopped: true, messageId: fresh ? await replyOf(streams!, conversationKey, latest.turnId, waitMs) : null };
  }
  if (!coordinator) return { stopped: false, messageId: null };
  const running = await coordinator.isRunning(conversationKey).catch(() => false);
  if (!running) return { stopped: false, messageId: null };
  // Another node's turn: its log (shared through the cluster) ends with the reply it stored.
  const latest = await streams?.latest(conversationKey).catch(() => undefined);
  await coordinator.publishStop(conversationKey).catch(() => undefined);
  return { stopped: true, messageId: latest && !latest.ended ? await replyOf(streams!, conversationKey, latest.turnId, waitMs) : null };
}

/** The stored reply's id from the turn's recorded end, waiting up to `waitMs` for that end. */
async function replyOf(streams: TurnStreams, conversationKey: string, turnId: string, waitMs: number): Promise<string | null> {
  const signal = AbortSignal.timeout(waitMs);
  try {
    const extent = await streams.extent(conversationKey, turnId);
    if (!extent) return null;
    // From its last event recorded so far: the end itself when it has ended.
    for await (const { event } of streams.follow(conversationKey, turnId, Math.max(0, extent.lastSeq - 1), signal)) {
      if (event.type === 'end' || event.type === 'error') return event.messageId || null;
    }
  } catch {
    // A log that cannot be read (the cluster's store away, the wait over) names no reply.
  }
  return null;
}

/** Whether `promise` settled within `ms`. */
function within(promise: Promise<boolean>, ms: number): Promise<boolean> {
  return withDeadline(promise.catch(() => true), ms, new Error('not within the wait')).catch(() => false);
}
