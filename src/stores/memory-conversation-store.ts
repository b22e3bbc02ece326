import {
  DuplicateEmailError,
  byCreated,
  byUpdated,
  conversationKey,
  timeOrderedId,
  tokensOf,
  decodeCursor,
  monotonicNow,
  toPage,
  newestKeyFirst,
  type ApiKeyRecord,
  type Conversation,
  type ConversationStore,
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

/** In-process store: the default on Workers, where no file system is available. Lost on restart. */
export class MemoryConversationStore implements ConversationStore {
  readonly kind = 'memory';
  readonly #conversations = new Map<string, Conversation>();
  readonly #messages = new Map<string, StoredMessage[]>();
  readonly #users = new Map<string, User>();
  readonly #usersByEmail = new Map<string, string>();
  readonly #sessions = new Map<string, Session>();
  /** Queued memory writes by message id. */
  readonly #outbox = new Map<string, { ownerId: string; conversationKey: string; attempts: number; nextAt: number; claim?: string | undefined }>();
  readonly #settings = new Map<string, UserSettings>();
  readonly #realtime: RealtimeSessionRecord[] = [];
  readonly #apiKeys = new Map<string, ApiKeyRecord>();
  readonly #apiKeysByHash = new Map<string, string>();
  #pruneAt = 0;

  async ensureConversation(input: { ownerId: string; id: string; title: string }) {
    const key = conversationKey(input.ownerId, input.id);
    const existing = this.#conversations.get(key);
    if (existing) return { conversation: { ...existing }, created: false };
    const now = monotonicNow();
    const conversation: Conversation = { key, ...input, createdAt: now, updatedAt: now };
    this.#conversations.set(key, conversation);
    this.#messages.set(key, []);
    return { conversation: { ...conversation }, created: true };
  }

  async getConversation(ownerId: string, id: string) {
    const c = this.#conversations.get(conversationKey(ownerId, id));
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

  async renameConversation(ownerId: string, id: string, title: string) {
    const c = this.#conversations.get(conversationKey(ownerId, id));
    if (!c) return undefined;
    c.title = title;
    return { ...c };
  }

  async moveConversation(fromOwner: string, id: string, toOwner: string) {
    const from = conversationKey(fromOwner, id);
    const to = conversationKey(toOwner, id);
    const c = this.#conversations.get(from);
    if (!c || this.#conversations.has(to)) return undefined;
    const moved: Conversation = { ...c, key: to, ownerId: toOwner };
    this.#conversations.delete(from);
    this.#conversations.set(to, moved);
    const messages = this.#messages.get(from);
    if (messages) {
      for (const m of messages) m.conversationKey = to;
      this.#messages.delete(from);
      this.#messages.set(to, messages);
    }
    for (const entry of this.#outbox.values()) {
      if (entry.conversationKey !== from) continue;
      entry.conversationKey = to;
      entry.ownerId = toOwner;
    }
    return { ...moved };
  }

  async deleteMessages(conversationKey: string, ids: readonly string[]) {
    const messages = this.#messages.get(conversationKey);
    if (!messages) return [];
    const wanted = new Set(ids);
    const deleted = messages.filter((m) => wanted.has(m.id)).map((m) => m.id);
    if (deleted.length === 0) return [];
    this.#messages.set(
      conversationKey,
      messages.filter((m) => !wanted.has(m.id)),
    );
    for (const id of deleted) this.#outbox.delete(id);
    return deleted;
  }

  async deleteConversation(ownerId: string, id: string) {
    const key = conversationKey(ownerId, id);
    const ids = (this.#messages.get(key) ?? []).map((m) => m.id);
    for (const id of ids) this.#outbox.delete(id);
    this.#conversations.delete(key);
    this.#messages.delete(key);
    return ids;
  }

  async appendMessage({ remember, conversation: create, ...message }: NewMessage) {
    if (create) await this.ensureConversation(create);
    const stored: StoredMessage = { ...message, id: message.id ?? timeOrderedId(), createdAt: message.createdAt ?? monotonicNow(), tokens: tokensOf(message) };
    const list = this.#messages.get(message.conversationKey);
    const conversation = this.#conversations.get(message.conversationKey);
    if (!list || !conversation) throw new Error('No such conversation');
    const dueAt = stored.createdAt;
    // Never before the conversation's latest activity: just after it (see ConversationStore).
    if (conversation.updatedAt > stored.createdAt) stored.createdAt = conversation.updatedAt + 1;
    list.push(stored);
    conversation.updatedAt = stored.createdAt;
    if (remember) this.#outbox.set(stored.id, { ownerId: conversation.ownerId, conversationKey: conversation.key, attempts: 0, nextAt: dueAt });
    return { ...stored };
  }

  async pendingMemories(limit: number, now: number, claim?: MemoryClaim): Promise<PendingMemory[]> {
    const due = [...this.#outbox].filter(([, e]) => e.nextAt <= now).sort((a, b) => a[1].nextAt - b[1].nextAt || (a[0] < b[0] ? -1 : 1)).slice(0, limit);
    const out: PendingMemory[] = [];
    for (const [messageId, e] of due) {
      const message = this.#messages.get(e.conversationKey)?.find((m) => m.id === messageId);
      const conversation = this.#conversations.get(e.conversationKey);
      if (!message || !conversation) continue;
      out.push({ message: { ...message }, ownerId: e.ownerId, conversationId: conversation.id, attempts: e.attempts });
      if (claim) Object.assign(e, { nextAt: claim.until, claim: claim.token });
    }
    return out;
  }

  async settleMemories(done: readonly string[], retry: readonly { messageId: string; nextAt: number }[], claim?: string) {
    const gone: string[] = [];
    const ours = (id: string) => {
      const e = this.#outbox.get(id);
      if (!e) gone.push(id);
      return e && (claim === undefined || e.claim === claim) ? e : undefined;
    };
    for (const id of done) if (ours(id)) this.#outbox.delete(id);
    for (const r of retry) {
      const e = ours(r.messageId);
      if (e) Object.assign(e, { attempts: e.attempts + 1, nextAt: r.nextAt, claim: undefined });
    }
    return gone;
  }

  async discardPendingMemories(ownerId: string, messageIds?: readonly string[]) {
    const only = messageIds && new Set(messageIds);
    for (const [id, e] of this.#outbox) if (e.ownerId === ownerId && (!only || only.has(id))) this.#outbox.delete(id);
  }

  async getUserSettings(userId: string) {
    return { ...(this.#settings.get(userId) ?? DEFAULT_USER_SETTINGS) };
  }

  async setUserSettings(userId: string, settings: UserSettings) {
    this.#settings.set(userId, { ...settings });
  }

  async recentMessages(key: string, limit: number) {
    return (this.#messages.get(key) ?? []).slice(-limit).map((m) => ({ ...m }));
  }

  async listMessages(key: string, options: { limit: number; after?: string | undefined }): Promise<Page<StoredMessage>> {
    const after = decodeCursor(options.after);
    const rest = (this.#messages.get(key) ?? []).filter(
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

  async updateUserPassword(userId: string, passwordHash: string) {
    const u = this.#users.get(userId);
    if (u) u.passwordHash = passwordHash;
  }

  async deleteUser(userId: string) {
    const user = this.#users.get(userId);
    if (!user) return false;
    await this.deleteUserSessions(userId);
    await this.deleteUserApiKeys(userId);
    for (const c of [...this.#conversations.values()]) if (c.ownerId === userId) await this.deleteConversation(userId, c.id);
    await this.discardPendingMemories(userId);
    this.#settings.delete(userId);
    for (let i = this.#realtime.length - 1; i >= 0; i--) if (this.#realtime[i]!.ownerId === userId) this.#realtime.splice(i, 1);
    this.#usersByEmail.delete(user.email);
    this.#users.delete(userId);
    // Once more after the account (see the MongoDB store): what was stored while the steps above awaited.
    await this.deleteUserSessions(userId);
    await this.deleteUserApiKeys(userId);
    return true;
  }

  async recordRealtimeSession(record: RealtimeSessionRecord) {
    this.#realtime.push({ ...record, usage: { ...record.usage } });
    // Bounded: a per-isolate store keeps the latest only.
    if (this.#realtime.length > 10_000) this.#realtime.splice(0, this.#realtime.length - 10_000);
  }

  async listRealtimeSessions(ownerId: string, options: { limit: number; before?: string | undefined }): Promise<Page<RealtimeSessionRecord>> {
    const before = decodeCursor(options.before);
    const mine = this.#realtime
      .filter((r) => r.ownerId === ownerId)
      .sort((a, b) => b.startedAt - a.startedAt || (a.id < b.id ? 1 : -1))
      .filter((r) => !before || r.startedAt < before.createdAt || (r.startedAt === before.createdAt && r.id < before.id));
    return toPage(mine.slice(0, options.limit + 1), options.limit, byStarted);
  }

  async createSession(session: Session) {
    this.#sessions.set(session.id, { ...session });
    this.#pruneSessions();
  }

  async getSession(id: string) {
    const s = this.#sessions.get(id);
    return s ? { ...s } : undefined;
  }

  async deleteSession(id: string) {
    this.#sessions.delete(id);
  }

  async deleteUserSessions(userId: string, exceptId?: string) {
    const deleted: string[] = [];
    for (const s of this.#sessions.values()) {
      if (s.userId === userId && s.id !== exceptId) deleted.push(s.id);
    }
    for (const id of deleted) this.#sessions.delete(id);
    return deleted;
  }

  /** Expired sessions are useless; drop them (at most once a minute) so the map stays bounded by live ones. */
  #pruneSessions() {
    const now = Date.now();
    if (now < this.#pruneAt) return;
    this.#pruneAt = now + 60_000;
    for (const [id, s] of this.#sessions) if (s.expiresAt < now) this.#sessions.delete(id);
  }

  async createApiKey(key: ApiKeyRecord, maxPerUser: number) {
    let count = 0;
    for (const k of this.#apiKeys.values()) if (k.userId === key.userId) count++;
    if (count >= maxPerUser) return false;
    this.#apiKeys.set(key.id, copyKey(key));
    this.#apiKeysByHash.set(key.keyHash, key.id);
    return true;
  }

  async findApiKeyByHash(keyHash: string) {
    const id = this.#apiKeysByHash.get(keyHash);
    const key = id === undefined ? undefined : this.#apiKeys.get(id);
    return key ? copyKey(key) : undefined;
  }

  async listApiKeys(userId: string) {
    return [...this.#apiKeys.values()].filter((k) => k.userId === userId).sort(newestKeyFirst).map(copyKey);
  }

  async deleteApiKey(userId: string, id: string) {
    const key = this.#apiKeys.get(id);
    if (!key || key.userId !== userId) return false;
    this.#apiKeys.delete(id);
    this.#apiKeysByHash.delete(key.keyHash);
    return true;
  }

  async deleteUserApiKeys(userId: string) {
    const ids = [...this.#apiKeys.values()].filter((k) => k.userId === userId).map((k) => k.id);
    for (const id of ids) await this.deleteApiKey(userId, id);
    return ids;
  }

  async touchApiKey(id: string, lastUsedAt: number) {
    const key = this.#apiKeys.get(id);
    if (key && (key.lastUsedAt ?? 0) < lastUsedAt) key.lastUsedAt = lastUsedAt;
  }

  async ping() {}
  async close() {}
}

const copyKey = (k: ApiKeyRecord): ApiKeyRecord => ({ ...k, models: k.models ? [...k.models] : null });
