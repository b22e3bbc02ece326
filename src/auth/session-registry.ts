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
    this.#remember(session.id, true, Math.min(now + this.options.cacheMs, session.expiresAt));
    return session;
  }

  /** True when the session exists, belongs to this user and has not expired. */
  async isActive(sessionId: string, userId: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.#cache.get(sessionId);
    if (cached && cached.until > now) return cached.active;
    const session = await this.store.getSession(sessionId);
    // A revocation while the store answered has the last word: what was read may predate it,
    // and remembering it would let the revoked token in for another cacheMs.
    const meanwhile = this.#cache.get(sessionId);
    if (meanwhile && !meanwhile.active && meanwhile.until > Date.now()) return false;
    const active = session !== undefined && session.userId === userId && session.expiresAt > now;
    this.#remember(sessionId, active, active ? Math.min(now + this.options.cacheMs, session!.expiresAt) : now + this.options.cacheMs);
    return active;
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
    for (const id of sessionIds) this.#remember(id, false, until);
    if (sessionIds.length) for (const listener of this.#listeners) listener(userId, sessionIds);
  }

  #remember(sessionId: string, active: boolean, until: number) {
    this.#cache.set(sessionId, { active, until });
  }
}
