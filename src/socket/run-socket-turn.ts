import type { ChatTurnEvent, ChatTurnInput } from '../chat/chat-pipeline.js';
import { TurnAbort } from '../chat/turn-abort.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { outgoingBytes, waitForRoom } from './backpressure.js';
import { eventPrincipal, type AnySocket } from './socket-auth.js';
import type { SocketTurns } from './socket-turns.js';

/**
 * One chat turn on a socket: authenticate the event, admit it through the pipeline (which
 * throws AppError for limits, models and ownership), then hand each event to the protocol.
 * A disconnect aborts it through `turns`. While the socket's outgoing buffer is full the
 * turn stops pulling from the model; a reader that stays stuck past SLOW_CLIENT_TIMEOUT_MS
 * ends the turn (stored, with a coded error).
 */
export async function runSocketTurn(options: {
  services: Services;
  socket: AnySocket;
  turns: SocketTurns;
  payloadToken?: unknown;
  input: Omit<ChatTurnInput, 'principal'>;
  /** The protocol needs a signed-in user (seed 001). */
  requireUser?: boolean;
  /** Wait for this before admitting the turn (a stopped turn still storing its reply). */
  after?: Promise<void>;
  onEvent(event: ChatTurnEvent): void;
}): Promise<void> {
  const { services, socket, turns } = options;
  const { maxBacklogBytes } = services.config.socket;
  // Registered before the first await, so a stop, a second start or a disconnect sees it at once.
  const running = turns.begin();
  try {
    await options.after;
    const principal = await eventPrincipal(services, socket, options.payloadToken);
    if (options.requireUser && principal.userId === null) throw new AppError('UNAUTHORIZED', 'Sign in to use persisted chats');
    const turn = await services.pipeline.prepare({ ...options.input, principal });
    for await (const event of turn.run(running.signal)) {
      options.onEvent(event);
      if (event.type === 'delta' && outgoingBytes(socket) > maxBacklogBytes) {
        await waitForRoom(socket, { maxBytes: maxBacklogBytes, timeoutMs: services.config.slowClientTimeoutMs, signal: running.signal }).catch(
          (err: unknown) => running.abort(err instanceof TurnAbort ? err.kind : 'slow-client'),
        );
      }
    }
  } finally {
    running.end();
  }
}
