import type { Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { timeOrderedId, type ApiKeyRecord, type ConversationStore } from '../stores/conversation-store.js';
import { BoundedMap } from '../bounded-map.js';

/** Every gateway API key starts with this, so the authenticator tells keys from JWTs without trying either. */
export const API_KEY_PREFIX = 'gk_';
/** 256 random bits: a hash lookup is all the check a key needs (no salt, no slow hash). */
const SECRET_BYTES = 32;
const KEY_PATTERN = /^gk_[A-Za-z0-9_-]{43}$/;
/** What a list shows of a key: the marker and 8 of its 43 random characters (48 of 256 bits). */
const SHOWN_CHARS = API_KEY_PREFIX.length + 8;
/** lastUsedAt is written at most this often per key. */
const TOUCH_EVERY_MS = 60_000;
const MAX_CACHED = 10_000;
const MAX_TOUCHED = 50_000;
const DAY_MS = 86_400_000;

/** Same message for a key that never existed, was revoked or expired: nothing to learn from it. */
const INVALID = 'Invalid token: API key not recognised (revoked, expired or mistyped)';

export interface ApiKeysOptions {
  store: ConversationStore;
  /** Keys a user may hold at once. */
  maxPerUser: number;
  /** How long a successful lookup is remembered; a revocation on this node clears it at once. */
  cacheMs: number;
  logger: Logger;
  /**
   * Sign-in sessions are stored (Node): a key is kept only if the session that created it was
   * still signed in once the key was stored (see `create`).
   */
  revocableSessions?: boolean | undefined;
}

export interface NewApiKey {
  name: string;
  models: string[] | null;
  rateLimitPerMinute: number | null;
  expiresInDays: number | null;
}

type RevokedListener = (userId: string, keyIds: readonly string[]) => void;

export const isApiKeyToken = (token: string): boolean => token.startsWith(API_KEY_PREFIX);

/**
 * Gateway API keys: long-lived credentials a signed-in user creates for tools that expect an
 * "OpenAI API key". The secret is shown once and stored only as its SHA-256; a request's key
 * is found by that hash. A key acts as its user on every entry point, within its own model
 * allow-list and rate limit (`api-key-policy.ts`). Keys are tokens of their user: they die
 * with their revocation, signing out everywhere, a password change and the account.
 */
export class ApiKeys {
  /** Successful lookups by hash, until `until`. Only positives: a new key is never hidden by a cached miss. */
  readonly #cache = new BoundedMap<string, { key: ApiKeyRecord; until: number }>(MAX_CACHED);
  /** When this node last wrote lastUsedAt, per key id. */
  readonly #touched = new BoundedMap<string, number>(MAX_TOUCHED);
  /**
   * Ids of keys revoked on this node, the most recent: a lookup that was reading the store as
   * one was revoked must not bring it back (a revoked id is never valid again).
   */
  readonly #revoked = new BoundedMap<string, true>(MAX_TOUCHED);
  /** Creations in flight per user: run one after another so the bound holds on stores that cannot count and insert atomically. */
  readonly #creating = new Map<string, Promise<unknown>>();
  readonly #listeners = new Set<RevokedListener>();

  constructor(private readonly options: ApiKeysOptions) {}

  /** The user whose keys this caller may manage; throws for an API key, an anonymous or an identity-provider caller. */
  managerOf(principal: Principal): string {
    return keyManager(principal);
  }

  /** Returns the stored key and its secret; the secret is not kept anywhere. */
  async create(principal: Principal, input: NewApiKey): Promise<{ key: ApiKeyRecord; secret: string }> {
    const userId = keyManager(principal);
    const { maxPerUser } = this.options;
    if (maxPerUser === 0) throw new AppError('BAD_REQUEST', 'Creating API keys is switched off on this server (API_KEYS_MAX_PER_USER=0)', { status: 403 });
    const secret = API_KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
    const now = Date.now();
    const key: ApiKeyRecord = {
      id: timeOrderedId(now),
      userId,
      name: input.name,
      prefix: secret.slice(0, SHOWN_CHARS),
      keyHash: await sha256Hex(secret),
      models: input.models,
      rateLimitPerMinute: input.rateLimitPerMinute,
      createdAt: now,
      expiresAt: input.expiresInDays === null ? null : now + input.expiresInDays * DAY_MS,
      lastUsedAt: null,
    };
    const created = await this.#oneAtATime(userId, () => this.options.store.createApiKey(key, maxPerUser));
    if (!created) {
      throw new AppError('BAD_REQUEST', `You already have ${maxPerUser} API keys, the most allowed; revoke one you no longer use first`, { status: 409 });
    }
    // Signing out everywhere (or a password change) ends the sessions, then deletes the keys. A
    // creation its session had passed before may store its key after those keys were deleted:
    // read afresh, the creating session is then gone, and so is the key.
    if (this.options.revocableSessions && principal.sessionId && !(await this.options.store.getSession(principal.sessionId))) {
      await this.options.store.deleteApiKey(userId, key.id);
      this.#forget(userId, [key.id]);
      throw new AppError('UNAUTHORIZED', 'This session was signed out; sign in again to create keys');
    }
    this.options.logger.info({ userId, apiKeyId: key.id }, 'API key created');
    return { key, secret };
  }

  /** The caller's keys, newest first. */
  async list(principal: Principal): Promise<ApiKeyRecord[]> {
    return this.options.store.listApiKeys(keyManager(principal));
  }

  /** Revokes one of the caller's keys: refused on this node from the next request, its open sockets cut. False when the caller has no such key. */
  async revoke(principal: Principal, id: string): Promise<boolean> {
    const userId = keyManager(principal);
    if (!(await this.options.store.deleteApiKey(userId, id))) return false;
    this.#forget(userId, [id]);
    this.options.logger.info({ userId, apiKeyId: id }, 'API key revoked');
    return true;
  }

  /** Revokes every key of a user (account deletion, signing out everywhere, a password change); returns how many. */
  async revokeAll(userId: string): Promise<number> {
    const ids = await this.options.store.deleteUserApiKeys(userId);
    this.#forget(userId, ids);
    return ids.length;
  }

  /** Called after keys are revoked (to disconnect the sockets and realtime sessions they opened). */
  onRevoked(listener: RevokedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The principal a key stands for. Throws UNAUTHORIZED, with one message for every reason. */
  async authenticate(token: string, ip: string): Promise<Principal> {
    if (!KEY_PATTERN.test(token)) throw new AppError('UNAUTHORIZED', INVALID);
    const now = Date.now();
    const hash = await sha256Hex(token);
    let key = this.#cache.get(hash);
    if (key && key.until <= now) {
      this.#cache.delete(hash);
      key = undefined;
    }
    const record = key?.key ?? (await this.options.store.findApiKeyByHash(hash));
    if (!record || (record.expiresAt !== null && record.expiresAt <= now)) throw new AppError('UNAUTHORIZED', INVALID);
    // Revoked while the store answered: the record read predates it, and must not be cached.
    if (!key && this.#revoked.has(record.id)) throw new AppError('UNAUTHORIZED', INVALID);
    if (!key && this.options.cacheMs > 0) this.#remember(hash, record, Math.min(now + this.options.cacheMs, record.expiresAt ?? Infinity));
    this.#touch(record, now);
    return {
      userId: record.userId,
      ip,
      anonymousId: null,
      sessionId: null,
      apiKey: { id: record.id, models: record.models, rateLimitPerMinute: record.rateLimitPerMinute, expiresAt: record.expiresAt },
    };
  }

  /** Writes lastUsedAt at most once a minute per key, without the request waiting for it. */
  #touch(record: ApiKeyRecord, now: number) {
    const last = Math.max(record.lastUsedAt ?? 0, this.#touched.get(record.id) ?? 0);
    if (now - last < TOUCH_EVERY_MS) return;
    this.#touched.set(record.id, now);
    this.options.store.touchApiKey(record.id, now).catch((err: unknown) => this.options.logger.warn({ err, apiKeyId: record.id }, 'could not record when an API key was last used'));
  }

  #remember(hash: string, key: ApiKeyRecord, until: number) {
    this.#cache.set(hash, { key, until });
  }

  #forget(userId: string, ids: readonly string[]) {
    if (!ids.length) return;
    for (const id of ids) this.#revoked.set(id, true);
    const gone = new Set(ids);
    for (const [hash, entry] of this.#cache) if (gone.has(entry.key.id)) this.#cache.delete(hash);
    for (const id of ids) this.#touched.delete(id);
    for (const listener of this.#listeners) listener(userId, ids);
  }

  async #oneAtATime<T>(userId: string, work: () => Promise<T>): Promise<T> {
    const run = (this.#creating.get(userId) ?? Promise.resolve()).catch(() => {}).then(work);
    this.#creating.set(userId, run);
    try {
      return await run;
    } finally {
      if (this.#creating.get(userId) === run) this.#creating.delete(userId);
    }
  }
}

/**
 * Who may manage keys: a user signed in with a session of this server. A key cannot create,
 * list or revoke keys (a leaked key must not be able to mint more, or hide by revoking its
 * siblings); users of the external identity provider cannot either, since this server would
 * never learn that such a user was removed there.
 */
function keyManager(principal: Principal): string {
  if (!principal.userId) throw new AppError('UNAUTHORIZED', 'Sign in to manage API keys');
  if (principal.apiKey) throw new AppError('UNAUTHORIZED', 'An API key cannot manage API keys; sign in with your account', { status: 403 });
  if (principal.userId.startsWith('ext:')) {
    throw new AppError('BAD_REQUEST', 'API keys are for accounts of this server; your account is managed by your identity provider', { status: 403 });
  }
  return principal.userId;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
