import { MongoClient, MongoServerError, type Collection, type Db, type Filter } from 'mongodb';
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

interface UserDoc {
  _id: string;
  email: string;
  name: string | null;
  passwordHash: string;
  createdAt: Date;
}
interface SessionDoc {
  _id: string;
  userId: string;
  createdAt: Date;
  expiresAt: Date;
}
/** `_id` is the message id. */
interface OutboxDoc {
  _id: string;
  ownerId: string;
  conversationKey: string;
  attempts: number;
  nextAt: Date;
  /** The token of the writer that took it (pendingMemories with a claim). */
  claim?: string;
}
interface RealtimeDoc {
  _id: string;
  ownerId: string;
  provider: string;
  startedAt: Date;
  endedAt: Date;
  endReason: string;
  usage: RealtimeSessionRecord['usage'];
}
interface SettingsDoc {
  _id: string;
  memoryEnabled: boolean;
}
/** `_id` is the key id. */
interface ApiKeyDoc {
  _id: string;
  userId: string;
  keyHash: string;
  prefix: string;
  name: string;
  models: string[] | null;
  rateLimitPerMinute: number | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
}
/** `_id` is the conversation key (owner and public id). */
interface ConversationDoc {
  _id: string;
  id: string;
  ownerId: string;
  title: string;
  createdAt: Date;
  updatedAt: Date;
}
interface MessageDoc {
  _id: string;
  conversationKey: string;
  role: 'user' | 'assistant';
  content: string;
  createdAt: Date;
  model?: string;
  finishReason?: FinishReason;
  usage?: { inputTokens: number; outputTokens: number };
  tokens?: number;
}

const DUPLICATE_KEY = 11000;

const toConversation = (d: ConversationDoc): Conversation => ({
  key: d._id,
  id: d.id,
  ownerId: d.ownerId,
  title: d.title,
  createdAt: d.createdAt.getTime(),
  updatedAt: d.updatedAt.getTime(),
});

const toMessage = (d: MessageDoc): StoredMessage => ({
  id: d._id,
  conversationKey: d.conversationKey,
  role: d.role,
  content: d.content,
  createdAt: d.createdAt.getTime(),
  ...(d.model === undefined ? {} : { model: d.model }),
  ...(d.finishReason === undefined ? {} : { finishReason: d.finishReason }),
  ...(d.usage === undefined ? {} : { usage: { inputTokens: d.usage.inputTokens, outputTokens: d.usage.outputTokens } }),
  ...(d.tokens === undefined ? {} : { tokens: d.tokens }),
});

const toSession = (d: SessionDoc): Session => ({ id: d._id, userId: d.userId, createdAt: d.createdAt.getTime(), expiresAt: d.expiresAt.getTime() });

const toApiKey = (d: ApiKeyDoc): ApiKeyRecord => ({
  id: d._id,
  userId: d.userId,
  name: d.name,
  prefix: d.prefix,
  keyHash: d.keyHash,
  models: d.models ? [...d.models] : null,
  rateLimitPerMinute: d.rateLimitPerMinute,
  createdAt: d.createdAt.getTime(),
  expiresAt: d.expiresAt ? d.expiresAt.getTime() : null,
  lastUsedAt: d.lastUsedAt ? d.lastUsedAt.getTime() : null,
});

const toUser = (d: UserDoc): User => ({ id: d._id, email: d.email, name: d.name, passwordHash: d.passwordHash, createdAt: d.createdAt.getTime() });

/** MongoDB adapter on the official driver; ids are the same UUID strings the other stores use. */
export class MongoConversationStore implements ConversationStore {
  readonly kind = 'mongodb';
  readonly #client: MongoClient;
  readonly #db: Db;
  readonly #users: Collection<UserDoc>;
  readonly #conversations: Collection<ConversationDoc>;
  readonly #messages: Collection<MessageDoc>;
  readonly #sessions: Collection<SessionDoc>;
  readonly #outbox: Collection<OutboxDoc>;
  readonly #settings: Collection<SettingsDoc>;
  readonly #realtime: Collection<RealtimeDoc>;
  readonly #apiKeys: Collection<ApiKeyDoc>;

