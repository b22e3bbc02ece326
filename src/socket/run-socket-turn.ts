import type { ChatTurnEvent, ChatTurnInput } from '../chat/chat-pipeline.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { outgoingBytes, waitForRoom } from './backpressure.js';
import { eventPrincipal, type AnySocket } from './socket-auth.js';
import type { SocketTurns } from './socket-turns.js';
import { ownersOf } from '../chat/principal.js';
import { conversationKey } from '../stores/conversation-store.js';

/** How a Socket.IO protocol puts a turn's events on its socket. */
export interface SocketTurnEvents {
  start?(event: Extract<ChatTurnEvent, { type: 'start' }>): void;
  delta(text: string): void;
  end(event: Extract<ChatTurnEvent, { type: 'end' }>): void;
  error(event: Extract<ChatTurnEvent, { type: 'error' }>): void;
}

/**
 * One chat turn on a socket: authenticate the event, admit it through the pipeline (which
 * throws AppError for limits, models and ownership; the caller answers those), then hand each
 * event to the protocol. A disconnect aborts it through `turns`. While the socket has more than
 * SOCKET_MAX_BACKLOG_BYTES waiting to be sent, the pipeline stops pulling from the model.
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
  events: SocketTurnEvents;
}): Promise<void> {
  const { services, socket, turns, events } = options;
  const { maxBacklogBytes } = services.config.socket;
  const requested = options.input.stateless ? undefined : options.input.conversationId;
  // Registered before the first await, so a stop, a second start or a disconnect sees it at once.
  const running = turns.begin(requested);
  let unpend: (() => void) | undefined;
  try {
    await options.after;
    const principal = await eventPrincipal(services, socket, options.payloadToken);
    if (options.requireUser && principal.userId === null) throw new AppError('UNAUTHORIZED', 'Sign in to use persisted chats');
    // From here the owner is known: a stop naming the conversation from any of its sockets (or
    // HTTP, or another node) reaches the turn while the pipeline admits it.
    if (requested !== undefined) {
      const keys = ownersOf(principal).map((owner) => conversationKey(owner, requested));
      unpend = services.turns.pending(keys, running.controller, running.done);
    }
    const turn = await services.pipeline.prepare({ ...options.input, principal });
    await turn.run(
      {
        start: (e) => {
          running.started();
          unpend?.();
          events.start?.(e);
        },
        delta: (text) => {
          events.delta(text);
          return !socket.connected || outgoingBytes(socket) <= maxBacklogBytes;
        },
        drained: () => waitForRoom(socket, { maxBytes: maxBacklogBytes, signal: running.signal }),
        end: (e) => events.end(e),
        error: (e) => events.error(e),
      },
      running.controller,
    );
  } finally {
    unpend?.();
    running.end();
  }
}
