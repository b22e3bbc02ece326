import type { NodeWebSocket } from '@hono/node-ws';
import type { Services } from '../services.js';

/**
 * GET /v1/realtime (PROTOCOLS.md section 4). Without a realtime provider configured the
 * socket is accepted, told REALTIME_UNAVAILABLE in the Realtime protocol's error shape,
 * and closed, so clients get a reason instead of a failed handshake.
 */
export function realtimeRoute(upgradeWebSocket: NodeWebSocket['upgradeWebSocket'], services: Services) {
  return upgradeWebSocket(() => ({
    onOpen(_event, ws) {
      services.logger.debug({}, 'realtime socket opened without a provider');
      ws.send(
        JSON.stringify({
          type: 'error',
          event_id: `event_${crypto.randomUUID()}`,
          error: { type: 'server_error', code: 'REALTIME_UNAVAILABLE', message: 'No realtime provider is configured on this server', param: null },
        }),
      );
      ws.close(1013, 'REALTIME_UNAVAILABLE');
    },
  }));
}
