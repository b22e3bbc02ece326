import type { TokenUsage } from '../models/language-model.js';
import { countTokensBounded } from '../models/tokenizer.js';

/** How an assistant reply ended (PROTOCOLS.md section 0, Persistence). */
export type FinishReason = 'stop' | 'length' | 'stopped' | 'aborted' | 'error';

export interface Conversation {
  /** Internal and unique: the owner and the public id together ({@link conversationKey}). */
  key: string;
  /** The id the owner uses: seed 002's sessionId, seed 001's chatId, seed 003's conversationId. */
  id: string;
  /**
   * Who owns it: a user id, or an anonymous client (`anon:<session>` from the signed cookie,
   * else `ip:<address>`). The same public id under two owners is two conversations.
   */
  ownerId: string;
  title: string;
  createdAt: number;
  updatedAt: number;
}

export interface StoredMessage {
  id: string;
  /** The owning conversation's {@link Conversation.key}. */
  conversationKey: string;
  role: 'user' | 'assistant';
  content: string;
  /** Milliseconds since the epoch, strictly increasing within a process. */
  createdAt: number;
  model?: string | undefined;
  finishReason?: FinishReason | undefined;
  usage?: TokenUsage | undefined;
  /** Tokens in `content`, counted once when written (`tokensOf`), so context trimming never re-tokenises history. */
  tokens?: number | undefined;
}

export interface User {
  id: string;
  email: string;
  name: string | null;
  passwordHash: string;
  createdAt: number;
}

/** A signed-in session: every token this server issues names one; deleting it revokes the token. */
export interface Session {
  id: string;
  userId: string;
  createdAt: number;
  /** When the token issued with it expires; the row may be pruned after that. */
  expiresAt: number;
}

/**
 * A gateway API key (`/api/v2/keys`). Only the SHA-256 of the secret is stored: the secret
 * itself is shown once, when the key is created, and never kept.
 */
export interface ApiKeyRecord {
  id: string;
  userId: string;
  name: string;
  /** The secret's first characters, so its owner can recognise it in a list. */
  prefix: string;
  /** SHA-256 of the whole secret, lowercase hex. */
  keyHash: string;
  /** Models the key may use; null for every model the server allows. */
  models: string[] | null;
  /** The key's own chat turns per minute, on top of its user's limit; null for none. */
  rateLimitPerMinute: number | null;
  createdAt: number;
  /** Null: never expires. */
  expiresAt: number | null;
  /** Updated at most once a minute per key; null until first used. */
  lastUsedAt: number | null;
}

export interface Page<T> {
  items: T[];
  /** Pass back as `after` (messages) or `before` (conversations) to get the next page. */
  nextCursor: string | null;
}

export type NewMessage = Omit<StoredMessage, 'id' | 'createdAt'> & {
  id?: string;
  createdAt?: number;
  /** Absent: the store counts them as it writes the message ({@link tokensOf}). */
  tokens?: number | undefined;
  /** Queue this message, in the same write, to become a long-term memory of the conversation's owner. */
  remember?: boolean;
  /**
   * Create the conversation (if it does not exist yet) in the same write: a new conversation's
   * first message costs one commit, not two.
   */
  conversation?: { ownerId: string; id: string; title: string };
};

/** A stored message waiting in the durable queue to become a long-term memory. */
/** A memory writer's hold on the queue entries it read (ConversationStore.pendingMemories). */
export interface MemoryClaim {
  /** The writer's token for this batch. */
  token: string;
  /** When the entries are due again if the writer has not settled them (ms since the epoch). */
  until: number;
}

export interface PendingMemory {
  message: StoredMessage;
  ownerId: string;
  /** The conversation's public id. */
  conversationId: string;
  /** Failed attempts so far. */
  attempts: number;
}

/** One finished realtime voice session and the tokens it used (from the provider's `response.done` events). */
export interface RealtimeSessionRecord {
  id: string;
  /** A user id, or an anonymous owner (`anon:…`, `ip:…`). */
  ownerId: string;
  provider: string;
  startedAt: number;
  endedAt: number;
  /** Why it ended, in words. */
  endReason: string;
  usage: { responses: number; inputTokens: number; outputTokens: number; inputAudioTokens: number; outputAudioTokens: number; inputTextTokens: number; outputTextTokens: number };
}

export interface UserSettings {
  /** Long-term memory for this user (recall and storing); on unless the user opted out. */
  memoryEnabled: boolean;
}

