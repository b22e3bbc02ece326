import type { ConversationStore, Session } from '../stores/conversation-store.js';
import { BoundedMap } from '../bounded-map.js';

export interface SessionRegistryOptions {
  /** How long a check is remembered. Revocations on this node take effect at once; other nodes see them within this time. */
  cacheMs: number;
  /** Remembered checks at most; the oldest are forgotten first. */
  maxEntries?: number;
}

type RevokedListener = (userId: string, sessionIds: readonly string[]) => void;

interface CacheEntry {
  active: boolean;
  /** The session's user, for an active entry: a token naming the session for another user is refused. */
  userId: string | undefined;
  until: number;
}

/**
 * Sign-in sessions: every token this server issues names one, and deleting it (logout,
 * sign out everywhere, password change, account deletion) revokes the token on every entry
 * point. Checks are cached briefly so the hot path does not read the store per event.
 */
export class SessionRegistry {
  readonly #cache: BoundedMap<string, CacheEntry>;
  readonly #listeners = new Set<RevokedListener>();

  constructor(
    private readonly store: ConversationStore,
    private readonly options: SessionRegistryOptions,
  ) {
    this.#cache = new BoundedMap(options.maxEntries ?? 50_000);
  }

  async open(userId: string, ttlSeconds: number): Promise<Session> {
    const now = Date.now();
    const session: Session = { id: crypto.randomUUID(), userId, createdAt: now, expiresAt: now + ttlSeconds * 1000 };
    await this.store.createSession(session);
    this.#remember(session.id, userId, Math.min(now + this.options.cacheMs, session.expiresAt));
    return session;
  }

  /** True when the session exists, belongs to this user and has not expired. */
  async isActive(sessionId: string, userId: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.#cache.get(sessionId);
    if (cached && cached.until > now) return cached.active && cached.userId === userId;
    const session = await this.store.getSession(sessionId);
    // A revocation while the store answered has the last word: what was read may predate it,
    // and remembering it would let the revoked token in for another cacheMs.
    const meanwhile = this.#cache.get(sessionId);
    if (meanwhile && !meanwhile.active && meanwhile.until > Date.now()) return false;
    const live = session !== undefined && session.expiresAt > now;
    // What the store says of the session itself is remembered, whoever asked: a token naming
    // another user's session is refused without making the session look revoked to its own.
    if (live) this.#remember(sessionId, session.userId, Math.min(now + this.options.cacheMs, session.expiresAt));
    else this.#remember(sessionId, undefined, now + this.options.cacheMs);
    return live && session.userId === userId;
  }

  async revoke(userId: string, sessionId: string): Promise<void> {
    await this.store.deleteSession(sessionId);
    this.#forget(userId, [sessionId]);
  }

  /** Revokes every session of the user but `exceptId`; returns how many. */
  async revokeAll(userId: string, exceptId?: string): Promise<number> {
    const ids = await this.store.deleteUserSessions(userId, exceptId);
    this.#forget(userId, ids);
    return ids.length;
  }

  /** Called after sessions are revoked (e.g. to disconnect their sockets). */
  onRevoked(listener: RevokedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** For sessions that ended elsewhere (account deletion): forget them and tell the listeners. */
  forget(userId: string, sessionIds: readonly string[]): void {
    this.#forget(userId, sessionIds);
  }

  #forget(userId: string, sessionIds: readonly string[]) {
    const until = Date.now() + this.options.cacheMs;
    for (const id of sessionIds) this.#remember(id, undefined, until);
    if (sessionIds.length) for (const listener of this.#listeners) listener(userId, sessionIds);
  }

  /** `userId`: the session's user while it is active; undefined: not active (revoked, expired, unknown). */
  #remember(sessionId: string, userId: string | undefined, until: number) {
    this.#cache.set(sessionId, { active: userId !== undefined, userId, until });
  }
}
