/**
 * SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: all of one address's Socket.IO connections share a packet
 * budget, so a client cannot multiply SOCKET_MAX_EVENTS_PER_SECOND by opening up to
 * SOCKET_MAX_CONNECTIONS_PER_IP connections. A connection that sends past the shared budget is
 * told RATE_LIMIT and closed; connections that stay within it, and the address once it slows
 * down, are served.
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { client, connected, EventLog, sleep, socketGatewayForSuite, type AiClient, type LooseClient } from './socket-harness.js';

describe("an address whose connections together send more events a second than allowed", () => {
  const gw = socketGatewayForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '400', SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: '50' });

  it('has the connection that sends past the shared budget told RATE_LIMIT and closed; a quiet one stays', async () => {
    const quiet = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'], reconnection: false });
    await connected(quiet);
    const noisy = Array.from({ length: 4 }, () => client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'], reconnection: false }));
    const logs = noisy.map((c) => new EventLog<AiServerToClientEvents>(c));
    await Promise.all(noisy.map((c) => connected(c)));
    // 4 x 40 = 160 packets at once: each connection within its own 400 (800 at once), all of them past the address's 100 at once.
    for (let i = 0; i < 40; i++) for (const c of noisy) (c as unknown as LooseClient).emit('chat:stop');
    await sleep(1_000);
    const told = logs.filter((l) => l.all('chat:error').some((e) => e.code === 'RATE_LIMIT'));
    expect(told.length).toBeGreaterThan(0);
    expect(noisy.filter((c) => !c.connected).length).toBeGreaterThan(0);
    expect(quiet.connected).toBe(true);

    // The budget refills: the address is served again once it slows down.
    await sleep(2_100);
    const later = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'], reconnection: false });
    const log = new EventLog<AiServerToClientEvents>(later);
    await connected(later);
    later.emit('chat:start', { message: 'hello again', conversationId: null });
    expect((await log.next('chat:end')).finishReason).toBe('stop');
    for (const c of [quiet, later, ...noisy]) c.close();
  });
});
