import type { ChatTurnEvent } from '../chat/chat-pipeline.js';
import { findResumable } from '../chat/resume-target.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { eventPrincipal, type AnySocket } from './socket-auth.js';

/**
 * `chat:resume` / `ai:resume`: the caller's conversation's running (or just finished) turn,
 * replayed from its start through `emit`, then followed live until its end or the socket's.
 * Throws NOT_FOUND when nothing is kept for that conversation.
 */
export async function replayToSocket(
  services: Services,
  socket: AnySocket,
  conversationId: string,
  emit: (event: ChatTurnEvent) => void,
  payloadToken?: unknown,
): Promise<void> {
  const principal = await eventPrincipal(services, socket, payloadToken);
  const target = await findResumable(services.streams, principal, conversationId);
  if (!target) throw new AppError('NOT_FOUND', 'Nothing is streaming or recently finished in this conversation');
  const controller = new AbortController();
  const gone = () => controller.abort();
  socket.once('disconnect', gone);
  try {
    for await (const { event } of services.streams!.follow(target.conversationKey, target.turnId, 0, controller.signal)) {
      if (!socket.connected) return;
      emit(event);
    }
  } finally {
    socket.off('disconnect', gone);
  }
}
