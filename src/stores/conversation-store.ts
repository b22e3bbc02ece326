import type { TokenUsage } from '../models/language-model.js';

/** How an assistant reply ended (PROTOCOLS.md section 0, Persistence). */
export type FinishReason = 'stop' | 'length' | 'stopped' | 'aborted' | 'error';

export interface Conversation {
  id: string;
  /** The user who created it; null for an anonymous conversation. */
  ownerId: string | null;
  title: string;
  createdAt: number;
  updatedAt: number;
}

export interface StoredMessage {
  id: string;
  conversationId: string;
  role: 'user' | 'assistant';
  content: string;
  /** Milliseconds since the epoch, strictly increasing within a process. */
  createdAt: number;
  model?: string | undefined;
  finishReason?: FinishReason | undefined;
  usage?: TokenUsage | undefined;
}

export interface User {
  id: string;
  email: string;
  name: string | null;
  passwordHash: string;
  createdAt: number;
}

export interface Page<T> {
  items: T[];
  /** Pass back as `after` (messages) or `before` (conversations) to get the next page. */
  nextCursor: string | null;
}

export type NewMessage = Omit<StoredMessage, 'id' | 'createdAt'> & { id?: string; createdAt?: number };

/**
 * Users, conversations and messages. Adapters: SQLite (embedded default), in-memory
 * (Workers and throwaway use) and MongoDB. `test/stores/conversation-store.contract.ts`
 * holds every adapter to the same behaviour.
 */
export interface ConversationStore {
  readonly kind: string;
  /**
   * Returns the conversation with this id, creating it for `ownerId` when it does not exist.
   * Safe under concurrent calls with one id: exactly one creation wins and every caller
   * gets the same record (the caller then checks ownership).
   */
  ensureConversation(input: { id: string; ownerId: string | null; title: string }): Promise<{ conversation: Conversation; created: boolean }>;
  getConversation(id: string): Promise<Conversation | undefined>;
  /** Newest first. */
  listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>>;
  /** Deletes the conversation and its messages; returns the deleted message ids. */
  deleteConversation(id: string): Promise<string[]>;
  appendMessage(message: NewMessage): Promise<StoredMessage>;
  /** The last `limit` messages, oldest first. */
  recentMessages(conversationId: string, limit: number): Promise<StoredMessage[]>;
  /** Oldest first, starting after the cursor. */
  listMessages(conversationId: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>>;

  createUser(user: Omit<User, 'id' | 'createdAt'>): Promise<User>;
  findUserByEmail(email: string): Promise<User | undefined>;
  findUserById(id: string): Promise<User | undefined>;

  /** Throws when the backend cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

let last = 0;
/** Date.now(), but strictly increasing, so messages written in the same millisecond keep their order. */
export function monotonicNow(): number {
  const now = Date.now();
  last = now > last ? now : last + 1;
  return last;
}

export class DuplicateEmailError extends Error {
  constructor() {
    super('A user with this email already exists');
    this.name = 'DuplicateEmailError';
  }
}

/** Cursors are opaque to clients; inside they are `createdAt:id`. */
export function encodeCursor(createdAt: number, id: string): string {
  return `${createdAt.toString(36)}.${id}`;
}

export function decodeCursor(cursor: string | undefined): { createdAt: number; id: string } | undefined {
  if (!cursor) return undefined;
  const dot = cursor.indexOf('.');
  if (dot <= 0) return undefined;
  const createdAt = parseInt(cursor.slice(0, dot), 36);
  if (!Number.isFinite(createdAt)) return undefined;
  return { createdAt, id: cursor.slice(dot + 1) };
}

/**
 * Builds a page from up to `limit + 1` rows fetched in order: the extra row only says that
 * another page exists, and the cursor points after the last item kept.
 */
export function toPage<T extends { id: string }>(rows: T[], limit: number, timeOf: (item: T) => number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(timeOf(last), last.id) : null };
}

export const byUpdated = (c: Conversation): number => c.updatedAt;
export const byCreated = (m: StoredMessage): number => m.createdAt;
