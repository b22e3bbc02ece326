/**
 * A login whose password check is under way while the account's password changes or the account
 * is deleted must not come out with a working session: both revoke every session, and the one
 * the login opens after them would otherwise outlive them (MongoDB has no foreign key to refuse
 * it; SQLite's refused it with a 500). Each test holds the login's password check until the
 * change or deletion is done, so the race is not left to timing. Every store: in memory, SQLite,
 * and MongoDB through the wire-protocol stand-in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts } from '../../src/auth/accounts.js';
import { ApiKeys } from '../../src/auth/api-keys.js';
import type { PasswordHasher } from '../../src/auth/password-hasher.js';
import { SessionRegistry } from '../../src/auth/session-registry.js';
import { TokenService } from '../../src/auth/token-service.js';
import type { Principal } from '../../src/chat/principal.js';
import { TurnTracker } from '../../src/chat/turn-tracker.js';
import { silentLogger } from '../../src/logger.js';
import { MemoryRateLimiter } from '../../src/ratelimit/memory-rate-limiter.js';
import type { ConversationStore } from '../../src/stores/conversation-store.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { NativePasswordHasher } from '../../src/node/native-password-hasher.js';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

/** The real hasher, whose next `verify` can be held after it has checked, until released. */
class HoldableHasher implements PasswordHasher {
  readonly #inner = new NativePasswordHasher();
  #hold: { checked: () => void; released: Promise<void> } | undefined;

  hash(password: string): Promise<string> {
    return this.#inner.hash(password);
  }

  async verify(password: string, encoded: string): Promise<boolean> {
    const hold = this.#hold;
    this.#hold = undefined;
    const ok = await this.#inner.verify(password, encoded);
    if (hold) {
      hold.checked();
      await hold.released;
    }
    return ok;
  }

  /** Holds the next verify: `checked` settles once it has checked the password; it answers when `release()` is called. */
  holdNext(): { checked: Promise<void>; release: () => void } {
    let release!: () => void;
    let checked!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const done = new Promise<void>((r) => (checked = r));
    this.#hold = { checked, released };
    return { checked: done, release };
  }
}

const SECRET = new TextEncoder().encode('login-races-secret-login-races-secret!');
const IP = '127.0.0.1';

function setUp(store: ConversationStore) {
  const hasher = new HoldableHasher();
  const tokens = new TokenService({ secret: SECRET, ttlSeconds: 3600, clockSkewSeconds: 0, issuer: 'gateway' });
  const sessions = new SessionRegistry(store, { cacheMs: 5_000 });
  const apiKeys = new ApiKeys({ store, maxPerUser: 10, cacheMs: 5_000, logger: silentLogger, revocableSessions: true });
  const accounts = new Accounts({
    store,
    hasher,
    tokens,
    sessions,
    apiKeys,
    limiter: new MemoryRateLimiter(60_000),
    limits: { perIp: 1000, perAccount: 1000, windowMs: 60_000, ipv6Prefix: 64 },
    turns: new TurnTracker(),
    logger: silentLogger,
  });
  /** Whether a token still names a live session of its user (what every entry point checks). */
  const works = async (token: string) => {
    const verified = await tokens.verify(token);
    // A registry with nothing cached: what another node, or this one after its cache, would say.
    return new SessionRegistry(store, { cacheMs: 0 }).isActive(verified.sessionId!, verified.userId);
  };
  return { hasher, accounts, works };
}

async function principalOf(accounts: Accounts, email: string, password: string): Promise<{ principal: Principal; token: string }> {
  const { user, token } = await accounts.login({ email, password }, IP);
  const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string };
  return { principal: { userId: user.id, ip: IP, anonymousId: null, sessionId: payload.sid }, token };
}

const stores: Array<{ name: string; open: () => Promise<{ store: ConversationStore; close: () => Promise<void> }> }> = [
  { name: 'memory', open: async () => ({ store: new MemoryConversationStore(), close: async () => {} }) },
  {
    name: 'sqlite',
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'login-races-'));
      const store = new SqliteConversationStore(join(dir, 'gateway.sqlite'));
      return {
        store,
        close: async () => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'mongodb',
    open: async () => {
      const standin: MongoStandin = await startMongoStandin();
      const store = await MongoConversationStore.connect(standin.uri, 'login-races');
      return {
        store,
        close: async () => {
          await store.close();
          await standin.close();
        },
      };
    },
  },
];

