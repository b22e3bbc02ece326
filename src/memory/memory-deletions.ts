import type { Logger } from '../logger.js';
import type { ConversationStore } from '../stores/conversation-store.js';
import type { MemoryStore } from './memory-store.js';

/**
 * What a deletion of a conversation or an account asks of long-term memory. LongTermMemory
 * does it while memory is on; {@link MemoryDeletions} while it is off, for memories kept from
 * when it was on. Both throw when the store cannot answer, so the deletion fails (and may be
 * retried) rather than leaving memories behind.
 */
export interface MemoryEraser {
  /** Forgets what one conversation taught. */
  forgetConversation(userId: string, conversationId: string): Promise<void>;
  /** Erases everything the user has, queued writes included. */
  erase(userId: string): Promise<void>;
}

export interface MemoryDeletionsDeps {
  /**
   * Opens the store for deletions (no embedder, no dimension check), or answers undefined when
   * there is none to delete from (e.g. no DATA_DIR/memory.sqlite: it is not created for this).
   */
  open: () => Promise<MemoryStore | undefined>;
  conversations: ConversationStore;
  logger: Logger;
}

/**
 * Deletions from long-term memory while it is switched off (MEMORY_ENABLED=false): switching
 * memory off stops recall and writes, not the promise that deleting a conversation or an account
 * deletes its memories. The store is opened at the first deletion that needs it and closed when
 * no deletion uses it any more, so a server with memory off pays nothing at start and holds
 * nothing open between deletions.
 */
export class MemoryDeletions implements MemoryEraser {
  #store: Promise<MemoryStore | undefined> | undefined;
  #users = 0;

  constructor(private readonly deps: MemoryDeletionsDeps) {}

  async forgetConversation(userId: string, conversationId: string): Promise<void> {
    await this.#with((store) => store.deleteByConversation(userId, conversationId));
  }

  async erase(userId: string): Promise<void> {
    // Writes queued while memory was on are never made for a deleted account (they would be on
    // the day memory is switched back on).
    await this.deps.conversations.discardPendingMemories(userId);
    await this.#with((store) => store.deleteAll(userId));
  }

  async #with(work: (store: MemoryStore) => Promise<void>): Promise<void> {
    this.#users++;
    try {
      const opening = (this.#store ??= this.deps.open());
      let store: MemoryStore | undefined;
      try {
        store = await opening;
      } catch (err) {
        // Tried again by the next deletion.
        if (this.#store === opening) this.#store = undefined;
        throw err;
      }
      if (store) await work(store);
    } finally {
      if (--this.#users === 0) await this.#close();
    }
  }

  async #close(): Promise<void> {
    const opening = this.#store;
    this.#store = undefined;
    const store = await opening?.catch(() => undefined);
    await store?.close().catch((err: unknown) => this.deps.logger.warn({ err }, 'long-term memory store (opened for deletions) could not be closed'));
  }
}
