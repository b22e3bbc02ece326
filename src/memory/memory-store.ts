import type { Page } from '../stores/conversation-store.js';

/** One long-term memory: a message a signed-in user sent or received, kept for recall. */
export interface MemoryRecord {
  /** Unique within the owner; adapters may encode ordering in it, clients treat it as opaque. */
  id: string;
  /** The user the memory belongs to. Memory is never shared across owners. */
  ownerId: string;
  /** The conversation's public id (as the owner knows it). */
  conversationId: string;
  /** The stored message this memory was made from. */
  messageId: string;
  role: 'user' | 'assistant';
  text: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export interface MemoryMatch extends MemoryRecord {
  /** Cosine similarity to the query vector, in [-1, 1]. */
  score: number;
}

export interface MemoryQuery {
  topK: number;
  /** Matches scoring below this are dropped. */
  minScore: number;
  /** Memories made from these messages are skipped (they are already in the short-term window). */
  excludeMessageIds?: readonly string[];
}

/**
 * Vector memory, partitioned by owner: no operation ever reads or touches another owner's
 * memories. Adapters: embedded (SQLite + sqlite-vec, one partition per user) and Pinecone
 * (one namespace per user, the owner also in metadata and in every filter).
 * `test/memory/memory-store.contract.test.ts` holds every adapter to the same behaviour.
 */
export interface MemoryStore {
  /** `sqlite` or `pinecone`. */
  readonly kind: string;
  /**
   * Checks the backend and that its vector dimension matches the embedder's; throws a clear
   * error naming both dimensions when they differ. Called once at start-up.
   */
  init(): Promise<void>;
  /** Inserts or replaces (by id) memories with their L2-normalised vectors. */
  upsert(items: readonly (MemoryRecord & { vector: Float32Array })[]): Promise<void>;
  /** The owner's most similar memories, best first, at most `topK`, none below `minScore`. */
  query(ownerId: string, vector: Float32Array, query: MemoryQuery): Promise<MemoryMatch[]>;
  /** The owner's memories, newest first; pass `nextCursor` back as `cursor`. */
  list(ownerId: string, options: { limit: number; cursor?: string | undefined }): Promise<Page<MemoryRecord>>;
  get(ownerId: string, id: string): Promise<MemoryRecord | undefined>;
  /** Deletes these of the owner's memories (ids of other owners are ignored); returns how many existed. */
  delete(ownerId: string, ids: readonly string[]): Promise<number>;
  /** Deletes every memory the owner has from one conversation. */
  deleteByConversation(ownerId: string, conversationId: string): Promise<void>;
  /** Erases everything the owner has. */
  deleteAll(ownerId: string): Promise<void>;
  /** Throws when the backend cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
