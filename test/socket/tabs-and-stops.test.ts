/**
 * What one socket may see and do beside its own turn: a user's other tabs on `/ai` (only while
 * the socket's token is valid), stopping a conversation's turn by its id from any socket of its
 * owner (answered with `chat:stopped`, PROTOCOLS.md section 3), and how many replies one socket
 * may have under way on `/` (seeds 000/001 as well as 002).
 */
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { client, closeAllClients, connected, EventLog, sleep, socketGatewayForSuite, type AiClient, type DefaultClient } from './socket-harness.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';

/** The local model's replies take ~50 tokens at this pace: about a second, long enough to stop. */
const TOKEN_DELAY_MS = '20';

describe('Socket.IO: tabs, stops by id, replies under way', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, JWT_CLOCK_SKEW_SECONDS: '0', LOCAL_MODEL_TOKEN_DELAY_MS: TOKEN_DELAY_MS });
  afterEach(closeAllClients);

  const ai = async (auth: Record<string, string> = {}) => {
    const socket = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'], auth });
    const log = new EventLog<AiServerToClientEvents>(socket);
    await connected(socket);
    return { socket, log };
  };

  it("a /ai socket whose token expired stops receiving the user's other tabs, and is told so", async () => {
    const alice = await register(gw().url, 'tabs-expiry@example.com');
    // A token of Alice's own session that expires in two or three seconds (what a short-lived access token does).
    const claims = JSON.parse(Buffer.from(alice.token.split('.')[1]!, 'base64url').toString()) as { sub: string; sid: string; email: string };
    const short = await new SignJWT({ email: claims.email, sid: claims.sid })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.sub)
      .setIssuer('ai-chat-gateway')
      .setAudience('ai-chat-gateway')
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + 3)
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const stale = await ai({ token: short });
    const tab = await ai({ token: alice.token });

    // While the token is valid, the other tab's turn reaches this socket.
    tab.socket.emit('chat:start', { message: 'first, while both are valid', conversationId: null, maxTokens: 3 });
    await tab.log.next('chat:end');
    expect(stale.log.all('chat:user-message').map((m) => m.content)).toEqual(['first, while both are valid']);

    const expired = await stale.log.next('chat:error', 4000);
    expect(expired).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringMatching(/expired/) });
    stale.log.clear();
    tab.socket.emit('chat:start', { message: 'my private question', conversationId: null, maxTokens: 3 });
    await tab.log.next('chat:end');
    await sleep(100);
    expect(stale.log.names).toEqual([]);
    // Its own events are refused as before.
    stale.socket.emit('chat:start', { message: 'me too', conversationId: null });
    expect(await stale.log.next('chat:error')).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it("chat:stop {conversationId} from another anonymous socket of the same owner is answered with chat:stopped", async () => {
    const running = await ai();
    const requester = await ai();
    running.socket.emit('chat:start', { message: 'a long answer please', conversationId: 'stop-anon-1' });
    await running.log.next('chat:message');
    requester.socket.emit('chat:stop', { conversationId: 'stop-anon-1' });
    expect(await requester.log.next('chat:stopped')).toMatchObject({ conversationId: 'stop-anon-1' });
    expect(await running.log.next('chat:stopped')).toMatchObject({ conversationId: 'stop-anon-1' });
  });

  it('chat:stop {conversationId} naming the socket’s own turn (anonymous): one chat:stopped, the turn’s own', async () => {
    const own = await ai();
    own.socket.emit('chat:start', { message: 'a long answer please', conversationId: 'stop-own-1' });
    await own.log.next('chat:message');
    own.socket.emit('chat:stop', { conversationId: 'stop-own-1' });
    const stopped = await own.log.next('chat:stopped');
    expect(stopped).toMatchObject({ conversationId: 'stop-own-1', messageId: expect.any(String) });
    await sleep(200);
    expect(own.log.all('chat:stopped')).toHaveLength(1);
  });

  it('chat:stop {conversationId} on /ai stops a turn of the same user on the default namespace, and answers chat:stopped', async () => {
    const bob = await register(gw().url, 'tabs-stop-default@example.com');
    const seed = client<DefaultClient>(gw().url, { transports: ['websocket'], auth: { token: bob.token } });
    const seedLog = new EventLog<DefaultServerToClientEvents>(seed);
    await connected(seed);
    const requester = await ai({ token: bob.token });
    seed.emit('ai:chat', { message: 'a long answer please', sessionId: 'stop-default-1' });
    await seedLog.next('ai:stream');
    requester.socket.emit('chat:stop', { conversationId: 'stop-default-1' });
    expect(await requester.log.next('chat:stopped')).toMatchObject({ conversationId: 'stop-default-1' });
    await seedLog.next('ai:complete');
  });

  it("chat:stop {conversationId} from the user's other /ai tab: exactly one chat:stopped reaches it", async () => {
    const carol = await register(gw().url, 'tabs-stop-ai@example.com');
    const running = await ai({ token: carol.token });
    const requester = await ai({ token: carol.token });
    running.socket.emit('chat:start', { message: 'a long answer please', conversationId: 'stop-ai-1' });
    await running.log.next('chat:message');
    requester.socket.emit('chat:stop', { conversationId: 'stop-ai-1' });
    expect(await requester.log.next('chat:stopped')).toMatchObject({ conversationId: 'stop-ai-1' });
    await running.log.next('chat:stopped');
    await sleep(200);
    expect(requester.log.all('chat:stopped')).toHaveLength(1);
  });

  it('one socket on / has at most 4 replies under way, ai-message ones included: the fifth and sixth answer BUSY', async () => {
    const dave = await register(gw().url, 'tabs-parallel@example.com');
    const seed = client<DefaultClient>(gw().url, { transports: ['websocket'], auth: { token: dave.token } });
    const log = new EventLog<DefaultServerToClientEvents>(seed);
    await connected(seed);
    for (let i = 0; i < 6; i++) seed.emit('ai-message', { prompt: `question ${i}` });
    const answers = await Promise.all(Array.from({ length: 6 }, () => log.next('ai-message-response', 10_000)));
    const busy = answers.filter((a) => 'code' in a && a.code === 'BUSY');
    const replies = answers.filter((a) => 'response' in a && typeof a.response === 'string');
    expect(busy).toHaveLength(2);
    expect(replies).toHaveLength(4);
    // Once they are done, the socket takes new ones again.
    seed.emit('ai-message', { prompt: 'after' });
    expect(await log.next('ai-message-response', 10_000)).toMatchObject({ response: expect.any(String) });
  });
});
