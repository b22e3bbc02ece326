import { withBindings } from '../logger.js';
import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { AppError, toAppError } from '../errors.js';
import type {
  DefaultClientToServerEvents,
  DefaultServerToClientEvents,
  InterServerEvents,
  ProtocolError,
  SocketData,
} from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import type { RealtimeService } from '../realtime/realtime-service.js';
import { attachRealtimeEvents } from './realtime-events.js';
import { runSocketTurn } from './run-socket-turn.js';
import { SocketTurns } from './socket-turns.js';
import { tokenEmitter } from './token-emitter.js';
import { replayToSocket } from './replay-to-socket.js';

type DefaultSocket = Socket<DefaultClientToServerEvents, DefaultServerToClientEvents, InterServerEvents, SocketData>;
export type DefaultNamespace = Namespace<DefaultClientToServerEvents, DefaultServerToClientEvents, InterServerEvents, SocketData>;

/**
 * Turns one socket may run at once, `ai:chat` streams and `ai-message` replies together (each
 * names its conversation or waits for its own answer, so they can interleave); one more is BUSY.
 */
const MAX_PARALLEL_TURNS = 4;

/**
 * Namespace `/`: seed 000 (`ai-message {prompt}`), seed 001 (`ai-message {chatId, content}`),
 * seed 002 (`ai:chat` streaming), seed 004 (`realtime-*`), and `message` (logged). Thin
 * translations over the pipeline and the realtime service.
 */
