import type { NodeWebSocket } from '@hono/node-ws';
import type { Context } from 'hono';
import type { WSContext } from 'hono/ws';
import { pickToken, type PickedToken } from '../auth/token-sources.js';
import { requestHeader } from '../http/http-helpers.js';
import { subprotocolToken } from '../http/authenticate.js';
import { credentialExpiry } from '../auth/credential-expiry.js';
import type { Principal } from '../chat/principal.js';
import type { ErrorCode } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { eventBudget } from '../event-budget.js';
import { realtimeErrorEvent } from '../realtime/realtime-error-event.js';
import type { RealtimeService } from '../realtime/realtime-service.js';
import type { RealtimeSession } from '../realtime/realtime-session.js';
import type { Services } from '../services.js';

/** WebSocket close codes for how a realtime session ended (RFC 6455 section 7.4.1). */
const CLOSE_CODES: Partial<Record<ErrorCode, number>> = {
  REALTIME_UNAVAILABLE: 1013, // try again later
  RATE_LIMIT: 1013,
  UNAUTHORIZED: 1008, // policy violation
  BAD_REQUEST: 1008,
  INVALID_MODEL: 1008, // the credential may not use the realtime model: a policy, not a server failure
  PROVIDER_ERROR: 1011, // the server met a condition it could not handle
  INTERNAL: 1011,
};

/**
 * GET /v1/realtime (PROTOCOLS.md section 4): the OpenAI Realtime GA protocol relayed frame for
 * frame between the client and the configured provider, with the server's key and the same
 * guards as Socket.IO's `realtime-*` events (auth, sessions per client, rate limit, event and
 * audio size, idle and length limits, backpressure). The upstream opens at once (GA clients
 * wait for `session.created`); either side closing closes the other. A session whose credential
 * is revoked on this node (its API key, or its sign-in session) is told and closed.
 */
export function realtimeRoute(upgradeWebSocket: NodeWebSocket['upgradeWebSocket'], services: Services, realtime: RealtimeService) {
  const log = services.logger.child({ route: '/v1/realtime' });
  const perSecond = services.config.socket.maxEventsPerSecond;
  const open = new Set<{ principal: Principal; revoke(): void }>();
  const revokeWhere = (revoked: (p: Principal) => boolean) => {
    for (const entry of [...open]) if (revoked(entry.principal)) entry.revoke();
  };
  services.apiKeys.onRevoked((_userId, ids) => revokeWhere((p) => p.apiKey !== undefined && ids.includes(p.apiKey.id)));
  services.sessions?.onRevoked((_userId, ids) => revokeWhere((p) => typeof p.sessionId === 'string' && ids.includes(p.sessionId)));
  return upgradeWebSocket(
    (c) => {
      const principal = c.get('principal' as keyof AppEnv['Variables']) as AppEnv['Variables']['principal'];
      const validUntil = credentialExpiry(principal, acceptedToken(c), services.config.auth.clockSkewSeconds);
      let session: RealtimeSession | undefined;
      let socket: WSContext | undefined;
      const withinBudget = eventBudget(perSecond);
      const entry = {
        principal,
        revoke() {
          open.delete(entry);
          // The client hears why before the close; closing the session then closes its upstream.
          if (socket?.readyState === 1) {
            socket.send(JSON.stringify(realtimeErrorEvent({ code: 'UNAUTHORIZED', message: 'The credential this session was opened with was revoked' })));
            socket.close(CLOSE_CODES.UNAUTHORIZED, 'UNAUTHORIZED');
          }
          session?.end('UNAUTHORIZED', 'The credential this session was opened with was revoked');
        },
      };
      return {
        onOpen(_event, ws) {
          // Not open: the upgrade was refused or the client left first (server.ts releases such upgrades this way).
          if (ws.readyState !== 1) return;
          socket = ws;
          open.add(entry);
          session = realtime.session({
            protocol: 'websocket',
            principal: async () => principal,
            // Admitted on this token: the session ends when the token does.
            validUntil: () => validUntil,
            onServerEvent: (event) => ws.send(JSON.stringify(event)),
            // An upstream `error` event was relayed verbatim already; others become one.
            onError: (error) => {
              if (!error.fromUpstreamEvent) ws.send(JSON.stringify(realtimeErrorEvent(error)));
            },
            onClose: (reason) => {
              if (ws.readyState !== 1) return;
              // 1001 (going away) when the server stops: the client may reconnect to another node, or later.
              const code = reason.initiator === 'client' ? 1000 : reason.shutdown ? 1001 : (CLOSE_CODES[reason.code ?? 'INTERNAL'] ?? 1011);
              ws.close(code, reason.code ?? 'closed');
            },
            clientBacklogBytes: () => (ws.raw as { bufferedAmount?: number } | undefined)?.bufferedAmount ?? 0,
          });
          session.open();
        },
        onMessage(event, ws) {
          if (!withinBudget()) {
            // A flood holds the event loop for everyone (each message is parsed, checked and relayed): the session ends.
            if (ws.readyState !== 1) return;
            const error = { code: 'RATE_LIMIT', message: `More than ${perSecond} messages a second (SOCKET_MAX_EVENTS_PER_SECOND); the session is closed` } as const;
            services.metrics.error(error, 'realtime:websocket');
            log.warn({ userId: principal.userId }, 'realtime session closed: more messages than SOCKET_MAX_EVENTS_PER_SECOND');
            ws.send(JSON.stringify(realtimeErrorEvent(error)));
            ws.close(CLOSE_CODES.RATE_LIMIT, 'RATE_LIMIT');
            session?.end(error.code, error.message);
            return;
          }
          if (typeof event.data === 'string') {
            session?.handleClientEvent(event.data);
            return;
          }
          // Through the session's refusals: not answered while the client is not reading (its backlog bound).
          session?.refuse('BAD_REQUEST', 'The Realtime protocol uses JSON text frames; send audio as input_audio_buffer.append');
        },
        onClose() {
          open.delete(entry);
          session?.close();
        },
        onError() {
          // The socket refused what the client sent (a frame over the size limit, bad UTF-8): the server's doing.
          open.delete(entry);
          session?.end('BAD_REQUEST', 'The client sent a WebSocket frame the server refused');
        },
      };
    },
    { onError: (err: unknown) => log.error({ err }, 'realtime socket handler failed') },
  );
}

/** The token the `authenticate` middleware accepted: picked from the same sources in the same order. */
function acceptedToken(c: Context): PickedToken {
  return pickToken({
    authorization: requestHeader(c, 'authorization'),
    cookie: requestHeader(c, 'cookie'),
    payloadToken: c.req.query('token') ?? subprotocolToken(requestHeader(c, 'sec-websocket-protocol')),
  });
}
