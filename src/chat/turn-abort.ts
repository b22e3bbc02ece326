import { AppError } from '../errors.js';

/**
 * Why a turn was cut short:
 * - `stop`: the client asked (stored as `stopped`);
 * - `disconnect`: the client went away (stored as `aborted`, nobody to tell);
 * - `shutdown`: the server is stopping while the client is still there;
 * - `deleted`: the conversation (or the account) was deleted while the reply streamed;
 * - `slow-client`: the client stopped reading and its buffer stayed full too long;
 * - `too-long`: the provider sent far more text than the reply's token limit allows (it ignored
 *   the limit): ended as a reply that reached its limit (`length`).
 */
export type AbortCause = 'stop' | 'disconnect' | 'shutdown' | 'deleted' | 'slow-client' | 'too-long';

const MESSAGES: Record<AbortCause, string> = {
  stop: 'Stopped by the client',
  disconnect: 'Client went away',
  shutdown: 'The server is shutting down; the partial reply was saved',
  deleted: 'The conversation was deleted while the reply streamed',
  'slow-client': 'The connection stopped reading the reply; it was cut and the partial reply saved',
  'too-long': 'The model sent more text than its token limit allows',
};

export class TurnAbort extends Error {
  constructor(readonly kind: AbortCause) {
    super(MESSAGES[kind]);
    this.name = 'TurnAbort';
  }

  /** How the reply is stored. */
  get finishReason(): 'stopped' | 'aborted' | 'length' {
    return this.kind === 'stop' ? 'stopped' : this.kind === 'too-long' ? 'length' : 'aborted';
  }

  /**
   * The coded error a client that is still listening must get, on whatever protocol; undefined
   * for a stop (the protocol has its own event) and a disconnect (nobody to tell).
   */
  get clientError(): AppError | undefined {
    switch (this.kind) {
      case 'shutdown':
        return new AppError('INTERNAL', this.message);
      case 'deleted':
        return new AppError('NOT_FOUND', this.message);
      case 'slow-client':
        return new AppError('BAD_REQUEST', this.message);
      default:
        return undefined;
    }
  }
}

/** The abort reason as a TurnAbort; anything else (a bare abort) counts as the client leaving. */
export function asTurnAbort(reason: unknown): TurnAbort {
  return reason instanceof TurnAbort ? reason : new TurnAbort('disconnect');
}