/**
 * Users, sessions, conversations and messages. Adapters: SQLite (embedded default), in-memory
 * (Workers and throwaway use) and MongoDB. `test/stores/conversation-store.contract.test.ts`
 * holds every adapter to the same behaviour. Conversations are addressed by owner and public
 * id: no method reaches another owner's conversation by id.
 */
export interface ConversationStore {
  readonly kind: string;
  /**
   * Returns the owner's conversation with this id, creating it when it does not exist. Safe
   * under concurrent calls: exactly one creation wins and every caller gets the same record.
   */
  ensureConversation(input: { ownerId: string; id: string; title: string }): Promise<{ conversation: Conversation; created: boolean }>;
  getConversation(ownerId: string, id: string): Promise<Conversation | undefined>;
  /** Newest activity first. */
  listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>>;
  /** Returns the renamed conversation, or undefined when the owner has none with this id. */
  renameConversation(ownerId: string, id: string, title: string): Promise<Conversation | undefined>;
  /** Deletes the owner's conversation and its messages; returns the deleted message ids. */
  deleteConversation(ownerId: string, id: string): Promise<string[]>;
  /**
   * Gives `fromOwner`'s conversation `id`, with its messages, to `toOwner` under the same id (an
   * anonymous browser's first conversation, started from its IP, moving to its cookie). Answers the
   * conversation as it now is; undefined, and nothing changed, when `fromOwner` has no such
   * conversation or `toOwner` has one already.
   */
  moveConversation(fromOwner: string, id: string, toOwner: string): Promise<Conversation | undefined>;
  /** Deletes these messages of the conversation (and their queued memory writes); answers the ids it deleted (others' ids are left alone). */
  deleteMessages(conversationKey: string, ids: readonly string[]): Promise<string[]>;
  /**
   * Stores a message dated `createdAt` (the clock, by default), but never before its
   * conversation's latest activity: a conversation's messages stay in the order they were
   * written even after the clock stepped back, under dates an earlier version set ahead of it,
   * or on a node whose clock is behind another's. A message that would be dated before that
   * activity is dated 1 ms after it, not at it: at the same millisecond the tie would fall to
   * the ids, and the id of a node whose clock is behind sorts first. Its memory write
   * (`remember`) is due at the clock's time all the same.
   */
  appendMessage(message: NewMessage): Promise<StoredMessage>;
  /** The last `limit` messages, oldest first. */
  recentMessages(conversationKey: string, limit: number): Promise<StoredMessage[]>;
  /** Oldest first, starting after the cursor. */
  listMessages(conversationKey: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>>;

  createUser(user: Omit<User, 'id' | 'createdAt'>): Promise<User>;
  findUserByEmail(email: string): Promise<User | undefined>;
  findUserById(id: string): Promise<User | undefined>;
  updateUserPassword(userId: string, passwordHash: string): Promise<void>;
  /** Deletes the user with their sessions, API keys, settings, conversations, messages and queued memory writes; false when there was no such user. */
  deleteUser(userId: string): Promise<boolean>;

  /**
   * Queued long-term-memory writes that are due (`nextAt <= now`), oldest first. With a claim
   * they are also taken: due again only at `claim.until` (a writer that died leaves them for
   * another), so two writers (two nodes) never embed the same message twice.
   */
  pendingMemories(limit: number, now: number, claim?: MemoryClaim): Promise<PendingMemory[]>;
  /**
   * Drops finished entries from the queue and reschedules failed ones (those claimed by another
   * writer since are left to it). Answers the ids, of both lists, whose entry was no longer
   * queued: discarded while they were being written (a deletion, an erase, an opt-out, perhaps
   * on another node), so what was just written for them must go too.
   */
  settleMemories(done: readonly string[], retry: readonly { messageId: string; nextAt: number }[], claim?: string): Promise<string[]>;
  /** Drops every queued memory write of an owner (erase-all, opt-out), or those of the given messages (forgetting one). */
  discardPendingMemories(ownerId: string, messageIds?: readonly string[]): Promise<void>;
  /** Defaults when the user never changed them (also for identity-provider users with no row). */
  getUserSettings(userId: string): Promise<UserSettings>;
  setUserSettings(userId: string, settings: UserSettings): Promise<void>;

  recordRealtimeSession(record: RealtimeSessionRecord): Promise<void>;
  /** The owner's realtime sessions, newest first. */
  listRealtimeSessions(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<RealtimeSessionRecord>>;

  createSession(session: Session): Promise<void>;
  getSession(id: string): Promise<Session | undefined>;
  deleteSession(id: string): Promise<void>;
  /** Deletes every session of the user, but `exceptId` when given; returns the deleted ids. */
  deleteUserSessions(userId: string, exceptId?: string): Promise<string[]>;

  /**
   * Stores a new API key unless its user already has `maxPerUser` (then returns false). The
   * count and the insert are one atomic step where the backend allows (SQLite, memory).
   */
  createApiKey(key: ApiKeyRecord, maxPerUser: number): Promise<boolean>;
  /** The key whose secret hashes to this, expired or not. */
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  /** The user's keys, newest first. */
  listApiKeys(userId: string): Promise<ApiKeyRecord[]>;
  /** Deletes the user's key with this id; false when the user has none with it. */
  deleteApiKey(userId: string, id: string): Promise<boolean>;
  /** Deletes every key of the user; returns the deleted ids. `deleteUser` deletes them too. */
  deleteUserApiKeys(userId: string): Promise<string[]>;
  /** Records when the key was last used (never moves back). */
  touchApiKey(id: string, lastUsedAt: number): Promise<void>;

  /** Throws when the backend cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The internal key of an owner's conversation. Public ids never contain `/` (they are
 * `[A-Za-z0-9_-]`), so the key splits unambiguously at its last `/`.
 */
export function conversationKey(ownerId: string, id: string): string {
  return `${ownerId}/${id}`;
}

/** The owner part of a conversation key. */
export function ownerOfKey(key: string): string {
  return key.slice(0, key.lastIndexOf('/'));
}

/** The last id's time and its counter within that millisecond (see timeOrderedId). */
let idTime = 0;
let idCounter = 0;

/**
 * A UUIDv7 (RFC 9562): time-ordered, so new rows land at the right edge of a B-tree index (one
 * page touched per batch of inserts, instead of a random one each) and ids sort by creation.
 * The 62 random bits come from `crypto.randomUUID()`, which draws from a pooled buffer: a
 * `getRandomValues` call per id costs ~15 µs of job set-up on Node.
 */
export function timeOrderedId(now = Date.now()): string {
  const random = crypto.randomUUID(); // xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx
  // RFC 9562 §6.2 method 1: the 12 bits after the version are a counter within the millisecond,
  // started at a random value below 2,048 (room for 2,048 more); past 4,095 the id's time moves
  // on by 1 ms. Ids are then strictly increasing in the process, however many share a
  // millisecond or if the clock steps back: they break the ties of equal `createdAt`s in order.
  if (now > idTime) {
    idTime = now;
    idCounter = parseInt(random.slice(15, 18), 16) & 0x7ff;
  } else if (++idCounter > 0xfff) {
    idTime++;
    idCounter = 0;
  }
  const time = idTime.toString(16).padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${idCounter.toString(16).padStart(3, '0')}${random.slice(18)}`;
}

/**
 * A new message's token count: the one given, else counted (bounded cost, see
 * countTokensBounded). The SQLite store counts in its group commit, so a chat turn's user
 * message is counted after its model request was written, not before.
 */
export function tokensOf(message: { content: string; tokens?: number | undefined }): number {
  return message.tokens ?? countTokensBounded(message.content);
}

let last = 0;
/**
 * Date.now(), but never less than what it answered before (the clock may step back). Not
 * strictly increasing, so it never runs ahead of the clock: messages written in the same
 * millisecond share it and keep their order by id (timeOrderedId), which is.
 */
export function monotonicNow(): number {
  const now = Date.now();
  if (now > last) last = now;
  return last;
}

export const DEFAULT_USER_SETTINGS: Readonly<UserSettings> = { memoryEnabled: true };

export class DuplicateEmailError extends Error {
  constructor() {
    super('A user with this email already exists');
    this.name = 'DuplicateEmailError';
  }
}

/** Cursors are opaque to clients; inside they are `createdAt.id`. */
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

/** Conversations page by (updatedAt, public id): ids are unique within one owner's list. */
export const byUpdated = (c: Conversation): number => c.updatedAt;
export const byCreated = (m: StoredMessage): number => m.createdAt;
export const byStarted = (r: RealtimeSessionRecord): number => r.startedAt;
/** API keys list newest first. */
export const newestKeyFirst = (a: ApiKeyRecord, b: ApiKeyRecord): number => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1);

/**
 * The conversation with this id among those the caller may reach (`ownersOf(principal)`,
 * preferred first); undefined when none of them has one, whoever else may.
 */
export async function findOwnedConversation(store: ConversationStore, owners: readonly string[], id: string): Promise<Conversation | undefined> {
  for (const owner of owners) {
    const found = await store.getConversation(owner, id);
    if (found) return found;
  }
  return undefined;
}
