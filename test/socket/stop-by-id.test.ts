/**
 * `chat:stop {conversationId}` on /ai: a stop sent while the named conversation's turn is still
 * being admitted (auth, store, rate limit) is kept, not lost; and the requester's chat:stopped
 * names the reply the stopped turn stored.
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { client, connected, EventLog, sleep, socketGatewayForSuite, type AiClient, type DefaultClient } from './socket-harness.js';

describe('chat:stop {conversationId} sent right after chat:start', () => {
  /** A reply that takes several seconds on the local model. */
  const gw = socketGatewayForSuite({ LOCAL_MODEL_TOKEN_DELAY_MS: '30' });

  it('stops the turn (chat:stopped), instead of being lost while the turn is being admitted', async () => {
    const ai = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(ai);
    await connected(ai);
    const conversationId = 'race-stop-by-id';
    ai.emit('chat:start', { message: 'a fairly long message so that the echo takes a while to stream back', conversationId });
    ai.emit('chat:stop', { conversationId });
    const outcome = await log.first(['chat:stopped', 'chat:end', 'chat:error'], 10_000);
    expect(outcome.name).toBe('chat:stopped');
    await sleep(200);
    // One answer, naming the stored (empty) reply; the user message was stored and announced.
    const stopped = log.all('chat:stopped');
    expect(stopped).toEqual([{ conversationId, messageId: expect.any(String) }]);
    expect(log.all('chat:user-message')).toHaveLength(1);
  });
});

describe('chat:stop {conversationId} of a turn on the default namespace', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, LOCAL_MODEL_TOKEN_DELAY_MS: '20' });

  it('answers chat:stopped with the stored reply\u2019s messageId', async () => {
    const { url } = gw();
    const alice = await register(url, 'stopped-id@example.com');
    const root = client<DefaultClient>(url, { auth: { token: alice.token }, transports: ['websocket'] });
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    const ai = client<AiClient>(`${url}/ai`, { auth: { token: alice.token }, transports: ['websocket'] });
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    await Promise.all([connected(root), connected(ai)]);

    root.emit('ai:chat', { message: 'a long enough answer to stop', sessionId: 'stop-from-ai' });
    await rootLog.next('ai:stream');
    ai.emit('chat:stop', { conversationId: 'stop-from-ai' });
    const stopped = await aiLog.next('chat:stopped');
    const complete = await rootLog.next('ai:complete');
    expect(complete.messageId).toEqual(expect.any(String));
    expect(stopped).toEqual({ conversationId: 'stop-from-ai', messageId: complete.messageId });
    await sleep(200);
    expect(aiLog.all('chat:stopped')).toHaveLength(1);
  });
});
