/**
 * A signed-in /ai socket stops receiving its user's other tabs' turns once its credential
 * expires: a JWT at its `exp`, a gateway API key at its record's `expiresAt` (read when the
 * connection is authenticated). Before, an API-key socket kept every turn of its user after
 * its key was refused everywhere else.
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { client, connected, EventLog, socketGatewayForSuite, sleep, type AiClient } from './socket-harness.js';

describe('an /ai socket whose API key expires while it stays open', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET });

  it("stops receiving the user's turns from other tabs, as an expired JWT does", async () => {
    const { url, server } = gw();
    const alice = await register(url, 'key-expiry@example.com');
    // A key of Alice's that expires 2 s from now (the route takes whole days; the service takes any span).
    const { secret } = await server.services.apiKeys.create(
      { userId: alice.user.id, ip: '127.0.0.1', anonymousId: null, sessionId: null },
      { name: 'short-lived', models: null, rateLimitPerMinute: null, expiresInDays: 2 / 86_400 },
    );
    const keyTab = client<AiClient>(`${url}/ai`, { auth: { token: secret }, transports: ['websocket'] });
    const keyLog = new EventLog<AiServerToClientEvents>(keyTab);
    await connected(keyTab);

    await sleep(2_500);
    // The key is refused everywhere now.
    const again = client<AiClient>(`${url}/ai`, { auth: { token: secret }, transports: ['websocket'] });
    await expect(connected(again)).rejects.toThrow(/Invalid token/);

    const tab = client<AiClient>(`${url}/ai`, { auth: { token: alice.token }, transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(tab);
    await connected(tab);
    tab.emit('chat:start', { message: 'my private words', conversationId: null });
    await log.next('chat:end');
    await sleep(100);

    expect(keyLog.all('chat:user-message')).toEqual([]);
    expect(keyLog.all('chat:message')).toEqual([]);
    // Told why, as a socket whose JWT expired is.
    expect(keyLog.all('chat:error')).toEqual([expect.objectContaining({ code: 'UNAUTHORIZED' })]);
  });
});
