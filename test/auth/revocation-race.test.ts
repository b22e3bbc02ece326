/**
 * A credential revoked while this node was reading it from the store (a MongoDB round trip:
 * several nodes) stays revoked: the answer read before the revocation must not be remembered
 * after it. The real MongoDB store against the wire-protocol stand-in; each test holds the
 * store's answer until the revocation is done, so the race is not left to timing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeys } from '../../src/auth/api-keys.js';
import { SessionRegistry } from '../../src/auth/session-registry.js';
import type { Principal } from '../../src/chat/principal.js';
import { silentLogger } from '../../src/logger.js';
import type { ConversationStore } from '../../src/stores/conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

/** The next answer of one of the store's methods, held until `release()`. */
function holdNext<K extends 'getSession' | 'findApiKeyByHash'>(store: ConversationStore, method: K) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let read!: () => void;
  const reading = new Promise<void>((r) => (read = r));
  const target = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = target[method]!;
  target[method] = async (...args: unknown[]) => {
    target[method] = original;
    const answer = await original.apply(store, args);
    read();
    await released;
    return answer;
  };
  return { reading, release };
}

describe('revoking a credential while it is being read', () => {
  let standin: MongoStandin;
  let store: MongoConversationStore;
  beforeAll(async () => {
    standin = await startMongoStandin();
    store = await MongoConversationStore.connect(standin.uri, 'revocation-race');
  });
  afterAll(async () => {
    await store.close();
    await standin.close();
  });

  it('a sign-in session: the check under way and every check after it say revoked', async () => {
    const session = await new SessionRegistry(store, { cacheMs: 60_000 }).open('u-session', 3600);
    // Another node's registry (or this one's once its cache expired): it reads the store.
    const registry = new SessionRegistry(store, { cacheMs: 60_000 });
    const { reading, release } = holdNext(store, 'getSession');
    const inFlight = registry.isActive(session.id, 'u-session');
    await reading;
    await registry.revoke('u-session', session.id);
    release();
    expect(await inFlight).toBe(false);
    expect(await registry.isActive(session.id, 'u-session')).toBe(false);
  });

  it('an API key: refused from the moment it is revoked, even by the lookup that was under way', async () => {
    const owner: Principal = { userId: 'u-key', ip: '127.0.0.1', anonymousId: null, sessionId: 's' };
    const keys = new ApiKeys({ store, maxPerUser: 10, cacheMs: 60_000, logger: silentLogger });
    const { key, secret } = await keys.create(owner, { name: 'tool', models: null, rateLimitPerMinute: null, expiresInDays: null });
    const { reading, release } = holdNext(store, 'findApiKeyByHash');
    const inFlight = keys.authenticate(secret, '127.0.0.1').then(
      () => 'accepted',
      () => 'refused',
    );
    await reading;
    expect(await keys.revoke(owner, key.id)).toBe(true);
    release();
    expect(await inFlight).toBe('refused');
    await expect(keys.authenticate(secret, '127.0.0.1')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });
});
