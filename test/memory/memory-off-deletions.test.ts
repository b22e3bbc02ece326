/**
 * MEMORY_ENABLED=false switches recall and writes off, not deletion: deleting a conversation or
 * an account still deletes what was remembered while memory was on (docs/protocols.md), from the
 * embedded file and from Pinecone, and a store that cannot delete fails the deletion with a code.
 * A server that never had memory on creates no memory file for this. Real gateways, real HTTP
 * clients, the real Pinecone client against the stand-in.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namespaceFor } from '../../src/memory/pinecone-memory-store.js';
import { bearer, register, type Account } from '../helpers/accounts.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startPineconeStandin, type PineconeStandin } from '../standins/pinecone-standin.js';

const PASSWORD = 'correct horse battery';

async function chat(gw: TestGateway, who: Account, sessionId: string, message: string) {
  const events = await readSse(await postChat(gw.url, { message, sessionId }, bearer(who)));
  expect(events.at(-1)).toMatchObject({ done: true });
}

const memoryTexts = async (gw: TestGateway, who: Account) =>
  ((await (await fetch(`${gw.url}/api/v2/memory`, { headers: bearer(who) })).json()) as { memories: { text: string; conversationId: string }[] }).memories;

const deleteConversation = (gw: TestGateway, who: Account, id: string) => fetch(`${gw.url}/api/v2/conversations/${id}`, { method: 'DELETE', headers: bearer(who) });

const deleteAccount = (gw: TestGateway, who: Account) =>
  fetch(`${gw.url}/api/v2/auth/me`, { method: 'DELETE', headers: { ...bearer(who), 'Content-Type': 'application/json' }, body: JSON.stringify({ password: PASSWORD }) });

describe('deleting while memory is switched off (embedded store)', () => {
  const dir = tempDataDir();
  const env = (on: boolean) => ({ DATA_DIR: dir, JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: on ? 'true' : 'false', RATE_LIMIT_ANON: '1000' });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a deleted conversation and a deleted account leave no memories in DATA_DIR/memory.sqlite', async () => {
    let gw = await startGateway(env(true));
    const alice = await register(gw.url, 'alice-memory-off@example.com', PASSWORD);
    const bob = await register(gw.url, 'bob-memory-off@example.com', PASSWORD);
    await chat(gw, alice, 'secret-chat', 'My locker code is 4711');
    await chat(gw, alice, 'kept-chat', 'My dog is called Rex');
    await chat(gw, bob, 'bob-chat', 'The vault password is swordfish');
    await waitFor(async () => (await memoryTexts(gw, alice)).length >= 4 && (await memoryTexts(gw, bob)).length >= 2, 10_000);
    await gw.close();

    gw = await startGateway(env(false));
    expect(gw.server.services.memory).toBeUndefined();
    expect((await deleteConversation(gw, alice, 'secret-chat')).status).toBe(200);
    expect((await deleteAccount(gw, bob)).status).toBe(200);
    await gw.close();

    gw = await startGateway(env(true));
    try {
      const left = await memoryTexts(gw, alice);
      // Only the deleted conversation's memories went.
      expect(left.map((m) => m.conversationId).sort()).toEqual(['kept-chat', 'kept-chat']);
      expect(left.map((m) => m.text).join(' ')).not.toContain('4711');
      expect((await gw.server.services.memory!.list(bob.user.id, { limit: 100 })).items).toEqual([]);
    } finally {
      await gw.close();
    }
  });

  it('a server that never had memory on creates no memory file to delete from', async () => {
    const fresh = tempDataDir();
    const gw = await startGateway({ DATA_DIR: fresh, JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: 'false', RATE_LIMIT_ANON: '1000' });
    try {
      const carol = await register(gw.url, 'carol-memory-off@example.com', PASSWORD);
      await chat(gw, carol, 'carol-chat', 'hello there');
      expect((await deleteConversation(gw, carol, 'carol-chat')).status).toBe(200);
      expect((await deleteAccount(gw, carol)).status).toBe(200);
      expect(existsSync(join(fresh, 'memory.sqlite'))).toBe(false);
    } finally {
      await gw.destroy();
    }
  });
});

describe('deleting while memory is switched off (Pinecone)', () => {
  let pinecone: PineconeStandin;
  const dir = tempDataDir();
  beforeAll(async () => {
    pinecone = await startPineconeStandin({ dimension: 384, apiKey: 'pc-key' });
  });
  afterAll(async () => {
    await pinecone.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = (on: boolean) => ({
    DATA_DIR: dir,
    JWT_SECRET: TEST_JWT_SECRET,
    MEMORY_ENABLED: on ? 'true' : 'false',
    RATE_LIMIT_ANON: '1000',
    PINECONE_API_KEY: 'pc-key',
    PINECONE_INDEX_HOST: pinecone.url,
    PINECONE_MAX_RETRIES: '0',
  });
  const conversationsIn = (who: Account) => new Set(pinecone.records(namespaceFor(who.user.id)).map((r) => r.metadata?.['conversationId']));

  it('deletes from the index, and a deletion the index refuses fails with a code and deletes nothing', async () => {
    let gw = await startGateway(env(true));
    const dave = await register(gw.url, 'dave-memory-off@example.com', PASSWORD);
    const erin = await register(gw.url, 'erin-memory-off@example.com', PASSWORD);
    await chat(gw, dave, 'dave-1', 'My bike lock code is 1234');
    await chat(gw, dave, 'dave-2', 'My bank is in Zurich');
    await chat(gw, erin, 'erin-1', 'My passport number is X99');
    await waitFor(() => conversationsIn(dave).size === 2 && conversationsIn(erin).size === 1, 10_000);
    await gw.close();

    gw = await startGateway(env(false));
    try {
      expect((await deleteConversation(gw, dave, 'dave-1')).status).toBe(200);
      expect([...conversationsIn(dave)]).toEqual(['dave-2']);

      // Pinecone refuses the deletion: the conversation is kept, with a code, so it can be retried.
      pinecone.failNext(1, { status: 503, path: '/vectors/delete' });
      const refused = await deleteConversation(gw, dave, 'dave-2');
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ code: 'INTERNAL' });
      expect((await fetch(`${gw.url}/api/v2/conversations/dave-2/messages`, { headers: bearer(dave) })).status).toBe(200);
      expect([...conversationsIn(dave)]).toEqual(['dave-2']);

      pinecone.failNext(1, { status: 503, path: '/vectors/delete' });
      const refusedAccount = await deleteAccount(gw, erin);
      expect(refusedAccount.status).toBe(503);
      expect(await refusedAccount.json()).toMatchObject({ code: 'INTERNAL' });
      expect(conversationsIn(erin).size).toBe(1);

      expect((await deleteAccount(gw, erin)).status).toBe(200);
      expect(pinecone.records(namespaceFor(erin.user.id))).toEqual([]);
    } finally {
      await gw.close();
    }
  });
});
