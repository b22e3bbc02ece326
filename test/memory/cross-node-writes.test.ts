/**
 * Long-term memory with several nodes: two gateways on one MongoDB, one Pinecone index and one
 * embedding provider (the wire-protocol stand-ins, through the real `mongodb`, Pinecone and
 * `openai` clients). A memory write is one node's, however many writers look at the queue; and
 * an account deleted on one node while the other is still writing its memories leaves none of
 * them behind. Node B's embedding requests are slow (its own API key), so its write is still
 * under way when the test acts on node A.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namespaceFor } from '../../src/memory/pinecone-memory-store.js';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startMongoStandin, type MongoStandin } from '../standins/mongo-standin.js';
import { startOpenAIStandin, type RecordedRequest, type Standin } from '../standins/openai-standin.js';
import { startPineconeStandin, type PineconeStandin } from '../standins/pinecone-standin.js';

const REPLY = ['orange', ' zebra'];
/** Node B's embeddings take this long: its write is under way while the test acts. */
const SLOW_MS = 4_000;

/** A memory writer's request (it embeds the reply; a recall embeds only the question). */
const isWrite = (r: RecordedRequest) => r.path.endsWith('/embeddings') && JSON.stringify(r.body).includes(REPLY.join(''));
const fromNodeB = (r: RecordedRequest) => r.headers['authorization'] === 'Bearer key-b';

describe('long-term memory written by one of two nodes', () => {
  let mongo: MongoStandin;
  let pinecone: PineconeStandin;
  let openai: Standin;
  let a: TestGateway;
  let b: TestGateway;

  beforeAll(async () => {
    mongo = await startMongoStandin();
    pinecone = await startPineconeStandin({ dimension: 64, apiKey: 'pc-key' });
    openai = await startOpenAIStandin({
      script: (req) => (req.path.endsWith('/embeddings') ? { tokens: ['x'], delayMs: isWrite(req) && fromNodeB(req) ? SLOW_MS : 0 } : { tokens: REPLY }),
    });
    const env = (key: string) => ({
      JWT_SECRET: TEST_JWT_SECRET,
      MONGODB_URI: mongo.uri,
      MONGODB_DB: 'cross-node-memory',
      OPENAI_API_KEY: key,
      OPENAI_BASE_URL: openai.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      PROVIDER_MAX_RETRIES: '0',
      EMBEDDING_PROVIDER: 'openai',
      EMBEDDING_DIMENSIONS: '64',
      PINECONE_API_KEY: 'pc-key',
      PINECONE_INDEX_HOST: pinecone.url,
      PINECONE_MAX_RETRIES: '0',
      RATE_LIMIT_USER: '10000',
    });
    a = await startGateway(env('key-a'));
    b = await startGateway(env('key-b'));
  });
  afterAll(async () => {
    await b?.destroy();
    await a?.destroy();
    await openai?.close();
    await pinecone?.close();
    await mongo?.close();
  });

  /** Chats on node B, then waits until B's writer is embedding the exchange. */
  async function chatOnB(token: { token: string }, sessionId: string) {
    const before = openai.requests.filter(isWrite).length;
    await (await postChat(b.url, { message: `a secret for ${sessionId}`, sessionId }, bearer(token))).text();
    await waitFor(() => openai.requests.filter(isWrite).length > before, 5_000, 10);
    const writes = openai.requests.filter(isWrite).slice(before);
    expect(writes.every(fromNodeB)).toBe(true);
  }

  const upsertsTo = (ns: string) => pinecone.requests.filter((r) => r.path.endsWith('/vectors/upsert') && JSON.stringify(r.body).includes(ns)).length;

  it('a queued write is made by one node: the other, looking at the queue meanwhile, finds it taken', async () => {
    const dana = await register(a.url, 'dana-two-nodes@example.com');
    await chatOnB(dana, 'taken-once');
    const writes = openai.requests.filter(isWrite).length;
    // Node A's writer looks at the queue while B's write is under way (as its 5 s poll would):
    // it asks for a batch, and is given nothing.
    const store = a.server.services.store;
    const pending = store.pendingMemories.bind(store);
    const looks: number[] = [];
    store.pendingMemories = async (...args) => {
      const batch = await pending(...args);
      if (args[2]) looks.push(batch.length);
      return batch;
    };
    try {
      a.server.services.memory!.wake();
      await waitFor(() => looks.length > 0, 5_000, 10);
      await a.server.services.memory!.idle();
    } finally {
      store.pendingMemories = pending;
    }
    expect(looks[0]).toBe(0);
    await waitFor(async () => (await b.server.services.memory!.list(dana.user.id, { limit: 10 })).items.length === 2, SLOW_MS + 5_000, 50);
    // Embedded once, by B: A never paid for it.
    expect(openai.requests.filter(isWrite).length).toBe(writes);
    expect((await a.server.services.memory!.list(dana.user.id, { limit: 10 })).items.map((m) => m.text).sort()).toEqual(['a secret for taken-once', REPLY.join('')]);
  });

  it('an account deleted on node A while node B writes its memories leaves none behind', async () => {
    const erin = await register(a.url, 'erin-two-nodes@example.com');
    const ns = namespaceFor(erin.user.id);
    await chatOnB(erin, 'deleted-meanwhile');
    const deleted = await fetch(`${a.url}/api/v2/auth/me`, {
      method: 'DELETE',
      headers: { ...bearer(erin), 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: 'correct horse battery' }),
    });
    expect(deleted.status).toBe(200);
    // The deletion is over on A, and B's write has not landed yet: the race this test is about.
    expect(upsertsTo(ns)).toBe(0);

    await waitFor(() => upsertsTo(ns) > 0, SLOW_MS + 5_000, 20);
    await new Promise((r) => setTimeout(r, 200));
    await b.server.services.memory!.idle();
    expect(pinecone.records(ns)).toEqual([]);
    expect(pinecone.namespaces().flatMap((n) => pinecone.records(n)).filter((v) => JSON.stringify(v).includes(erin.user.id))).toEqual([]);
    expect(await b.server.services.store.pendingMemories(100, Date.now() + 3_600_000)).toEqual([]);
    expect(await b.server.services.store.findUserById(erin.user.id)).toBeUndefined();
  });
});
