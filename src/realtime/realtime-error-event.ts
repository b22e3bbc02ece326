import type { ErrorCode } from '../errors.js';
import { newId } from './realtime-ids.js';
import type { RealtimeServerEvent } from './realtime-provider.js';

/**
 * A gateway error in the Realtime protocol's own `error` event shape, for adapters that relay
 * the protocol verbatim (`/v1/realtime`): the client's Realtime library reports it like any
 * provider error. `code` is the gateway's stable code.
 */
export function realtimeErrorEvent(error: { code: ErrorCode; message: string; eventId?: string | undefined }): RealtimeServerEvent {
  return {
    type: 'error',
    event_id: newId('event'),
    error: {
      type: error.code === 'BAD_REQUEST' ? 'invalid_request_error' : 'server_error',
      code: error.code,
      message: error.message,
      param: null,
      event_id: error.eventId ?? null,
    },
  };
}
