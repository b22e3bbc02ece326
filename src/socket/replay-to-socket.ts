import type { ChatTurnEvent } from '../chat/chat-pipeline.js';
import { findResumable } from '../chat/resume-target.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { outgoingBytes, waitForRoom } from './backpressure.js';
import { eventPrincipal, type AnySocket } from './socket-auth.js';

/** Replays one socket may run at once (a page resuming each conversation it shows); another answers BUSY. */
const MAX_REPLAYS_PER_SOCKET = 4;

/** Each socket's running replays, by conversation id. */
const replays = new WeakMap<object, Map<string, AbortController>>();

/**
 * `chat:resume` / `ai:resume`: the caller's conversation's running (or just finished) turn,
 * replayed from its start through `emit`, then followed live until its end or the socket's.
 * Throws NOT_FOUND when nothing is kept for that conversation.
 *
 * A replay is bounded like a live turn: while the socket's backlog is over
 * SOCKET_MAX_BACKLOG_BYTES it waits for the client to read (and is cut after
 * SLOW_CLIENT_TIMEOUT_MS), and a socket runs a few at once, a resume of a conversation already
 * replaying on it taking that one's place (a client's retry). Unbounded, a client that stopped
 * reading and asked for a long kept turn again and again had the server copy it into its
 * outgoing buffer each time: hundreds of megabytes in seconds.
 */
export async function replayToSocket(
  services: Services,
  socket: AnySocket,
  conversationId: string,
  emit: (event: ChatTurnEvent) => void,
  payloadToken?: unknown,
): Promise<void> {
  const principal = await eventPrincipal(services, socket, payloadToken);
  const target = await findResumable(services.streams, services.store, principal, conversationId);
  if (!target) throw new AppError('NOT_FOUND', 'Nothing is streaming or recently finished in this conversation');
  let running = replays.get(socket);
  if (!running) replays.set(socket, (running = new Map()));
  const previous = running.get(conversationId);
  if (!previous && running.size >= MAX_REPLAYS_PER_SOCKET) {
    throw new AppError('BUSY', `At most ${MAX_REPLAYS_PER_SOCKET} resumes may run at once on one connection`);
  }
  previous?.abort();
  const controller = new AbortController();
  running.set(conversationId, controller);
  const gone = () => controller.abort();
  socket.once('disconnect', gone);
  const { maxBacklogBytes } = services.config.socket;
  try {
    for await (const { event } of services.streams!.follow(target.conversationKey, target.turnId, 0, controller.signal)) {
      if (!socket.connected || controller.signal.aborted) return;
      if (outgoingBytes(socket) > maxBacklogBytes && !(await waitForRoom(socket, { maxBytes: maxBacklogBytes, signal: controller.signal, timeoutMs: services.config.slowClientTimeoutMs }))) {
        throw new AppError('BAD_REQUEST', `The replay was left unread for ${services.config.slowClientTimeoutMs} ms and was stopped; resume again to read it`);
      }
      if (!socket.connected || controller.signal.aborted) return;
      emit(event);
    }
  } finally {
    socket.off('disconnect', gone);
    if (running.get(conversationId) === controller) running.delete(conversationId);
  }
}

