import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  DuplicateEmailError,
  byCreated,
  byUpdated,
  decodeCursor,
  monotonicNow,
  toPage,
  type Conversation,
  type ConversationStore,
  type FinishReason,
  type NewMessage,
  type Page,
  type StoredMessage,
  type User,
} from './conversation-store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
  id TEXT PRIMARY KEY,
  owner_id TEXT,
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_owner_recent ON conversations (owner_id, updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  model TEXT,
  finish_reason TEXT,
  input_tokens INTEGER,
  output_tokens INTEGER
);
CREATE INDEX IF NOT EXISTS messages_conversation_time ON messages (conversation_id, created_at, id);
`;

interface ConversationRow {
  id: string;
  owner_id: string | null;
  title: string;
  created_at: number;
  updated_at: number;
}
interface MessageRow {
  id: string;
  conversation_id: string;
  role: 'user' | 'assistant';
  content: string;
  created_at: number;
  model: string | null;
  finish_reason: FinishReason | null;
  input_tokens: number | null;
  output_tokens: number | null;
}
interface UserRow {
  id: string;
  email: string;
  name: string | null;
  password_hash: string;
  created_at: number;
}

const toConversation = (r: ConversationRow): Conversation => ({
  id: r.id,
  ownerId: r.owner_id,
  title: r.title,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toMessage = (r: MessageRow): StoredMessage => ({
  id: r.id,
  conversationId: r.conversation_id,
  role: r.role,
  content: r.content,
  createdAt: r.created_at,
  ...(r.model === null ? {} : { model: r.model }),
  ...(r.finish_reason === null ? {} : { finishReason: r.finish_reason }),
  ...(r.input_tokens === null || r.output_tokens === null ? {} : { usage: { inputTokens: r.input_tokens, outputTokens: r.output_tokens } }),
});

const toUser = (r: UserRow): User => ({ id: r.id, email: r.email, name: r.name, passwordHash: r.password_hash, createdAt: r.created_at });

/**
 * The embedded default: one SQLite file (WAL mode) under DATA_DIR that survives restarts.
 * Writes are group-committed: every write queued in one turn of the event loop goes into
 * one transaction, so a burst of concurrent chat turns costs one commit, not hundreds.
 * Each write's promise settles after its transaction committed.
 */
export class SqliteConversationStore implements ConversationStore {
  readonly kind = 'sqlite';
  readonly #db: Database.Database;
  readonly #stmt;
  /** Writes queued for the next group commit. */
  #pending: { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
    this.#db = db;
    this.#stmt = {
      insertConversation: db.prepare<[string, string | null, string, number, number]>(
        'INSERT INTO conversations (id, owner_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      getConversation: db.prepare<[string], ConversationRow>('SELECT * FROM conversations WHERE id = ?'),
      listConversations: db.prepare<[string, number], ConversationRow>(
        'SELECT * FROM conversations WHERE owner_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?',
      ),
      listConversationsBefore: db.prepare<[string, number, number, string, number], ConversationRow>(
        `SELECT * FROM conversations WHERE owner_id = ? AND (updated_at < ? OR (updated_at = ? AND id < ?))
         ORDER BY updated_at DESC, id DESC LIMIT ?`,
      ),
      messageIds: db.prepare<[string], { id: string }>('SELECT id FROM messages WHERE conversation_id = ?'),
      deleteMessages: db.prepare<[string]>('DELETE FROM messages WHERE conversation_id = ?'),
      deleteConversation: db.prepare<[string]>('DELETE FROM conversations WHERE id = ?'),
      insertMessage: db.prepare(
        `INSERT INTO messages (id, conversation_id, role, content, created_at, model, finish_reason, input_tokens, output_tokens)
         VALUES (@id, @conversation_id, @role, @content, @created_at, @model, @finish_reason, @input_tokens, @output_tokens)`,
      ),
      touchConversation: db.prepare<[number, string]>('UPDATE conversations SET updated_at = max(updated_at, ?) WHERE id = ?'),
      recentMessages: db.prepare<[string, number], MessageRow>(
        'SELECT * FROM (SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at DESC, id DESC LIMIT ?) ORDER BY created_at, id',
      ),
      listMessages: db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id LIMIT ?'),
      listMessagesAfter: db.prepare<[string, number, number, string, number], MessageRow>(
        `SELECT * FROM messages WHERE conversation_id = ? AND (created_at > ? OR (created_at = ? AND id > ?))
         ORDER BY created_at, id LIMIT ?`,
      ),
      insertUser: db.prepare<[string, string, string | null, string, number]>(
        'INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      userByEmail: db.prepare<[string], UserRow>('SELECT * FROM users WHERE email = ?'),
      userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'),
    };
  }

  #write<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(() => this.#flush());
      this.#pending.push({ run, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  #flush() {
    const batch = this.#pending;
    this.#pending = [];
    if (!this.#db.open) {
      for (const op of batch) op.reject(new Error('The store is closed'));
      return;
    }
    const results: { ok: boolean; value: unknown }[] = [];
    try {
      this.#db.transaction(() => {
        for (const op of batch) {
          // Each write is its own savepoint: a failing one is undone alone, the rest still commit.
          try {
            results.push({ ok: true, value: this.#db.transaction(op.run)() });
          } catch (err) {
            results.push({ ok: false, value: err });
          }
        }
      })();
    } catch (err) {
      for (const op of batch) op.reject(err);
      return;
    }
    batch.forEach((op, i) => (results[i]!.ok ? op.resolve(results[i]!.value) : op.reject(results[i]!.value)));
  }

  async ensureConversation(input: { id: string; ownerId: string | null; title: string }) {
    return this.#write(() => this.#ensureConversation(input));
  }

  #ensureConversation(input: { id: string; ownerId: string | null; title: string }) {
    const now = monotonicNow();
    const created = this.#stmt.insertConversation.run(input.id, input.ownerId, input.title, now, now).changes === 1;
    if (created) return { conversation: { ...input, createdAt: now, updatedAt: now }, created };
    const row = this.#stmt.getConversation.get(input.id);
    if (!row) throw new Error(`Conversation ${input.id} vanished after insert`);
    return { conversation: toConversation(row), created };
  }

  async getConversation(id: string) {
    const row = this.#stmt.getConversation.get(id);
    return row ? toConversation(row) : undefined;
  }

  async listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>> {
    const before = decodeCursor(options.before);
    const rows = before
      ? this.#stmt.listConversationsBefore.all(ownerId, before.createdAt, before.createdAt, before.id, options.limit + 1)
      : this.#stmt.listConversations.all(ownerId, options.limit + 1);
    return toPage(rows.map(toConversation), options.limit, byUpdated);
  }

  async deleteConversation(id: string) {
    return this.#write(() => {
      const ids = this.#stmt.messageIds.all(id).map((r) => r.id);
      this.#stmt.deleteMessages.run(id);
      this.#stmt.deleteConversation.run(id);
      return ids;
    });
  }

  async appendMessage(message: NewMessage) {
    const stored: StoredMessage = { ...message, id: message.id ?? crypto.randomUUID(), createdAt: message.createdAt ?? monotonicNow() };
    await this.#write(() => {
      this.#stmt.insertMessage.run({
        id: stored.id,
        conversation_id: stored.conversationId,
        role: stored.role,
        content: stored.content,
        created_at: stored.createdAt,
        model: stored.model ?? null,
        finish_reason: stored.finishReason ?? null,
        input_tokens: stored.usage?.inputTokens ?? null,
        output_tokens: stored.usage?.outputTokens ?? null,
      });
      this.#stmt.touchConversation.run(stored.createdAt, stored.conversationId);
    });
    return stored;
  }

  async recentMessages(conversationId: string, limit: number) {
    return this.#stmt.recentMessages.all(conversationId, limit).map(toMessage);
  }

  async listMessages(conversationId: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const rows = after
      ? this.#stmt.listMessagesAfter.all(conversationId, after.createdAt, after.createdAt, after.id, options.limit + 1)
      : this.#stmt.listMessages.all(conversationId, options.limit + 1);
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

  async ping() {
    this.#db.prepare('SELECT 1').get();
  }

  async close() {
    if (this.#pending.length) this.#flush();
    if (this.#db.open) this.#db.close();
  }
}