  private constructor(client: MongoClient, dbName: string) {
    this.#client = client;
    this.#db = client.db(dbName);
    this.#users = this.#db.collection<UserDoc>('users');
    this.#conversations = this.#db.collection<ConversationDoc>('conversations');
    this.#messages = this.#db.collection<MessageDoc>('messages');
    this.#sessions = this.#db.collection<SessionDoc>('sessions');
    this.#outbox = this.#db.collection<OutboxDoc>('memory_outbox');
    this.#settings = this.#db.collection<SettingsDoc>('user_settings');
    this.#realtime = this.#db.collection<RealtimeDoc>('realtime_sessions');
    this.#apiKeys = this.#db.collection<ApiKeyDoc>('api_keys');
  }

  /** Connects and creates the indexes (idempotent), so a fresh database is ready to serve. */
  static async connect(uri: string, dbName: string, options: { connectTimeoutMs?: number } = {}): Promise<MongoConversationStore> {
    const timeout = options.connectTimeoutMs ?? 5_000;
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: timeout, connectTimeoutMS: timeout, maxPoolSize: 50, appName: 'ai-chat-gateway' });
    await client.connect();
    const store = new MongoConversationStore(client, dbName);
    await Promise.all([
      store.#users.createIndex({ email: 1 }, { unique: true, name: 'email_unique' }),
      store.#messages.createIndex({ conversationKey: 1, createdAt: 1, _id: 1 }, { name: 'conversation_time' }),
      store.#conversations.createIndex({ ownerId: 1, updatedAt: -1, id: -1 }, { name: 'owner_recent' }),
      store.#sessions.createIndex({ userId: 1 }, { name: 'user_sessions' }),
      // MongoDB removes expired sessions by itself.
      store.#sessions.createIndex({ expiresAt: 1 }, { name: 'session_expiry', expireAfterSeconds: 0 }),
      store.#outbox.createIndex({ nextAt: 1 }, { name: 'memory_due' }),
      store.#outbox.createIndex({ ownerId: 1 }, { name: 'memory_owner' }),
      store.#outbox.createIndex({ conversationKey: 1 }, { name: 'memory_conversation' }),
      store.#realtime.createIndex({ ownerId: 1, startedAt: -1, _id: -1 }, { name: 'realtime_owner_recent' }),
      store.#apiKeys.createIndex({ keyHash: 1 }, { unique: true, name: 'api_key_hash' }),
      store.#apiKeys.createIndex({ userId: 1, createdAt: -1, _id: -1 }, { name: 'api_keys_user' }),
    ]);
    return store;
  }

  async ensureConversation(input: { ownerId: string; id: string; title: string }) {
    const now = new Date(monotonicNow());
    const key = conversationKey(input.ownerId, input.id);
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.#conversations.findOneAndUpdate(
          { _id: key },
          { $setOnInsert: { id: input.id, ownerId: input.ownerId, title: input.title, createdAt: now, updatedAt: now } },
          { upsert: true, returnDocument: 'after', includeResultMetadata: true },
        );
        if (!res.value) throw new Error('Conversation missing after upsert');
        return { conversation: toConversation(res.value), created: res.lastErrorObject?.updatedExisting === false };
      } catch (err) {
        // Two concurrent upserts of one new key: the loser retries and finds the winner's document.
        if (attempt === 0 && err instanceof MongoServerError && err.code === DUPLICATE_KEY) continue;
        throw err;
      }
    }
  }

  async getConversation(ownerId: string, id: string) {
    const d = await this.#conversations.findOne({ _id: conversationKey(ownerId, id) });
    return d ? toConversation(d) : undefined;
  }

  async listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>> {
    const before = decodeCursor(options.before);
    const filter: Filter<ConversationDoc> = before
      ? {
          ownerId,
          $or: [{ updatedAt: { $lt: new Date(before.createdAt) } }, { updatedAt: new Date(before.createdAt), id: { $lt: before.id } }],
        }
      : { ownerId };
    const docs = await this.#conversations.find(filter).sort({ updatedAt: -1, id: -1 }).limit(options.limit + 1).toArray();
    return toPage(docs.map(toConversation), options.limit, byUpdated);
  }

  async renameConversation(ownerId: string, id: string, title: string) {
    const d = await this.#conversations.findOneAndUpdate({ _id: conversationKey(ownerId, id) }, { $set: { title } }, { returnDocument: 'after' });
    return d ? toConversation(d) : undefined;
  }

  /**
   * The new conversation first (refused when `toOwner` has one), then the old one is taken out
   * (only one of two concurrent moves finds it: the other takes its new one back and answers
   * undefined, as SQLite and the memory store do), then the messages and queued memory writes
   * follow. Without transactions a failure between the last steps leaves some messages under the
   * old key, unreachable; a crash there is the only way to lose them.
   */
  async moveConversation(fromOwner: string, id: string, toOwner: string) {
    const from = conversationKey(fromOwner, id);
    const to = conversationKey(toOwner, id);
    const old = await this.#conversations.findOne({ _id: from });
    if (!old) return undefined;
    const moved: ConversationDoc = { ...old, _id: to, ownerId: toOwner };
    try {
      await this.#conversations.insertOne(moved);
    } catch (err) {
      if ((err as { code?: unknown }).code === DUPLICATE_KEY) return undefined;
      throw err;
    }
    const taken = await this.#conversations.findOneAndDelete({ _id: from });
    if (!taken) {
      await this.#conversations.deleteOne({ _id: to });
      return undefined;
    }
    await this.#messages.updateMany({ conversationKey: from }, { $set: { conversationKey: to } });
    await this.#outbox.updateMany({ conversationKey: from }, { $set: { conversationKey: to, ownerId: toOwner } });
    return toConversation({ ...taken, _id: to, ownerId: toOwner });
  }

  async deleteMessages(conversationKey: string, ids: readonly string[]) {
    if (ids.length === 0) return [];
    const found = (await this.#messages.find({ _id: { $in: [...ids] }, conversationKey }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    if (found.length === 0) return [];
    await this.#messages.deleteMany({ _id: { $in: found }, conversationKey });
    await this.#outbox.deleteMany({ _id: { $in: found } });
    return found;
  }

  async deleteConversation(ownerId: string, id: string) {
    const key = conversationKey(ownerId, id);
    const ids = (await this.#messages.find({ conversationKey: key }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    // The conversation first: from then on a message appended to it (another node's reply) is
    // refused (appendMessage's touch finds nothing) instead of outliving it. One whose touch came
    // just before is taken back by its own appendMessage, which reads the conversation again.
    await this.#conversations.deleteOne({ _id: key });
    await this.#messages.deleteMany({ conversationKey: key });
    await this.#outbox.deleteMany({ conversationKey: key });
    return ids;
  }

  async appendMessage({ remember, conversation: create, ...message }: NewMessage) {
    const ensured = create === undefined ? undefined : await this.ensureConversation(create);
    const created = ensured?.created ?? false;
    /** Which conversation of that key the message belongs to: one deleted and started again under the same id is another. */
    let incarnation = ensured?.conversation.createdAt;
    const stored: StoredMessage = { ...message, id: message.id ?? timeOrderedId(), createdAt: message.createdAt ?? monotonicNow(), tokens: tokensOf(message) };
    const dueAt = new Date(stored.createdAt);
    if (!created) {
      // Never before the conversation's latest activity (see ConversationStore): touched first, and
      // its date read back. (A conversation created just now has no message to come after.)
      const touched = await this.#conversations.findOneAndUpdate(
        { _id: stored.conversationKey },
        { $max: { updatedAt: dueAt } },
        { returnDocument: 'after', projection: { updatedAt: 1, createdAt: 1 } },
      );
      // As SQLite's foreign key does: a message of no conversation would be kept by nothing and deleted with nothing.
      if (!touched) throw new Error('No such conversation');
      incarnation = touched.createdAt.getTime();
      if (touched.updatedAt.getTime() > stored.createdAt) {
        stored.createdAt = touched.updatedAt.getTime() + 1;
        await this.#conversations.updateOne({ _id: stored.conversationKey }, { $max: { updatedAt: new Date(stored.createdAt) } });
      }
    }
    const createdAt = new Date(stored.createdAt);
    await this.#messages.insertOne({
      _id: stored.id,
      conversationKey: stored.conversationKey,
      role: stored.role,
      content: stored.content,
      createdAt,
      ...(stored.model === undefined ? {} : { model: stored.model }),
      ...(stored.finishReason === undefined ? {} : { finishReason: stored.finishReason }),
      ...(stored.usage === undefined ? {} : { usage: stored.usage }),
      ...(stored.tokens === undefined ? {} : { tokens: stored.tokens }),
    });
    if (remember) {
      await this.#outbox.insertOne({ _id: stored.id, ownerId: ownerOfKey(stored.conversationKey), conversationKey: stored.conversationKey, attempts: 0, nextAt: dueAt });
    }
    // The touch and the insert are two steps (no transaction): a deletion of the conversation in
    // between would leave this message kept by nothing, and listed in the next conversation its
    // owner starts under the same id (seed 002's clients all send the same one). Read again after
    // the insert: gone, or started again, the message goes too.
    const still = await this.#conversations.findOne({ _id: stored.conversationKey }, { projection: { createdAt: 1 } });
    if (!still || still.createdAt.getTime() !== incarnation) {
      await this.#messages.deleteOne({ _id: stored.id });
      await this.#outbox.deleteOne({ _id: stored.id });
      throw new Error('No such conversation');
    }
    return stored;
  }

  async pendingMemories(limit: number, now: number, claim?: MemoryClaim): Promise<PendingMemory[]> {
    const due = await this.#dueMemories(limit, now);
    if (!claim || !due.length) return due;
    // Each entry is taken by one writer: the update of one that another writer took first (its
    // due date moved on) matches nothing, and only those carrying this token are this batch.
    const ids = due.map((p) => p.message.id);
    await this.#outbox.updateMany({ _id: { $in: ids }, nextAt: { $lte: new Date(now) } }, { $set: { nextAt: new Date(claim.until), claim: claim.token } });
    const taken = new Set((await this.#outbox.find({ _id: { $in: ids }, claim: claim.token }, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
    return due.filter((p) => taken.has(p.message.id));
  }

  async #dueMemories(limit: number, now: number): Promise<PendingMemory[]> {
    // A batch of nothing but orphans (see below) is cleared and the next one read, so that they
    // cannot stop the writer, which takes an empty batch for an empty queue.
    for (let pass = 0; pass < 16; pass++) {
      const due = await this.#outbox.find({ nextAt: { $lte: new Date(now) } }).sort({ nextAt: 1, _id: 1 }).limit(limit).toArray();
      if (!due.length) return [];
      const messages = new Map((await this.#messages.find({ _id: { $in: due.map((d) => d._id) } }).toArray()).map((d) => [d._id, d]));
      const keys = [...new Set(due.map((d) => d.conversationKey))];
      const conversations = new Map((await this.#conversations.find({ _id: { $in: keys } }).toArray()).map((d) => [d._id, d]));
      const out: PendingMemory[] = [];
      const orphans: string[] = [];
      for (const d of due) {
        const message = messages.get(d._id);
        const conversation = conversations.get(d.conversationKey);
        if (message && conversation) out.push({ message: toMessage(message), ownerId: d.ownerId, conversationId: conversation.id, attempts: d.attempts });
        else orphans.push(d._id);
      }
      // Writes whose message or conversation was deleted while they were stored (no transaction
      // holds the steps together here): nothing to remember, and left queued they would stay the
      // oldest due for good.
      if (orphans.length) {
        await this.#messages.deleteMany({ _id: { $in: orphans } });
        await this.#outbox.deleteMany({ _id: { $in: orphans } });
      }
      if (out.length || !orphans.length) return out;
    }
    return [];
  }

  async settleMemories(done: readonly string[], retry: readonly { messageId: string; nextAt: number }[], claim?: string) {
    const ids = [...done, ...retry.map((r) => r.messageId)];
    if (!ids.length) return [];
    // Read after what was written for them: an entry still queued now is discarded (if it is)
    // after that write, by a deletion that then erases it.
    const queued = new Set((await this.#outbox.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
    const ours = claim === undefined ? {} : { claim };
    if (done.length) await this.#outbox.deleteMany({ _id: { $in: [...done] }, ...ours });
    for (const r of retry) await this.#outbox.updateOne({ _id: r.messageId, ...ours }, { $inc: { attempts: 1 }, $set: { nextAt: new Date(r.nextAt) }, $unset: { claim: '' } });
    return ids.filter((id) => !queued.has(id));
  }

  async discardPendingMemories(ownerId: string, messageIds?: readonly string[]) {
    await this.#outbox.deleteMany(messageIds ? { ownerId, _id: { $in: [...messageIds] } } : { ownerId });
  }

  async getUserSettings(userId: string): Promise<UserSettings> {
    const d = await this.#settings.findOne({ _id: userId });
    return d ? { memoryEnabled: d.memoryEnabled } : { ...DEFAULT_USER_SETTINGS };
  }

  async setUserSettings(userId: string, settings: UserSettings) {
    await this.#settings.updateOne({ _id: userId }, { $set: { memoryEnabled: settings.memoryEnabled } }, { upsert: true });
  }

  async recentMessages(key: string, limit: number) {
    const docs = await this.#messages.find({ conversationKey: key }).sort({ createdAt: -1, _id: -1 }).limit(limit).toArray();
    return docs.reverse().map(toMessage);
  }

  async listMessages(key: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const filter: Filter<MessageDoc> = after
      ? {
          conversationKey: key,
          $or: [{ createdAt: { $gt: new Date(after.createdAt) } }, { createdAt: new Date(after.createdAt), _id: { $gt: after.id } }],
        }
      : { conversationKey: key };
    const docs = await this.#messages.find(filter).sort({ createdAt: 1, _id: 1 }).limit(options.limit + 1).toArray();
    return toPage(docs.map(toMessage), options.limit, byCreated);
  }

  async createUser(input: Omit<User, 'id' | 'createdAt'>) {
    const user: User = { ...input, email: input.email.toLowerCase(), id: crypto.randomUUID(), createdAt: Date.now() };
    try {
      await this.#users.insertOne({ _id: user.id, email: user.email, name: user.name, passwordHash: user.passwordHash, createdAt: new Date(user.createdAt) });
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new DuplicateEmailError();
      throw err;
    }
    return user;
  }

  async findUserByEmail(email: string) {
    const d = await this.#users.findOne({ email: email.toLowerCase() });
    return d ? toUser(d) : undefined;
  }

  async findUserById(id: string) {
    const d = await this.#users.findOne({ _id: id });
    return d ? toUser(d) : undefined;
  }

  async updateUserPassword(userId: string, passwordHash: string) {
    await this.#users.updateOne({ _id: userId }, { $set: { passwordHash } });
  }

  async deleteUser(userId: string) {
    await this.#sessions.deleteMany({ userId });
    await this.#apiKeys.deleteMany({ userId });
    const keys = (await this.#conversations.find({ ownerId: userId }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    if (keys.length) await this.#messages.deleteMany({ conversationKey: { $in: keys } });
    await this.#conversations.deleteMany({ ownerId: userId });
    await this.#outbox.deleteMany({ ownerId: userId });
    await this.#settings.deleteOne({ _id: userId });
    await this.#realtime.deleteMany({ ownerId: userId });
    const res = await this.#users.deleteOne({ _id: userId });
    // Once more after the account: a sign-in or key creation whose check of the account came
    // before its deletion may have stored a session or a key since the first pass (no foreign
    // keys here to refuse them). One that checks after this finds no account (Accounts.login).
    await this.#sessions.deleteMany({ userId });
    await this.#apiKeys.deleteMany({ userId });
    return res.deletedCount === 1;
  }

  async recordRealtimeSession(r: RealtimeSessionRecord) {
    await this.#realtime.insertOne({
      _id: r.id,
      ownerId: r.ownerId,
      provider: r.provider,
      startedAt: new Date(r.startedAt),
      endedAt: new Date(r.endedAt),
      endReason: r.endReason,
      usage: { ...r.usage },
    });
  }

  async listRealtimeSessions(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<RealtimeSessionRecord>> {
    const before = decodeCursor(options.before);
    const filter: Filter<RealtimeDoc> = before
      ? { ownerId, $or: [{ startedAt: { $lt: new Date(before.createdAt) } }, { startedAt: new Date(before.createdAt), _id: { $lt: before.id } }] }
      : { ownerId };
    const docs = await this.#realtime.find(filter).sort({ startedAt: -1, _id: -1 }).limit(options.limit + 1).toArray();
    return toPage(
      docs.map((d) => ({
        id: d._id,
        ownerId: d.ownerId,
        provider: d.provider,
        startedAt: d.startedAt.getTime(),
        endedAt: d.endedAt.getTime(),
        endReason: d.endReason,
        usage: d.usage,
      })),
      options.limit,
      byStarted,
    );
  }

  async createSession(session: Session) {
    await this.#sessions.insertOne({ _id: session.id, userId: session.userId, createdAt: new Date(session.createdAt), expiresAt: new Date(session.expiresAt) });
  }

  async getSession(id: string) {
    const d = await this.#sessions.findOne({ _id: id });
    return d ? toSession(d) : undefined;
  }

  async deleteSession(id: string) {
    await this.#sessions.deleteOne({ _id: id });
  }

  async deleteUserSessions(userId: string, exceptId?: string) {
    const filter: Filter<SessionDoc> = exceptId === undefined ? { userId } : { userId, _id: { $ne: exceptId } };
    const ids = (await this.#sessions.find(filter, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    if (ids.length) await this.#sessions.deleteMany({ _id: { $in: ids } });
    return ids;
  }

  /** Counted, then inserted: without transactions two concurrent creations may both pass; the caller serialises them per user on a node. */
  async createApiKey(k: ApiKeyRecord, maxPerUser: number) {
    if ((await this.#apiKeys.countDocuments({ userId: k.userId }, { limit: maxPerUser })) >= maxPerUser) return false;
    await this.#apiKeys.insertOne({
      _id: k.id,
      userId: k.userId,
      keyHash: k.keyHash,
      prefix: k.prefix,
      name: k.name,
      models: k.models ? [...k.models] : null,
      rateLimitPerMinute: k.rateLimitPerMinute,
      createdAt: new Date(k.createdAt),
      expiresAt: k.expiresAt === null ? null : new Date(k.expiresAt),
      lastUsedAt: k.lastUsedAt === null ? null : new Date(k.lastUsedAt),
    });
    return true;
  }

  async findApiKeyByHash(keyHash: string) {
    const d = await this.#apiKeys.findOne({ keyHash });
    return d ? toApiKey(d) : undefined;
  }

  async listApiKeys(userId: string) {
    return (await this.#apiKeys.find({ userId }).sort({ createdAt: -1, _id: -1 }).toArray()).map(toApiKey);
  }

  async deleteApiKey(userId: string, id: string) {
    return (await this.#apiKeys.deleteOne({ _id: id, userId })).deletedCount === 1;
  }

  async deleteUserApiKeys(userId: string) {
    const ids = (await this.#apiKeys.find({ userId }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    if (ids.length) await this.#apiKeys.deleteMany({ _id: { $in: ids } });
    return ids;
  }

  async touchApiKey(id: string, lastUsedAt: number) {
    const at = new Date(lastUsedAt);
    await this.#apiKeys.updateOne({ _id: id, $or: [{ lastUsedAt: null }, { lastUsedAt: { $lt: at } }] }, { $set: { lastUsedAt: at } });
  }

  async ping() {
    await this.#db.command({ ping: 1 });
  }

  async close() {
    await this.#client.close();
  }
}
