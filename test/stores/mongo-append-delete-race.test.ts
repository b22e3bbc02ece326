/**
 * MongoDB: appendMessage touches the conversation, then inserts the message (two steps, no
 * transaction). A deletion of the conversation in between must not leave the message behind:
 * it would come back in the next conversation its owner starts under the same id (seed 002's
 * clients all send `my-session`).
 */
import { Collection } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

/** Holds the next insert into `messages` until `release` (the real driver's call, then as usual). */
function holdNextMessageInsert() {
  const original = Collection.prototype.insertOne;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const held = new Promise<void>((r) => (reached = r));
  Collection.prototype.insertOne = async function (this: Collection, ...args: Parameters<typeof original>) {
    if (this.collectionName === 'messages') {
      Collection.prototype.insertOne = original;
      reached();
      await gate;
    }
    return original.apply(this, args);
  } as typeof original;
  return { held, release, restore: () => (Collection.prototype.insertOne = original) };
}

describe('MongoDB: a deletion racing an append', () => {
  let mongo: MongoStandin;
  beforeAll(async () => {
    mongo = await startMongoStandin();
  });
  afterAll(async () => mongo.close());

  for (const restarted of [false, true]) {
    it(`the message appended meanwhile goes with its conversation${restarted ? ', even once the owner started it again' : ''}`, async () => {
      const store = await MongoConversationStore.connect(mongo.uri, `race_${restarted}_${Date.now()}`);
      const owner = 'ip:203.0.113.7';
      const key = conversationKey(owner, 'my-session');
      await store.appendMessage({ conversationKey: key, role: 'user', content: 'first', conversation: { ownerId: owner, id: 'my-session', title: 't' } });
      const hold = holdNextMessageInsert();
      try {
        const append = store.appendMessage({ conversationKey: key, role: 'assistant', content: 'PRIVATE reply of the deleted conversation', remember: true });
        await hold.held;
        await store.deleteConversation(owner, 'my-session');
        if (restarted) {
          // (Started again in another millisecond: a conversation is told from its predecessor by its creation date.)
          await new Promise((r) => setTimeout(r, 3));
          await store.ensureConversation({ ownerId: owner, id: 'my-session', title: 't' });
        }
        hold.release();
        await expect(append).rejects.toThrow(/No such conversation/);
      } finally {
        hold.restore();
      }
      await store.appendMessage({ conversationKey: key, role: 'user', content: 'hello again', conversation: { ownerId: owner, id: 'my-session', title: 't' } });
      expect((await store.listMessages(key, { limit: 50 })).items.map((m) => m.content)).toEqual(['hello again']);
      expect(await store.pendingMemories(10, Date.now() + 60_000)).toEqual([]);
      await store.close();
    });
  }
});
