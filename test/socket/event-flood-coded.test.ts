/**
 * Past SOCKET_MAX_EVENTS_PER_SECOND the connection is closed, and told why first: ARCHITECTURE.md,
 * "A bound that is hit answers with a code" (without it the client saw only "transport close").
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { client, connected, disconnected, EventLog, socketGatewayForSuite, type AiClient, type LooseClient } from './socket-harness.js';

describe('an /ai client that sends more events a second than allowed', () => {
  const gw = socketGatewayForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '50' });

  it('is told RATE_LIMIT before its connection is closed', async () => {
    const ai = client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(ai);
    await connected(ai);
    const gone = disconnected(ai, 5000);
    for (let i = 0; i < 200; i++) (ai as unknown as LooseClient).emit('chat:stop');
    await gone;
    expect(log.all('chat:error')).toContainEqual(expect.objectContaining({ code: 'RATE_LIMIT' }));
  });
});
