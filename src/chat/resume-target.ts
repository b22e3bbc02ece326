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
  /**
   * The Last-Event-ID named a turn of an earlier conversation under this id (deleted since), or
   * one no longer kept: nothing of it may be sent (hasEventsToSend says no, so the HTTP routes
   * answer 204, as for any turn no longer kept while the conversation has a newer one).
   */
  withheld?: true;
}

/**
 * The recorded turn a client may resume: the latest of the caller's own conversation with this
 * id (or the one its Last-Event-ID names). Keys carry the owner, so nobody reaches another's.
 * The conversation must still exist, and the turn must be one of it, not of an earlier one under
 * the same id: a turn's events are kept for STREAM_RESUME_TTL_S under (owner, id), and those of
 * a deleted conversation (its messages, the user's words among them) must not come back through
 * a resume, even once the client started a new conversation with that id (seed 002's clients
 * always send the same one). A turn belongs to the current conversation when its `start` was
 * stamped (`storedAt`, once its user message was stored, so once its conversation existed) at
 * or after the conversation's `createdAt`. A turn whose start cannot be read (not recorded yet,
 * or by an earlier version) is resumed as before.
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
    if (!latest) continue;
    const conversation = await store.getConversation(owner, conversationId);
    if (!conversation) continue;
    /**
     * Whether the kept turn may be one of this conversation: false when its start says it began
     * before it. A start that cannot be read (none recorded yet, a turn recorded by an earlier
     * version, the shared log not answering in time) decides nothing: the turn is resumed as
     * before, and what follows finds whatever is kept.
     */
    const ofThis = async (turnId: string) => {
      const storedAt = (await streams.startOf(key, turnId))?.storedAt;
      return storedAt === undefined || storedAt >= conversation.createdAt;
    };
    if (last && last.turnId !== latest.turnId) {
      const target: ResumeTarget = { conversationKey: key, turnId: last.turnId, afterSeq: last.seq, ended: true };
      return (await ofThis(last.turnId)) ? target : { ...target, withheld: true };
    }
    // An earlier conversation's turn: nothing of this one is kept.
    if (!(await ofThis(latest.turnId))) continue;
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
  if (target.withheld) return false;
  const kept = await streams.extent(target.conversationKey, target.turnId);
  return kept !== undefined && (!kept.ended || kept.lastSeq > target.afterSeq);
}