export function attachDefaultNamespace(nsp: DefaultNamespace, services: Services, realtime: RealtimeService): void {
  const { maxMessageChars } = services.config.chat;
  const fields = chatFieldsSchema(maxMessageChars);
  const promptSchema = z.object({ prompt: fields.message, model: fields.model, maxTokens: fields.maxTokens, temperature: fields.temperature });
  const persistedSchema = z.object({ chatId: conversationIdSchema, content: fields.message, model: fields.model });
  const streamSchema = z.object({ ...fields, sessionId: conversationIdSchema.optional() });
  const log = services.logger.child({ nsp: '/' });
  /** The error event's payload, counted once per error (a failed turn's error comes here again). */
  const protocolError = (err: unknown, protocol: string): ProtocolError => {
    const e = toAppError(err);
    services.metrics.error(e, protocol);
    return { error: e.message, code: e.code };
  };

  nsp.on('connection', (socket: DefaultSocket) => {
    const turns = new SocketTurns();
    const sessionLog = withBindings(log, { socketId: socket.id, userId: socket.data.userId });
    sessionLog.debug({ ip: socket.data.ip }, 'socket connected');

    socket.on('disconnect', (reason) => {
      // STREAM_ON_DISCONNECT=continue: the turns run to their end, stored and resumable.
      const aborted = services.config.streams.onDisconnect === 'continue' ? 0 : turns.abortAll('disconnect');
      sessionLog.debug({ reason, aborted }, 'socket disconnected');
    });

    socket.on('message', (data) => {
      // Measured only when the line is written: each `message` would otherwise be serialised again, at 400 a second.
      if (sessionLog.isLevelEnabled?.('debug') !== false) sessionLog.debug({ bytes: safeSize(data) }, 'message event');
    });

    socket.on('ai-message', (payload: unknown) => {
      // Seed 000 sends `{prompt}`; seed 001 sends `{chatId, content}`; with both, prompt wins (2a).
      if (isRecord(payload) && 'prompt' in payload) void oneShot(socket, payload);
      else void persisted(socket, payload);
    });

    socket.on('ai:chat', (payload: unknown) => void streamed(socket, payload));

    socket.on('ai:resume', async (payload: unknown) => {
      try {
        const sessionId = conversationIdSchema.safeParse(isRecord(payload) ? payload.sessionId : undefined);
        if (!sessionId.success) throw new AppError('BAD_REQUEST', 'sessionId: a conversation id is required');
        const token = isRecord(payload) ? payload.token : undefined;
        await replayToSocket(
          services,
          socket,
          sessionId.data,
          (e) => {
            if (e.type === 'delta') socket.emit('ai:stream', { content: e.text, sessionId: sessionId.data });
            else if (e.type === 'end') socket.emit('ai:complete', { response: e.content, sessionId: sessionId.data, messageId: e.messageId });
            else if (e.type === 'error') socket.emit('ai:error', { error: e.error.message, code: e.error.code });
          },
          token,
        );
      } catch (err) {
        socket.emit('ai:error', protocolError(err, 'ai:resume'));
      }
    });

    attachRealtimeEvents(socket, services, realtime);

    async function oneShot(s: DefaultSocket, payload: Record<string, unknown>) {
      try {
        const parsed = promptSchema.safeParse(payload);
        if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error).replace(/^message/, 'prompt'));
        const reply = await wholeReply(s, {
          input: { message: parsed.data.prompt, model: parsed.data.model, maxTokens: parsed.data.maxTokens, temperature: parsed.data.temperature, protocol: 'ai-message:prompt' },
        });
        if (reply !== undefined) s.emit('ai-message-response', { response: reply });
      } catch (err) {
        s.emit('ai-message-response', protocolError(err, 'ai-message:prompt'));
      }
    }

    async function persisted(s: DefaultSocket, payload: unknown) {
      try {
        if (!isRecord(payload) || !payload.chatId || !payload.content) throw new AppError('BAD_REQUEST', 'chatId and content are required');
        const parsed = persistedSchema.safeParse(payload);
        if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
        const { chatId, content, model } = parsed.data;
        const reply = await wholeReply(s, { requireUser: true, input: { message: content, conversationId: chatId, model, protocol: 'ai-message:chat' } });
        if (reply !== undefined) s.emit('ai-response', { chat: chatId, content: reply });
      } catch (err) {
        s.emit('ai-response', protocolError(err, 'ai-message:chat'));
      }
    }

    /**
     * Seeds 000 and 001 answer once, with the whole reply: as far as it got when the turn was
     * stopped (those seeds cannot stop a turn, but its owner can from `/ai`: `chat:stop
     * {conversationId}`), so the client waiting for it gets an answer. Undefined when the client
     * left; a failure (shutdown included) is thrown so the caller's error event tells the client.
     */
    async function wholeReply(s: DefaultSocket, turn: { input: Parameters<typeof runSocketTurn>[0]['input']; requireUser?: boolean }): Promise<string | undefined> {
      if (turns.size >= MAX_PARALLEL_TURNS) throw new AppError('BUSY', `At most ${MAX_PARALLEL_TURNS} replies may be under way at once on one connection`);
      let reply: string | undefined;
      let failure: AppError | undefined;
      await runSocketTurn({
        services,
        socket: s,
        turns,
        requireUser: turn.requireUser ?? false,
        input: turn.input,
        events: {
          delta: () => undefined,
          end: (e) => {
            if (e.finishReason === 'stop' || e.finishReason === 'length' || e.finishReason === 'stopped') reply = e.content;
          },
          error: (e) => {
            failure = e.error;
          },
        },
      });
      if (failure) throw failure;
      return s.connected ? reply : undefined;
    }

    async function streamed(s: DefaultSocket, payload: unknown) {
      try {
        if (!isRecord(payload)) throw new AppError('BAD_REQUEST', 'The payload must be an object with a message');
        const parsed = streamSchema.safeParse(payload);
        if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
        if (turns.size >= MAX_PARALLEL_TURNS) throw new AppError('BUSY', `At most ${MAX_PARALLEL_TURNS} chats may stream at once on one connection`);
        const { message, sessionId, model, maxTokens, temperature } = parsed.data;
        let conversationId = '';
        const stream = tokenEmitter<{ content: string; sessionId: string }>(s, 'ai:stream');
        await runSocketTurn({
          services,
          socket: s,
          turns,
          payloadToken: payload.token,
          input: { message, conversationId: sessionId, model, maxTokens, temperature, protocol: 'ai:chat' },
          events: {
            start: (e) => {
              conversationId = e.conversationId;
            },
            delta: (text) => stream({ content: text, sessionId: conversationId }),
            end: (e) => {
              // An `aborted` end means the client left: there is nobody to tell.
              if (e.finishReason !== 'aborted') s.emit('ai:complete', { response: e.content, sessionId: conversationId, messageId: e.messageId });
            },
            error: (e) => s.emit('ai:error', { error: e.error.message, code: e.error.code }),
          },
        });
      } catch (err) {
        s.emit('ai:error', protocolError(err, 'ai:chat'));
      }
    }
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function safeSize(data: unknown): number {
  try {
    return JSON.stringify(data)?.length ?? 0;
  } catch {
    return -1;
  }
}
