/**
 * SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: when the address's shared budget runs out, only a
 * connection over its share of it is closed. A quiet neighbour on the same address (NAT, IPv6 /56,
 * a proxy without TRUST_PROXY) that sends next (an event, a heartbeat pong) keeps its connection.
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { client, connected, EventLog, sleep, socketGatewayForSuite, type AiClient, type LooseClient } from './socket-harness.js';

describe('per-address packet budget', () => {
  const gw = socketGatewayForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '400', SOCKET_MAX_EVENTS_PER_IP_PER_SECOND: '50' });

  it('does not cut a quiet neighbour for packets another connection of the address sent', async () => {
    const heavy = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'] });
    const quiet = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'] });
    const quietLog = new EventLog<AiServerToClientEvents>(quiet);
    await Promise.all([connected(heavy), connected(quiet)]);
    // Within its own 400/s (800 at once) and within the address's 100 at once, together with the two CONNECTs.
    for (let i = 0; i < 90; i++) (heavy as unknown as LooseClient).emit('chat:stop');
    await sleep(50);
    // The quiet tab now sends a handful of events (a user clicking stop a few times).
    for (let i = 0; i < 12; i++) (quiet as unknown as LooseClient).emit('chat:stop');
    await sleep(500);
    expect(heavy.connected).toBe(true);
    expect(quietLog.all('chat:error')).toEqual([]);
    expect(quiet.connected).toBe(true);
  });
});