describe.each(stores)('a login under way while its account changes ($name)', ({ open }) => {
  let store: ConversationStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store, close } = await open());
  });
  afterAll(async () => {
    await close();
  });

  it('the password changes meanwhile: the login with the old password is refused and leaves no session', async () => {
    const { hasher, accounts, works } = setUp(store);
    const { user } = await accounts.register({ email: 'change@example.com', password: 'old-password-1', name: null }, IP);
    const owner = await principalOf(accounts, 'change@example.com', 'old-password-1');

    const held = hasher.holdNext();
    const login = accounts.login({ email: 'change@example.com', password: 'old-password-1' }, IP).then(
      (r) => ({ ok: true as const, token: r.token }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    await held.checked; // the old password was found right, against the account as it was
    const changed = await accounts.changePassword(owner.principal, 'old-password-1', 'new-password-2');
    held.release();
    const outcome = await login;

    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.err).toMatchObject({ code: 'UNAUTHORIZED' });
    // Only the session the change itself handed out is left.
    expect((await store.deleteUserSessions(user.id, (JSON.parse(Buffer.from(changed.token.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid)).length).toBe(0);
    expect(await works(owner.token)).toBe(false);
    expect(await works(changed.token)).toBe(true);
  });

  it('the account is deleted meanwhile: the login is refused (401, not 500) and leaves no session', async () => {
    const { hasher, accounts, works } = setUp(store);
    const { user } = await accounts.register({ email: 'delete@example.com', password: 'password-1', name: null }, IP);
    const owner = await principalOf(accounts, 'delete@example.com', 'password-1');

    const held = hasher.holdNext();
    const login = accounts.login({ email: 'delete@example.com', password: 'password-1' }, IP).then(
      (r) => ({ ok: true as const, token: r.token }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    await held.checked;
    await accounts.deleteAccount(owner.principal, 'password-1');
    held.release();
    const outcome = await login;

    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.err).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await store.findUserById(user.id)).toBeUndefined();
    expect(await store.deleteUserSessions(user.id)).toEqual([]);
    expect(await works(owner.token)).toBe(false);
  });

  it('nothing changes meanwhile: the held login goes through and its token works', async () => {
    const { hasher, accounts, works } = setUp(store);
    await accounts.register({ email: 'plain@example.com', password: 'password-3', name: null }, IP);
    const held = hasher.holdNext();
    const login = accounts.login({ email: 'plain@example.com', password: 'password-3' }, IP);
    await held.checked;
    held.release();
    expect(await works((await login).token)).toBe(true);
  });
});

describe('the session check remembers whose session it is', () => {
  it('a token that names a cached session for another user is refused, and the session stays good for its own user', async () => {
    const store = new MemoryConversationStore();
    const registry = new SessionRegistry(store, { cacheMs: 60_000 });
    const session = await registry.open('user-a', 3600);
    // Cached as active by the open: a token with A's session and B's user (a leaked signing secret).
    expect(await registry.isActive(session.id, 'user-b')).toBe(false);
    expect(await registry.isActive(session.id, 'user-a')).toBe(true);
    // And from the store, with nothing cached: the same answers, in either order.
    const fresh = new SessionRegistry(store, { cacheMs: 60_000 });
    expect(await fresh.isActive(session.id, 'user-b')).toBe(false);
    expect(await fresh.isActive(session.id, 'user-a')).toBe(true);
    expect(await fresh.isActive(session.id, 'user-b')).toBe(false);
  });
});

describe('passwords are compared in Unicode NFC', () => {
  it('a password registered composed signs in typed decomposed, and the reverse; one hashed as typed before still signs in', async () => {
    const store = new MemoryConversationStore();
    const { accounts, hasher } = setUp(store);
    const composed = 'caf\u00e9-\u00c5ngstr\u00f6m'; // é, Å, ö as one code point each
    const decomposed = composed.normalize('NFD');
    expect(decomposed).not.toBe(composed);
    await accounts.register({ email: 'nfc@example.com', password: composed, name: null }, IP);
    await expect(accounts.login({ email: 'nfc@example.com', password: decomposed }, IP)).resolves.toMatchObject({ user: { email: 'nfc@example.com' } });
    await accounts.register({ email: 'nfd@example.com', password: decomposed, name: null }, IP);
    await expect(accounts.login({ email: 'nfd@example.com', password: composed }, IP)).resolves.toMatchObject({ user: { email: 'nfd@example.com' } });
    // An account whose hash was made from the decomposed form as typed (before passwords were normalised).
    const old = await store.createUser({ email: 'old@example.com', name: null, passwordHash: await hasher.hash(decomposed) });
    await expect(accounts.login({ email: 'old@example.com', password: decomposed }, IP)).resolves.toMatchObject({ user: { id: old.id } });
    await expect(accounts.login({ email: 'old@example.com', password: 'wrong' }, IP)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });
});
