import {
  DuplicateEmailError,
  byCreated,
  byUpdated,
  decodeCursor,
  monotonicNow,
  toPage,
  type Conversation,
  type ConversationStore,
  type NewMessage,
  type Page,
  type StoredMessage,
  type User,
} from './conversation-store.js';

/** In-process store: the default on Workers, where no file system is available. Lost on restart. */
export class MemoryConversationStore implements ConversationStore {
  readonly kind = 'memory';
  readonly #conversations = new Map<string, Conversation>();
  readonly #messages = new Map<string, StoredMessage[]>();
  readonly #users = new Map<string, User>();
  readonly #usersByEmail = new Map<string, string>();

  async ensureConversation(input: { id: string; ownerId: string | null; title: string }) {
    const existing = this.#conversations.get(input.id);
    if (existing) return { conversation: { ...existing }, created: false };
    const now = monotonicNow();
    const conversation: Conversation = { ...input, createdAt: now, updatedAt: now };
    this.#conversations.set(input.id, conversation);
    this.#messages.set(input.id, []);
    return { conversation: { ...conversation }, created: true };
  }

  async getConversation(id: string) {
    const c = this.#conversations.get(id);
    return c ? { ...c } : undefined;
  }

  async listConversations(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<Conversation>> {
    const before = decodeCursor(options.before);
    const mine = [...this.#conversations.values()]
      .filter((c) => c.ownerId === ownerId)
      .sort((a, b) => b.updatedAt - a.updatedAt || (a.id < b.id ? 1 : -1))
      .filter((c) => !before || c.updatedAt < before.createdAt || (c.updatedAt === before.createdAt && c.id < before.id));
    return toPage(mine.slice(0, options.limit + 1).map((c) => ({ ...c })), options.limit, byUpdated);
  }

  async deleteConversation(id: string) {
    const ids = (this.#messages.get(id) ?? []).map((m) => m.id);
    this.#conversations.delete(id);
    this.#messages.delete(id);
    return ids;
  }

  async appendMessage(message: NewMessage) {
    const stored: StoredMessage = { ...message, id: message.id ?? crypto.randomUUID(), createdAt: message.createdAt ?? monotonicNow() };
    const list = this.#messages.get(message.conversationId);
    const conversation = this.#conversations.get(message.conversationId);
    if (!list || !conversation) throw new Error(`No conversation ${message.conversationId}`);
    list.push(stored);
    conversation.updatedAt = stored.createdAt;
    return { ...stored };
  }

  async recentMessages(conversationId: string, limit: number) {
    return (this.#messages.get(conversationId) ?? []).slice(-limit).map((m) => ({ ...m }));
  }

  async listMessages(conversationId: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const rest = (this.#messages.get(conversationId) ?? []).filter(
      (m) => !after || m.createdAt > after.createdAt || (m.createdAt === after.createdAt && m.id > after.id),
    );
    return toPage(rest.slice(0, options.limit + 1).map((m) => ({ ...m })), options.limit, byCreated);
  }

  async createUser(input: Omit<User, 'id' | 'createdAt'>) {
    const email = input.email.toLowerCase();
    if (this.#usersByEmail.has(email)) throw new DuplicateEmailError();
    const user: User = { ...input, email, id: crypto.randomUUID(), createdAt: Date.now() };
    this.#users.set(user.id, user);
    this.#usersByEmail.set(email, user.id);
    return { ...user };
  }

  async findUserByEmail(email: string) {
    const id = this.#usersByEmail.get(email.toLowerCase());
    return id ? this.findUserById(id) : undefined;
  }

  async findUserById(id: string) {
    const u = this.#users.get(id);
    return u ? { ...u } : undefined;
  }

  async ping() {}
  async close() {}
}
