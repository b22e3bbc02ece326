import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  DuplicateEmailError,
  byCreated,
  byUpdated,
  conversationKey,
  timeOrderedId,
  tokensOf,
  decodeCursor,
  ownerOfKey,
  monotonicNow,
  toPage,
  type ApiKeyRecord,
  type Conversation,
  type ConversationStore,
  type FinishReason,
  type NewMessage,
  type Page,
  type MemoryClaim,
  type PendingMemory,
  type RealtimeSessionRecord,
  byStarted,
  type Session,
  type StoredMessage,
  type User,
  type UserSettings,
  DEFAULT_USER_SETTINGS,
} from './conversation-store.js';
import { offLoopCheckpoints, type CheckpointOptions, type CheckpointStats, type WalCheckpointer } from './wal-checkpointer.js';
import { READ_BUSY_TIMEOUT_MS, WriteLock, isBusy } from './sqlite-write-lock.js';

const SCHEMA_VERSION = 6;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS conversations (
  key TEXT PRIMARY KEY,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_owner_recent ON conversations (owner_id, updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  conversation_key TEXT NOT NULL REFERENCES conversations (key) ON DELETE CASCADE,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  model TEXT,
  finish_reason TEXT,
  input_tokens INTEGER,
  output_tokens INTEGER,
  tokens INTEGER
);
CREATE INDEX IF NOT EXISTS messages_conversation_time ON messages (conversation_key, created_at, id);
CREATE TABLE IF NOT EXISTS memory_outbox (
  message_id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  claim TEXT
);
CREATE INDEX IF NOT EXISTS memory_outbox_due ON memory_outbox (next_at);
CREATE INDEX IF NOT EXISTS memory_outbox_owner ON memory_outbox (owner_id);
CREATE TABLE IF NOT EXISTS realtime_sessions (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL,
  end_reason TEXT NOT NULL,
  usage TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS realtime_sessions_owner ON realtime_sessions (owner_id, started_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS user_settings (
  user_id TEXT PRIMARY KEY,
  memory_enabled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT NOT NULL,
  models TEXT,
  rate_limit_per_minute INTEGER,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id, created_at DESC, id DESC);
`;

/**
 * Version 1 keyed conversations by their public id alone (anonymous ones with a null owner).
 * Conversations are now scoped to their owner; old anonymous ones move under an owner no
 * client can be, so nobody reaches them by guessing an id.
 */
const MIGRATE_FROM_V1 = `
ALTER TABLE messages RENAME TO messages_v1;
ALTER TABLE conversations RENAME TO conversations_v1;
${SCHEMA}
INSERT INTO conversations (key, id, owner_id, title, created_at, updated_at)
  SELECT coalesce(owner_id, 'legacy-anonymous') || '/' || id, id, coalesce(owner_id, 'legacy-anonymous'), title, created_at, updated_at FROM conversations_v1;
INSERT INTO messages (id, conversation_key, role, content, created_at, model, finish_reason, input_tokens, output_tokens)
  SELECT m.id, coalesce(c.owner_id, 'legacy-anonymous') || '/' || m.conversation_id, m.role, m.content, m.created_at, m.model, m.finish_reason, m.input_tokens, m.output_tokens
  FROM messages_v1 m JOIN conversations_v1 c ON c.id = m.conversation_id;
DROP TABLE messages_v1;
DROP TABLE conversations_v1;
`;

interface ConversationRow {
  key: string;
  id: string;
  owner_id: string;
  title: string;
  created_at: number;
  updated_at: number;
}
interface MessageRow {
  id: string;
  conversation_key: string;
  role: 'user' | 'assistant';
  content: string;
  created_at: number;
  model: string | null;
  finish_reason: FinishReason | null;
  input_tokens: number | null;
  output_tokens: number | null;
  tokens: number | null;
}
interface PendingRow extends MessageRow {
  owner_id: string;
  attempts: number;
  public_id: string;
}
interface RealtimeRow {
  id: string;
  owner_id: string;
  provider: string;
  started_at: number;
  ended_at: number;
  end_reason: string;
  usage: string;
}
interface SessionRow {
  id: string;
  user_id: string;
  created_at: number;
  expires_at: number;
}
interface ApiKeyRow {
  id: string;
  user_id: string;
  key_hash: string;
  prefix: string;
  name: string;
  /** A JSON array, or null for every model. */
  models: string | null;
  rate_limit_per_minute: number | null;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
}
interface UserRow {
  id: string;
  email: string;
  name: string | null;
  password_hash: string;
  created_at: number;
}

const toConversation = (r: ConversationRow): Conversation => ({
  key: r.key,
  id: r.id,
  ownerId: r.owner_id,
  title: r.title,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toMessage = (r: MessageRow): StoredMessage => ({
  id: r.id,
  conversationKey: r.conversation_key,
  role: r.role,
  content: r.content,
  createdAt: r.created_at,
  ...(r.model === null ? {} : { model: r.model }),
  ...(r.finish_reason === null ? {} : { finishReason: r.finish_reason }),
  ...(r.input_tokens === null || r.output_tokens === null ? {} : { usage: { inputTokens: r.input_tokens, outputTokens: r.output_tokens } }),
  ...(r.tokens === null ? {} : { tokens: r.tokens }),
});

const toRealtime = (r: RealtimeRow): RealtimeSessionRecord => ({
  id: r.id,
  ownerId: r.owner_id,
  provider: r.provider,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  endReason: r.end_reason,
  usage: JSON.parse(r.usage) as RealtimeSessionRecord['usage'],
});

const toSession = (r: SessionRow): Session => ({ id: r.id, userId: r.user_id, createdAt: r.created_at, expiresAt: r.expires_at });

const toApiKey = (r: ApiKeyRow): ApiKeyRecord => ({
  id: r.id,
  userId: r.user_id,
  name: r.name,
  prefix: r.prefix,
  keyHash: r.key_hash,
  models: r.models === null ? null : (JSON.parse(r.models) as string[]),
  rateLimitPerMinute: r.rate_limit_per_minute,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  lastUsedAt: r.last_used_at,
});

const toUser = (r: UserRow): User => ({ id: r.id, email: r.email, name: r.name, passwordHash: r.password_hash, createdAt: r.created_at });

/**
 * What one group commit takes at most, in units: a write is one, plus one per 4,096 characters
 * of a message it stores (whose tokens are counted in the commit). A burst beyond that (a
 * thousand replies ending together) is committed over several passes of the event loop, with
 * I/O and timers running between them, instead of in one pass of tens of milliseconds.
 */
const MAX_COMMIT_UNITS = 64;
const CHARS_PER_UNIT = 4_096;

/** A write queued for the next group commit, and how to settle its promise. */
interface PendingWrite {
  run: () => unknown;
  /** What it weighs against MAX_COMMIT_UNITS. */
  units: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * The embedded default: one SQLite file (WAL mode) under DATA_DIR that survives restarts.
 * Writes are group-committed: the writes queued in one turn of the event loop go into one
 * transaction (up to MAX_COMMIT_UNITS; the rest in the next turns), so a burst of concurrent
 * chat turns costs a few commits, not hundreds. Each write's promise settles after its
 * transaction committed.
 */
export class SqliteConversationStore implements ConversationStore {
  readonly kind = 'sqlite';
  readonly #db: Database.Database;
  readonly #stmt;
  /** Writes queued for the next group commit. */
  #pending: PendingWrite[] = [];
  /** Takes the write lock for each group commit without waiting on the event loop. */
  readonly #lock: WriteLock;

  #pruneSessionsAt = 0;
  /**
   * The group commit's transactions, made once: `db.transaction(fn)` builds four wrapped
   * functions and defines five properties on each (~7 µs), and a turn commits twice.
   */
  readonly #commitAll: Database.Transaction<(batch: readonly PendingWrite[]) => unknown[]>;
  readonly #commitEach: Database.Transaction<(batch: readonly PendingWrite[]) => { ok: boolean; value: unknown }[]>;
  readonly #savepoint: Database.Transaction<(run: () => unknown) => unknown>;
  /** Runs the WAL's checkpoints off the event loop (a file database; see WalCheckpointer). */
  readonly #checkpointer: WalCheckpointer | undefined;

  constructor(file: string, options: CheckpointOptions = {}) {
    if (file !== ':memory:') createPrivateFile(file);
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
    migrate(db);
    this.#db = db;
    this.#lock = new WriteLock(db);
    this.#checkpointer = offLoopCheckpoints(db, file, options);
    this.#commitAll = db.transaction((batch: readonly PendingWrite[]) => batch.map((op) => op.run()));
    this.#savepoint = db.transaction((run: () => unknown) => run());
    this.#commitEach = db.transaction((batch: readonly PendingWrite[]) =>
      batch.map((op) => {
        // Each write is its own savepoint: a failing one is undone alone, the rest still commit.
        try {
          return { ok: true, value: this.#savepoint(op.run) };
        } catch (err) {
          return { ok: false, value: err };
        }
      }),
    );
    this.#stmt = {
      insertConversation: db.prepare<[string, string, string, string, number, number]>(
        'INSERT INTO conversations (key, id, owner_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING',
      ),
      getConversation: db.prepare<[string], ConversationRow>('SELECT * FROM conversations WHERE key = ?'),
      listConversations: db.prepare<[string, number], ConversationRow>(
        'SELECT * FROM conversations WHERE owner_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?',
      ),
      listConversationsBefore: db.prepare<[string, number, number, string, number], ConversationRow>(
        `SELECT * FROM conversations WHERE owner_id = ? AND (updated_at < ? OR (updated_at = ? AND id < ?))
         ORDER BY updated_at DESC, id DESC LIMIT ?`,
      ),
      renameConversation: db.prepare<[string, string]>('UPDATE conversations SET title = ? WHERE key = ?'),
      messageIds: db.prepare<[string], { id: string }>('SELECT id FROM messages WHERE conversation_key = ?'),
      deleteConversation: db.prepare<[string]>('DELETE FROM conversations WHERE key = ?'),
      deleteMessage: db.prepare<[string, string]>('DELETE FROM messages WHERE id = ? AND conversation_key = ?'),
      moveMessages: db.prepare<[string, string]>('UPDATE messages SET conversation_key = ? WHERE conversation_key = ?'),
      moveOutbox: db.prepare<[string, string]>('UPDATE memory_outbox SET owner_id = ? WHERE message_id IN (SELECT id FROM messages WHERE conversation_key = ?)'),
      insertMessage: db.prepare<[string, string, string, string, number, string | null, string | null, number | null, number | null, number | null]>(
        `INSERT INTO messages (id, conversation_key, role, content, created_at, model, finish_reason, input_tokens, output_tokens, tokens)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      touchConversation: db.prepare<[number, string], { updated_at: number }>('UPDATE conversations SET updated_at = max(updated_at, ?) WHERE key = ? RETURNING updated_at'),
      recentMessages: db.prepare<[string, number], MessageRow>(
        'SELECT * FROM (SELECT * FROM messages WHERE conversation_key = ? ORDER BY created_at DESC, id DESC LIMIT ?) ORDER BY created_at, id',
      ),
      listMessages: db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE conversation_key = ? ORDER BY created_at, id LIMIT ?'),
      listMessagesAfter: db.prepare<[string, number, number, string, number], MessageRow>(
        `SELECT * FROM messages WHERE conversation_key = ? AND (created_at > ? OR (created_at = ? AND id > ?))
         ORDER BY created_at, id LIMIT ?`,
      ),
      insertUser: db.prepare<[string, string, string | null, string, number]>(
        'INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      userByEmail: db.prepare<[string], UserRow>('SELECT * FROM users WHERE email = ?'),
      userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'),
      updatePassword: db.prepare<[string, string]>('UPDATE users SET password_hash = ? WHERE id = ?'),
      deleteOwnedConversations: db.prepare<[string]>('DELETE FROM conversations WHERE owner_id = ?'),
      deleteUser: db.prepare<[string]>('DELETE FROM users WHERE id = ?'),
      insertSession: db.prepare<[string, string, number, number]>('INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)'),
      getSession: db.prepare<[string], SessionRow>('SELECT * FROM sessions WHERE id = ?'),
      deleteSession: db.prepare<[string]>('DELETE FROM sessions WHERE id = ?'),
      userSessionIds: db.prepare<[string], { id: string }>('SELECT id FROM sessions WHERE user_id = ?'),
      pruneSessions: db.prepare<[number]>('DELETE FROM sessions WHERE expires_at < ?'),
      enqueueMemory: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO memory_outbox (message_id, owner_id, next_at) VALUES (?, ?, ?)'),
      pendingMemories: db.prepare<[number, number], PendingRow>(
        `SELECT m.*, o.owner_id, o.attempts, c.id AS public_id FROM memory_outbox o
         JOIN messages m ON m.id = o.message_id JOIN conversations c ON c.key = m.conversation_key
         WHERE o.next_at <= ? ORDER BY o.next_at, o.message_id LIMIT ?`,
      ),
      memoryClaim: db.prepare<[number, string, string]>('UPDATE memory_outbox SET next_at = ?, claim = ? WHERE message_id = ?'),
      memoryDone: db.prepare<[{ id: string; claim: string | null }]>('DELETE FROM memory_outbox WHERE message_id = @id AND (@claim IS NULL OR claim = @claim)'),
      memoryRetry: db.prepare<[{ id: string; claim: string | null; nextAt: number }]>(
        'UPDATE memory_outbox SET attempts = attempts + 1, next_at = @nextAt, claim = NULL WHERE message_id = @id AND (@claim IS NULL OR claim = @claim)',
      ),
      memoryQueued: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM memory_outbox WHERE message_id = ?'),
      discardMemories: db.prepare<[string]>('DELETE FROM memory_outbox WHERE owner_id = ?'),
      discardMemory: db.prepare<[string, string]>('DELETE FROM memory_outbox WHERE owner_id = ? AND message_id = ?'),
      getSettings: db.prepare<[string], { memory_enabled: number }>('SELECT memory_enabled FROM user_settings WHERE user_id = ?'),
      setSettings: db.prepare<[string, number]>(
        'INSERT INTO user_settings (user_id, memory_enabled) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET memory_enabled = excluded.memory_enabled',
      ),
      deleteSettings: db.prepare<[string]>('DELETE FROM user_settings WHERE user_id = ?'),
      insertRealtime: db.prepare<[string, string, string, number, number, string, string]>(
        'INSERT INTO realtime_sessions (id, owner_id, provider, started_at, ended_at, end_reason, usage) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      listRealtime: db.prepare<[string, number], RealtimeRow>('SELECT * FROM realtime_sessions WHERE owner_id = ? ORDER BY started_at DESC, id DESC LIMIT ?'),
      listRealtimeBefore: db.prepare<[string, number, number, string, number], RealtimeRow>(
        `SELECT * FROM realtime_sessions WHERE owner_id = ? AND (started_at < ? OR (started_at = ? AND id < ?))
         ORDER BY started_at DESC, id DESC LIMIT ?`,
      ),
      deleteOwnedRealtime: db.prepare<[string]>('DELETE FROM realtime_sessions WHERE owner_id = ?'),
      countApiKeys: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM api_keys WHERE user_id = ?'),
      insertApiKey: db.prepare<[string, string, string, string, string, string | null, number | null, number, number | null, number | null]>(
        `INSERT INTO api_keys (id, user_id, key_hash, prefix, name, models, rate_limit_per_minute, created_at, expires_at, last_used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      apiKeyByHash: db.prepare<[string], ApiKeyRow>('SELECT * FROM api_keys WHERE key_hash = ?'),
      listApiKeys: db.prepare<[string], ApiKeyRow>('SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC'),
      deleteApiKey: db.prepare<[string, string]>('DELETE FROM api_keys WHERE id = ? AND user_id = ?'),
      userApiKeyIds: db.prepare<[string], { id: string }>('SELECT id FROM api_keys WHERE user_id = ?'),
      deleteUserApiKeys: db.prepare<[string]>('DELETE FROM api_keys WHERE user_id = ?'),
      touchApiKey: db.prepare<[number, string, number]>('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND coalesce(last_used_at, 0) < ?'),
    };
  }

  /** `chars`: the text of a message it stores (its tokens are counted in the commit). */
  #write<T>(run: () => T, chars = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#pending.length === 0 && !this.#lock.waiting) setImmediate(this.#flushNow);
      this.#pending.push({ run, units: 1 + Math.floor(chars / CHARS_PER_UNIT), resolve: resolve as (v: unknown) => void, reject });
    });
  }

  readonly #flushNow = () => this.#flush();

  /** The oldest queued writes, up to MAX_COMMIT_UNITS (at least one). */
  #nextBatch(): PendingWrite[] {
    let units = 0;
    let n = 0;
    while (n < this.#pending.length && (n === 0 || units + this.#pending[n]!.units <= MAX_COMMIT_UNITS)) units += this.#pending[n++]!.units;
    if (n === this.#pending.length) {
      const all = this.#pending;
      this.#pending = [];
      return all;
    }
    return this.#pending.splice(0, n);
  }

  /** Commits the queued writes in one transaction (the lock taken without waiting: see WriteLock). */
  #flush() {
    if (!this.#db.open) {
      const all = this.#pending;
      this.#pending = [];
      for (const op of all) op.reject(new Error('The store is closed'));
      return;
    }
    const batch = this.#nextBatch();
    try {
      if (!this.#lock.commit(() => this.#commit(batch), this.#flushNow)) {
        // The lock is taken: these writes go first when it is tried again.
        this.#pending = batch.concat(this.#pending);
        return;
      }
    } catch (err) {
      for (const op of batch) op.reject(err);
      this.#more();
      return;
    }
    this.#checkpointer?.committed();
    this.#more();
  }

  /** Writes left over from a full batch: the next pass of the event loop commits them. */
  #more(): void {
    if (this.#pending.length > 0 && !this.#lock.waiting) setImmediate(this.#flushNow);
  }

  /** Throws only when nothing was committed (SQLITE_BUSY at BEGIN, or a failure outside any write); settles every write otherwise. */
  #commit(batch: PendingWrite[]) {
    // Usually nothing fails: one transaction, no savepoint per write (each is two statements).
    let values: unknown[] | undefined;
    try {
      values = this.#commitAll.immediate(batch);
    } catch (err) {
      if (isBusy(err)) throw err;
      // One write failed (a duplicate email...): everything was rolled back; below, each runs alone.
    }
    if (values) {
      batch.forEach((op, i) => op.resolve(values[i]));
      return;
    }
    const results = this.#commitEach.immediate(batch);
    batch.forEach((op, i) => (results[i]!.ok ? op.resolve(results[i]!.value) : op.reject(results[i]!.value)));
  }

  async ensureConversation(input: { ownerId: string; id: string; title: string }) {
    return this.#write(() => this.#ensureConversation(input));
  }

  #ensureConversation(input: { ownerId: string; id: string; title: string }, now = monotonicNow()) {
    const key = conversationKey(input.ownerId, input.id);
    const created = this.#stmt.insertConversation.run(key, input.id, input.ownerId, input.title, now, now).changes === 1;
    if (created) return { conversation: { key, ...input, createdAt: now, updatedAt: now }, created };
    const row = this.#stmt.getConversation.get(key);
    if (!row) throw new Error('Conversation vanished after insert');
    return { conversation: toConversation(row), created };
  }

  async getConversation(ownerId: string, id: string) {
    const row = this.#stmt.getConversation.get(conversationKey(ownerId, id));
    return row ? toConversation(row) : undefined;
  }

  async listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>> {
    const before = decodeCursor(options.before);
    const rows = before
      ? this.#stmt.listConversationsBefore.all(ownerId, before.createdAt, before.createdAt, before.id, options.limit + 1)
      : this.#stmt.listConversations.all(ownerId, options.limit + 1);
    return toPage(rows.map(toConversation), options.limit, byUpdated);
  }

  async renameConversation(ownerId: string, id: string, title: string) {
    const key = conversationKey(ownerId, id);
    const changed = await this.#write(() => this.#stmt.renameConversation.run(title, key).changes);
    return changed ? this.getConversation(ownerId, id) : undefined;
  }

  async moveConversation(fromOwner: string, id: string, toOwner: string) {
    const from = conversationKey(fromOwner, id);
    const to = conversationKey(toOwner, id);
    return this.#write(() => {
      const row = this.#stmt.getConversation.get(from);
      if (!row || this.#stmt.getConversation.get(to)) return undefined;
      // One transaction: the new row, its messages pointed at it, then the old row (now without messages).
      this.#stmt.insertConversation.run(to, id, toOwner, row.title, row.created_at, row.updated_at);
      this.#stmt.moveMessages.run(to, from);
      this.#stmt.moveOutbox.run(toOwner, to);
      this.#stmt.deleteConversation.run(from);
      return toConversation({ ...row, key: to, owner_id: toOwner });
    });
  }

  async deleteMessages(conversationKey: string, ids: readonly string[]) {
    if (ids.length === 0) return [];
    return this.#write(() => {
      const deleted: string[] = [];
      // Their queued memory writes go with them (ON DELETE CASCADE).
      for (const id of ids) if (this.#stmt.deleteMessage.run(id, conversationKey).changes === 1) deleted.push(id);
      return deleted;
    });
  }

  async deleteConversation(ownerId: string, id: string) {
    const key = conversationKey(ownerId, id);
    return this.#write(() => {
      const ids = this.#stmt.messageIds.all(key).map((r) => r.id);
      // Messages go with it (ON DELETE CASCADE).
      this.#stmt.deleteConversation.run(key);
      return ids;
    });
  }

  async appendMessage({ remember, conversation: create, ...message }: NewMessage) {
    const stored: StoredMessage = { ...message, id: message.id ?? timeOrderedId(), createdAt: message.createdAt ?? monotonicNow() };
    const dueAt = stored.createdAt;
    await this.#write(() => {
      stored.tokens = tokensOf(stored);
      // A conversation created here is as new as its first message: nothing to touch. Else the
      // message is dated no earlier than the conversation's latest activity (see ConversationStore).
      const created = create !== undefined && this.#ensureConversation(create, stored.createdAt).created;
      if (!created) {
        const latest = this.#stmt.touchConversation.get(stored.createdAt, stored.conversationKey)?.updated_at;
        if (latest !== undefined && latest > stored.createdAt) {
          stored.createdAt = latest + 1;
          this.#stmt.touchConversation.get(stored.createdAt, stored.conversationKey);
        }
      }
      this.#stmt.insertMessage.run(
        stored.id,
        stored.conversationKey,
        stored.role,
        stored.content,
        stored.createdAt,
        stored.model ?? null,
        stored.finishReason ?? null,
        stored.usage?.inputTokens ?? null,
        stored.usage?.outputTokens ?? null,
        stored.tokens,
      );
      if (remember) this.#stmt.enqueueMemory.run(stored.id, ownerOfKey(stored.conversationKey), dueAt);
    }, stored.content.length);
    return stored;
  }

  async pendingMemories(limit: number, now: number, claim?: MemoryClaim): Promise<PendingMemory[]> {
    const read = () => this.#stmt.pendingMemories.all(now, limit);
    let rows = read();
    // Claimed in the transaction that reads them again: another process's writer waits for it,
    // then finds them taken. An empty queue (most looks at it) costs no write.
    if (claim && rows.length > 0) {
      rows = await this.#write(() => {
        const due = read();
        for (const r of due) this.#stmt.memoryClaim.run(claim.until, claim.token, r.id);
        return due;
      });
    }
    return rows.map((r) => ({ message: toMessage(r), ownerId: r.owner_id, conversationId: r.public_id, attempts: r.attempts }));
  }

  async settleMemories(done: readonly string[], retry: readonly { messageId: string; nextAt: number }[], claim?: string) {
    if (!done.length && !retry.length) return [];
    return this.#write(() => {
      const gone: string[] = [];
      const c = claim ?? null;
      // Nothing changed: claimed by another writer since (left to it), or no longer queued at all.
      const settled = (id: string, changes: number) => {
        if (changes === 0 && this.#stmt.memoryQueued.get(id) === undefined) gone.push(id);
      };
      for (const id of done) settled(id, this.#stmt.memoryDone.run({ id, claim: c }).changes);
      for (const r of retry) settled(r.messageId, this.#stmt.memoryRetry.run({ id: r.messageId, claim: c, nextAt: r.nextAt }).changes);
      return gone;
    });
  }

  async discardPendingMemories(ownerId: string, messageIds?: readonly string[]) {
    await this.#write(() => {
      if (!messageIds) this.#stmt.discardMemories.run(ownerId);
      else for (const id of messageIds) this.#stmt.discardMemory.run(ownerId, id);
    });
  }

  async getUserSettings(userId: string): Promise<UserSettings> {
    const row = this.#stmt.getSettings.get(userId);
    return row ? { memoryEnabled: row.memory_enabled === 1 } : { ...DEFAULT_USER_SETTINGS };
  }

  async setUserSettings(userId: string, settings: UserSettings) {
    await this.#write(() => this.#stmt.setSettings.run(userId, settings.memoryEnabled ? 1 : 0));
  }

  async recentMessages(key: string, limit: number) {
    return this.#stmt.recentMessages.all(key, limit).map(toMessage);
  }

  async listMessages(key: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const rows = after
      ? this.#stmt.listMessagesAfter.all(key, after.createdAt, after.createdAt, after.id, options.limit + 1)
      : this.#stmt.listMessages.all(key, options.limit + 1);
    return toPage(rows.map(toMessage), options.limit, byCreated);
  }

  async createUser(input: Omit<User, 'id' | 'createdAt'>) {
    const user: User = { ...input, email: input.email.toLowerCase(), id: crypto.randomUUID(), createdAt: Date.now() };
    try {
      await this.#write(() => this.#stmt.insertUser.run(user.id, user.email, user.name, user.passwordHash, user.createdAt));
    } catch (err) {
      if (err instanceof Error && 'code' in err && err.code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DuplicateEmailError();
      throw err;
    }
    return user;
  }

  async findUserByEmail(email: string) {
    const row = this.#stmt.userByEmail.get(email.toLowerCase());
    return row ? toUser(row) : undefined;
  }

  async findUserById(id: string) {
    const row = this.#stmt.userById.get(id);
    return row ? toUser(row) : undefined;
  }

  async updateUserPassword(userId: string, passwordHash: string) {
    await this.#write(() => this.#stmt.updatePassword.run(passwordHash, userId));
  }

  async deleteUser(userId: string) {
    return this.#write(() => {
      // Conversations take their messages (and queued memory writes) with them; the user row takes its sessions and API keys.
      this.#stmt.deleteOwnedConversations.run(userId);
      this.#stmt.deleteSettings.run(userId);
      this.#stmt.deleteOwnedRealtime.run(userId);
      return this.#stmt.deleteUser.run(userId).changes === 1;
    });
  }

  async recordRealtimeSession(r: RealtimeSessionRecord) {
    await this.#write(() => this.#stmt.insertRealtime.run(r.id, r.ownerId, r.provider, r.startedAt, r.endedAt, r.endReason, JSON.stringify(r.usage)));
  }

  async listRealtimeSessions(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<RealtimeSessionRecord>> {
    const before = decodeCursor(options.before);
    const rows = before
      ? this.#stmt.listRealtimeBefore.all(ownerId, before.createdAt, before.createdAt, before.id, options.limit + 1)
      : this.#stmt.listRealtime.all(ownerId, options.limit + 1);
    return toPage(rows.map(toRealtime), options.limit, byStarted);
  }

  async createSession(session: Session) {
    const now = Date.now();
    const prune = now >= this.#pruneSessionsAt;
    if (prune) this.#pruneSessionsAt = now + 3_600_000;
    await this.#write(() => {
      if (prune) this.#stmt.pruneSessions.run(now);
      this.#stmt.insertSession.run(session.id, session.userId, session.createdAt, session.expiresAt);
    });
  }

  async getSession(id: string) {
    const row = this.#stmt.getSession.get(id);
    return row ? toSession(row) : undefined;
  }

  async deleteSession(id: string) {
    await this.#write(() => this.#stmt.deleteSession.run(id));
  }

  async deleteUserSessions(userId: string, exceptId?: string) {
    return this.#write(() => {
      const ids = this.#stmt.userSessionIds.all(userId).map((r) => r.id).filter((id) => id !== exceptId);
      for (const id of ids) this.#stmt.deleteSession.run(id);
      return ids;
    });
  }

  async createApiKey(k: ApiKeyRecord, maxPerUser: number) {
    // Counted and inserted in one transaction: concurrent creations cannot pass the bound together.
    return this.#write(() => {
      if (this.#stmt.countApiKeys.get(k.userId)!.n >= maxPerUser) return false;
      this.#stmt.insertApiKey.run(k.id, k.userId, k.keyHash, k.prefix, k.name, k.models ? JSON.stringify(k.models) : null, k.rateLimitPerMinute, k.createdAt, k.expiresAt, k.lastUsedAt);
      return true;
    });
  }

  async findApiKeyByHash(keyHash: string) {
    const row = this.#stmt.apiKeyByHash.get(keyHash);
    return row ? toApiKey(row) : undefined;
  }

  async listApiKeys(userId: string) {
    return this.#stmt.listApiKeys.all(userId).map(toApiKey);
  }

  async deleteApiKey(userId: string, id: string) {
    return this.#write(() => this.#stmt.deleteApiKey.run(id, userId).changes === 1);
  }

  async deleteUserApiKeys(userId: string) {
    return this.#write(() => {
      const ids = this.#stmt.userApiKeyIds.all(userId).map((r) => r.id);
      this.#stmt.deleteUserApiKeys.run(userId);
      return ids;
    });
  }

  async touchApiKey(id: string, lastUsedAt: number) {
    await this.#write(() => this.#stmt.touchApiKey.run(lastUsedAt, id, lastUsedAt));
  }

  async ping() {
    this.#db.prepare('SELECT 1').get();
  }

  async close() {
    // Pending writes get their last chance, waiting on another process's lock if they must (shutting down, not serving).
    this.#lock.closing();
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length && this.#db.open) {
      try {
        this.#commit(batch);
      } catch (err) {
        for (const op of batch) op.reject(err);
      }
    }
    if (this.#db.open) this.#db.close();
    // After the connection above: the checkpointer's is then the last, and its close removes the WAL.
    await this.#checkpointer?.close();
  }

  /** What the WAL checkpointer did (undefined when checkpoints run on this connection). */
  get checkpoints(): Readonly<CheckpointStats> | undefined {
    return this.#checkpointer?.running ? this.#checkpointer.stats : undefined;
  }
}

/**
 * Version 2 only lacked tables that SCHEMA creates when missing, and so does version 4 (version 5
 * added `api_keys`); version 6 added the memory queue's `claim` column; version 1 needs its keys
 * rebuilt.
 */
function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version >= SCHEMA_VERSION) return;
  const hasV1 = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'conversations'").get() !== undefined;
  db.transaction(() => {
    db.exec(hasV1 && !columnExists(db, 'conversations', 'key') ? MIGRATE_FROM_V1 : SCHEMA);
    // Version 6: queued memory writes are claimed by the writer that reads them.
    if (!columnExists(db, 'memory_outbox', 'claim')) db.exec('ALTER TABLE memory_outbox ADD COLUMN claim TEXT');
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}

function columnExists(db: Database.Database, table: string, column: string): boolean {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).some((c) => c.name === column);
}

/** The database holds password hashes and every conversation: owner-only from its first byte. */
function createPrivateFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  // SQLite gives its -wal and -shm files the database file's permissions.
  chmodSync(file, 0o600);
}
