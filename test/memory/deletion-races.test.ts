/**
 * Deleting while something is still being written: a conversation deleted while its reply
 * streams, an account deleted while its owner keeps sending chats. Nothing of what was deleted
 * may come back afterwards, in the store or in long-term memory (embedded defaults: SQLite and
 * its vector index, the local embedder). A real gateway, real HTTP clients.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat } from '../helpers/sse.js';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { client, connected, EventLog, type AiClient } from '../socket/socket-harness.js';

/** What long-term memory holds for a user once its writer has settled. */
async function memoriesOf(gw: TestGateway, userId: string) {
  const memory = gw.server.services.memory!;
  await new Promise((r) => setTimeout(r, 300));
  await memory.idle();
  return (await memory.list(userId, { limit: 100 })).items;
}

describe('deleting while writes are under way', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ LOCAL_MODEL_TOKEN_DELAY_MS: '50', RATE_LIMIT_USER: '10000' });
  });
  afterAll(() => gw.destroy());

  it('a deleted conversation cannot be replayed: its kept reply is not resumable on any route', async () => {
    const carol = await register(gw.url, 'carol-delete-resume@example.com');
    const id = 'deleted-then-resumed';
    await (await postChat(gw.url, { message: 'my bank PIN is 4711', sessionId: id, maxTokens: 5 }, bearer(carol))).text();
    // Kept for resuming until it is deleted.
    const kept = await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${id}`, { headers: bearer(carol) });
    expect(kept.status).toBe(200);
    expect(await kept.text()).toContain('"done":true');
    expect((await fetch(`${gw.url}/api/v2/conversations/${id}`, { method: 'DELETE', headers: bearer(carol) })).status).toBe(200);

    const sse = await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${id}`, { headers: bearer(carol) });
    expect(sse.status).toBe(204);
    const aiSdk = await fetch(`${gw.url}/api/chat/${id}/stream`, { headers: bearer(carol) });
    expect(aiSdk.status).toBe(204);
    const socket = client<AiClient>(`${gw.url}/ai`, { auth: { token: carol.token }, transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(socket);
    await connected(socket);
    socket.emit('chat:resume', { conversationId: id });
    expect(await log.next('chat:error')).toMatchObject({ code: 'NOT_FOUND' });
    expect(log.all('chat:message')).toEqual([]);
    socket.close();
  });

  it('a conversation deleted while its reply streams leaves no memory behind', async () => {
    const alice = await register(gw.url, 'alice-delete-race@example.com');
    for (let i = 0; i < 4; i++) {
      const id = `streaming-${i}`;
      const res = await postChat(gw.url, { message: `secret number ${i}: the vault code is ${1000 + i}`, sessionId: id }, bearer(alice));
      const reader = res.body!.getReader();
      // The reply streams: the user message is stored, and queued to be remembered.
      await reader.read();
      await new Promise((r) => setTimeout(r, 150));
      const deleted = await fetch(`${gw.url}/api/v2/conversations/${id}`, { method: 'DELETE', headers: bearer(alice) });
      expect(deleted.status).toBe(200);
      while (!(await reader.read()).done);
    }
    expect(await memoriesOf(gw, alice.user.id)).toEqual([]);
    expect((await gw.server.services.store.listConversations(alice.user.id, { limit: 10 })).items).toEqual([]);
  });
});

describe('deleting an account while its owner chats (replies as fast as they come)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ LOCAL_MODEL_TOKEN_DELAY_MS: '0', RATE_LIMIT_USER: '10000' });
  });
  afterAll(() => gw.destroy());

  it('an account deleted while its owner keeps sending chats leaves nothing behind, and chats sent meanwhile are refused', async () => {
    for (let round = 0; round < 3; round++) {
      const bob = await register(gw.url, `bob-delete-race-${round}@example.com`);
      const deletion = fetch(`${gw.url}/api/v2/auth/me`, {
        method: 'DELETE',
        headers: { ...bearer(bob), 'Content-Type': 'application/json' },
        body: JSON.stringify({ password: 'correct horse battery' }),
      });
      const chats = Array.from({ length: 40 }, (_, i) =>
        new Promise((r) => setTimeout(r, i * 10)).then(async () => {
          const res = await postChat(gw.url, { message: `round ${round} chat ${i}: my secret`, sessionId: `r${round}-${i}` }, bearer(bob));
          await res.text();
          return res.status;
        }),
      );
      expect((await deletion).status).toBe(200);
      const statuses = await Promise.all(chats);
      // Some chats ran before the deletion began, the rest were refused (signed out, or the account going).
      expect(statuses.every((s) => s === 200 || s === 401)).toBe(true);
      expect(statuses).toContain(401);
      expect(await gw.server.services.store.findUserById(bob.user.id)).toBeUndefined();
      expect((await gw.server.services.store.listConversations(bob.user.id, { limit: 50 })).items).toEqual([]);
      expect(await memoriesOf(gw, bob.user.id)).toEqual([]);
    }
  });
});
