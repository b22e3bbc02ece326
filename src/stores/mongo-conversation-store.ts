import { MongoClient, MongoServerError, type Collection, type Db, type Filter } from 'mongodb';
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

interface UserDoc {
  _id: string;
  email: string;
  name: string | null;
  passwordHash: string;
  createdAt: Date;
}
interface ConversationDoc {
  _id: string;
  ownerId: string | null;
  title: string;
  createdAt: Date;
  updatedAt: Date;
}
interface MessageDoc {
  _id: string;
  conversationId: string;
  role: 'user' | 'assistant';
  content: string;
  createdAt: Date;
  model?: string;
  finishReason?: FinishReason;
  usage?: { inputTokens: number; outputTokens: number };
}

const DUPLICATE_KEY = 11000;

const toConversation = (d: ConversationDoc): Conversation => ({
  id: d._id,
  ownerId: d.ownerId,
  title: d.title,
  createdAt: d.createdAt.getTime(),
  updatedAt: d.updatedAt.getTime(),
});

const toMessage = (d: MessageDoc): StoredMessage => ({
  id: d._id,
  conversationId: d.conversationId,
  role: d.role,
  content: d.content,
  createdAt: d.createdAt.getTime(),
  ...(d.model === undefined ? {} : { model: d.model }),
  ...(d.finishReason === undefined ? {} : { finishReason: d.finishReason }),
  ...(d.usage === undefined ? {} : { usage: { inputTokens: d.usage.inputTokens, outputTokens: d.usage.outputTokens } }),
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

  private constructor(client: MongoClient, dbName: string) {
    this.#client = client;
    this.#db = client.db(dbName);
    this.#users = this.#db.collection<UserDoc>('users');
    this.#conversations = this.#db.collection<ConversationDoc>('conversations');
    this.#messages = this.#db.collection<MessageDoc>('messages');
  }

  /** Connects and creates the indexes (idempotent), so a fresh database is ready to serve. */
  static async connect(uri: string, dbName: string): Promise<MongoConversationStore> {
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 50, appName: 'ai-chat-gateway' });
    await client.connect();
    const store = new MongoConversationStore(client, dbName);
    await Promise.all([
      store.#users.createIndex({ email: 1 }, { unique: true, name: 'email_unique' }),
      store.#messages.createIndex({ conversationId: 1, createdAt: 1, _id: 1 }, { name: 'conversation_time' }),
      store.#conversations.createIndex({ ownerId: 1, updatedAt: -1, _id: -1 }, { name: 'owner_recent' }),
    ]);
    return store;
  }

  async ensureConversation(input: { id: string; ownerId: string | null; title: string }) {
    const now = new Date(monotonicNow());
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.#conversations.findOneAndUpdate(
          { _id: input.id },
          { $setOnInsert: { ownerId: input.ownerId, title: input.title, createdAt: now, updatedAt: now } },
          { upsert: true, returnDocument: 'after', includeResultMetadata: true },
        );
        if (!res.value) throw new Error(`Conversation ${input.id} missing after upsert`);
        return { conversation: toConversation(res.value), created: res.lastErrorObject?.updatedExisting === false };
      } catch (err) {
        // Two concurrent upserts of one new id: the loser retries and finds the winner's document.
        if (attempt === 0 && err instanceof MongoServerError && err.code === DUPLICATE_KEY) continue;
        throw err;
      }
    }
  }

  async getConversation(id: string) {
    const d = await this.#conversations.findOne({ _id: id });
    return d ? toConversation(d) : undefined;
  }

  async listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>> {
    const before = decodeCursor(options.before);
    const filter: Filter<ConversationDoc> = before
      ? {
          ownerId,
          $or: [{ updatedAt: { $lt: new Date(before.createdAt) } }, { updatedAt: new Date(before.createdAt), _id: { $lt: before.id } }],
        }
      : { ownerId };
    const docs = await this.#conversations.find(filter).sort({ updatedAt: -1, _id: -1 }).limit(options.limit + 1).toArray();
    return toPage(docs.map(toConversation), options.limit, byUpdated);
  }

  async deleteConversation(id: string) {
    const ids = (await this.#messages.find({ conversationId: id }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    await this.#messages.deleteMany({ conversationId: id });
    await this.#conversations.deleteOne({ _id: id });
    return ids;
  }

  async appendMessage(message: NewMessage) {
    const stored: StoredMessage = { ...message, id: message.id ?? crypto.randomUUID(), createdAt: message.createdAt ?? monotonicNow() };
    const createdAt = new Date(stored.createdAt);
    await this.#messages.insertOne({
      _id: stored.id,
      conversationId: stored.conversationId,
      role: stored.role,
      content: stored.content,
      createdAt,
      ...(stored.model === undefined ? {} : { model: stored.model }),
      ...(stored.finishReason === undefined ? {} : { finishReason: stored.finishReason }),
      ...(stored.usage === undefined ? {} : { usage: stored.usage }),
    });
    await this.#conversations.updateOne({ _id: stored.conversationId, updatedAt: { $lt: createdAt } }, { $set: { updatedAt: createdAt } });
    return stored;
  }

  async recentMessages(conversationId: string, limit: number) {
    const docs = await this.#messages.find({ conversationId }).sort({ createdAt: -1, _id: -1 }).limit(limit).toArray();
    return docs.reverse().map(toMessage);
  }

  async listMessages(conversationId: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const filter: Filter<MessageDoc> = after
      ? {
          conversationId,
          $or: [{ createdAt: { $gt: new Date(after.createdAt) } }, { createdAt: new Date(after.createdAt), _id: { $gt: after.id } }],
        }
      : { conversationId };
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

  async ping() {
    await this.#db.command({ ping: 1 });
  }

  async close() {
    await this.#client.close();
  }
}
