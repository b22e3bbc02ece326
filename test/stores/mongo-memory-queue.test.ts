/**
 * MongoDB holds a message and its memory write in separate documents, written without a
 * transaction: a write can outlive its message or conversation (deleted between the steps, on
 * another node). Such orphans are cleared as the queue is read, however many come first, and
 * never stop the writer. The real driver against the local wire-protocol stand-in.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { MongoConversationStore } from '../../src/stores/mongo-conversation-store.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';

describe('the MongoDB memory queue with orphaned writes', () => {
  let standin: MongoStandin;
  let store: MongoConversationStore;
  let client: MongoClient;
  beforeAll(async () => {
    standin = await startMongoStandin();
    store = await MongoConversationStore.connect(standin.uri, 'orphans');
    client = new MongoClient(standin.uri);
  });
  afterAll(async () => {
    await client.close();
    await store.close();
    await standin.close();
  });

  it('three batches of writes whose message or conversation is gone are cleared, and the next due write is returned', async () => {
    const outbox = client.db('orphans').collection('memory_outbox');
    const messages = client.db('orphans').collection('messages');
    const old = new Date(Date.now() - 60_000);
    // 100 writes of no message, and 100 of a message whose conversation is gone: the oldest due.
    await outbox.insertMany(Array.from({ length: 200 }, (_, i) => ({ _id: `orphan-${i}`, ownerId: 'u-gone', conversationKey: 'u-gone/c-gone', attempts: 0, nextAt: old })) as never[]);
    await messages.insertMany(Array.from({ length: 100 }, (_, i) => ({ _id: `orphan-${100 + i}`, conversationKey: 'u-gone/c-gone', role: 'user', content: 'left behind', createdAt: old })) as never[]);
    const { conversation } = await store.ensureConversation({ id: 'c-live', ownerId: 'u-live', title: 't' });
    await store.appendMessage({ conversationKey: conversation.key, role: 'user', content: 'remember me', remember: true });

    const due = await store.pendingMemories(64, Date.now() + 1000);
    expect(due.map((p) => [p.ownerId, p.message.content])).toEqual([['u-live', 'remember me']]);
    expect(await outbox.countDocuments({ ownerId: 'u-gone' })).toBe(0);
    expect(await messages.countDocuments({ conversationKey: conversationKey('u-gone', 'c-gone') })).toBe(0);
  });
});
