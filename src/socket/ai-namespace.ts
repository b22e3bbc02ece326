import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { AppError, toAppError } from '../errors.js';
import { withBindings } from '../logger.js';
import { countTokens } from '../models/tokenizer.js';
import type { AiClientToServerEvents, AiServerToClientEvents, InterServerEvents, SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { runSocketTurn } from './run-socket-turn.js';
import { SocketTurns } from './socket-turns.js';

type AiSocket = Socket<AiClientToServerEvents, AiServerToClientEvents, InterServerEvents, SocketData>;
export type AiNamespace = Namespace<AiClientToServerEvents, AiServerToClientEvents, InterServerEvents, SocketData>;

/** Namespace `/ai` (seed 003): `chat:start` with six server events, `chat:stop`, one stream per socket. */
export function attachAiNamespace(nsp: AiNamespace, services: Services): void {
  const fields = chatFieldsSchema(services.config.chat.maxMessageChars);
  const startSchema = z.object({
    ...fields,
    // The seed's React and Vue clients send `conversationId: null` before they have one.
    conversationId: conversationIdSchema.nullish(),
    userId: z.unknown().optional(),
  });
  const log = services.logger.child({ nsp: '/ai' });

  nsp.on('connection', (socket: AiSocket) => {
    const turns = new SocketTurns();
    const sessionLog = withBindings(log, { socketId: socket.id, userId: socket.data.userId });

    socket.on('disconnect', (reason) => {
      const aborted = turns.abortAll('disconnect');
      sessionLog.debug({ reason, aborted }, 'socket disconnected');
    });

    socket.on('chat:stop', () => {
      if (turns.size === 0) {
        sessionLog.debug({}, 'chat:stop with nothing streaming');
        return;
      }
      turns.abortAll('stop');
    });

    socket.on('chat:start', async (payload: unknown) => {
      try {
        // A stopped turn still storing its reply is not busy: the new one waits for it (`after`).
        if (turns.streaming > 0) throw new AppError('BUSY', 'A reply is already streaming on this connection; stop it or wait for chat:end');
        const parsed = startSchema.safeParse(payload);
        if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
        const { message, conversationId, model, maxTokens, temperature } = parsed.data;
        await runSocketTurn({
          services,
          socket,
          turns,
          after: turns.size > 0 ? turns.settled() : undefined,
          input: { message, conversationId: conversationId ?? undefined, model, maxTokens, temperature, protocol: 'chat:start' },
          events: {
            start: (e) => {
              if (e.conversationCreated) socket.emit('chat:conversation', { conversationId: e.conversationId });
              socket.emit('chat:user-message', { messageId: e.userMessageId, content: e.content });
            },
            delta: (text) => socket.emit('chat:message', { content: text, isComplete: false }),
            end: (e) => {
              if (e.finishReason === 'stop' || e.finishReason === 'length') {
                socket.emit('chat:end', {
                  messageId: e.messageId,
                  conversationId: e.conversationId,
                  totalTokens: e.usage ? e.usage.inputTokens + e.usage.outputTokens : countTokens(e.content),
                  model: e.model,
                  finishReason: e.finishReason,
                });
              } else if (e.finishReason === 'stopped') {
                socket.emit('chat:stopped', { conversationId: e.conversationId, messageId: e.messageId || null });
              }
            },
            error: (e) => socket.emit('chat:error', { message: e.error.message, code: e.error.code }),
          },
        });
      } catch (err) {
        const e = toAppError(err);
        services.metrics.error(e, 'chat:start');
        socket.emit('chat:error', { message: e.message, code: e.code });
      }
    });
  });
}
