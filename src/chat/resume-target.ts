import { conversationKey, type ConversationStore } from '../stores/conversation-store.js';
import { ownersOf, type Principal } from './principal.js';
import type { TurnStreams } from './turn-streams.js';

export interface ResumeTarget {
  conversationKey: string;
  turnId: string;
  /** The last event the client already has (0: replay from the start). */
  afterSeq: number;
  /** The turn had ended when looked up. */
  ended: boolean;
}

/**
 * The recorded turn a client may resume: the latest of the caller's own conversation with this
 * id (or the one its Last-Event-ID names). Keys carry the owner, so nobody reaches another's.
 * The conversation must still exist: a turn's events are kept for STREAM_RESUME_TTL_S, and
 * those of a deleted conversation (its messages, the user's words among them) must not come
 * back through a resume.
 */
export async function findResumable(
  streams: TurnStreams | undefined,
  store: Pick<ConversationStore, 'getConversation'>,
  principal: Principal,
  conversationId: string,
  last?: { turnId: string; seq: number } | undefined,
): Promise<ResumeTarget | undefined> {
  if (!streams) return undefined;
  for (const owner of ownersOf(principal)) {
    const key = conversationKey(owner, conversationId);
    const latest = await streams.latest(key);
    if (!latest || !(await store.getConversation(owner, conversationId))) continue;
    if (last && last.turnId !== latest.turnId) return { conversationKey: key, turnId: last.turnId, afterSeq: last.seq, ended: true };
    return { conversationKey: key, turnId: latest.turnId, afterSeq: last?.seq ?? 0, ended: latest.ended };
  }
  return undefined;
}

/**
 * Whether resuming the target sends anything: its turn is still kept, and either still
 * running or holding events after the one the client has. Otherwise the HTTP resume routes
 * answer 204 (which also ends an EventSource's reconnecting).
 */
export async function hasEventsToSend(streams: TurnStreams, target: ResumeTarget): Promise<boolean> {
  const kept = await streams.extent(target.conversationKey, target.turnId);
  return kept !== undefined && (!kept.ended || kept.lastSeq > target.afterSeq);
}
