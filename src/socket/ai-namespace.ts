import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { AppError, toAppError } from '../errors.js';
import { withBindings } from '../logger.js';
import { countTokensBounded } from '../models/tokenizer.js';
import type { AiClientToServerEvents, AiServerToClientEvents, InterServerEvents, SocketData } from '../protocol/socket-events.js';
import type { Services } from '../services.js';
import { runSocketTurn } from './run-socket-turn.js';
import { replayToSocket } from './replay-to-socket.js';
import { connectionTokenExpiry, eventPrincipal } from './socket-auth.js';
import { ownersOf } from '../chat/principal.js';
import { conversationKey } from '../stores/conversation-store.js';
import { stopConversationTurnWithReply } from '../chat/stop-turn.js';
import type { ChatTurnEvent } from '../chat/chat-pipeline.js';
import { SocketTurns } from './socket-turns.js';
import { tokenEmitter } from './token-emitter.js';
import { BacklogWatch } from './backlog-watch.js';
import { outgoingBytes } from './backpressure.js';

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
  const continueOnDisconnect = services.config.streams.onDisconnect === 'continue';
  const resumeSchema = z.object({ conversationId: conversationIdSchema });
  /** Conversations (by key) with a signed-in user's turn running on this namespace of this node: their ends reach the user's tabs. */
  const roomTurns = new CountedSet();
  /**
   * Each socket's own turns and replays: those bound its backlog themselves while they run (and
   * end themselves when it is not read). `ownBacklog`: one of them ended with the socket over the
   * bound; what is left unread is its own, and it stays connected (its next resume replays the
   * turn) until it reads below the bound.
   */
  const selfBounded = new Map<string, { turns: SocketTurns; replays: number; ownBacklog: boolean }>();
  const { maxBacklogBytes } = services.config.socket;
  const slowTimeoutMs = services.config.slowClientTimeoutMs;
  const backlogs = new BacklogWatch<AiSocket>(nsp.sockets, {
    maxBytes: maxBacklogBytes,
    timeoutMs: slowTimeoutMs,
    exempt: (s) => {
      const own = selfBounded.get(s.id);
      if (own === undefined) return false;
      if (own.ownBacklog && outgoingBytes(s) <= maxBacklogBytes) own.ownBacklog = false;
      return own.turns.size > 0 || own.replays > 0 || own.ownBacklog;
    },
    cut: (s, bytes) => {
      log.info({ socketId: s.id, userId: s.data.userId, bytes }, 'socket cut: its outgoing buffer stayed full');
      s.emit('chat:error', {
        message: `The connection left over ${maxBacklogBytes} bytes unread for ${slowTimeoutMs} ms and was disconnected; reconnect and resume`,
        code: 'BAD_REQUEST',
      });
      s.disconnect(true);
    },
  });
  /**
   * The user's other tabs (every node through the adapter), without this node's tabs whose backlog
   * is over the bound: a copy cannot make the turn wait for them. Tabs are few: one look each.
   */
  const tabsOf = (socket: AiSocket, userRoom: string, all: ReturnType<AiSocket['to']>) => {
    const ids = nsp.adapter.rooms.get(userRoom);
    if (!ids || ids.size < 2) return all;
    let slow: string[] | undefined;
    for (const id of ids) {
      if (id === socket.id) continue;
      const tab = nsp.sockets.get(id);
      if (tab && backlogs.over(tab)) (slow ??= []).push(id);
    }
    return slow ? all.except(slow) : all;
  };

  /** The `/ai` events of a turn's end (shared by live turns and replays). */
  const emitEnd = (target: { emit: AiSocket['emit'] }, e: Extract<ChatTurnEvent, { type: 'end' }>) => {
    if (e.finishReason === 'stop' || e.finishReason === 'length') {
      target.emit('chat:end', {
        messageId: e.messageId,
        conversationId: e.conversationId,
        totalTokens: e.usage ? e.usage.inputTokens + e.usage.outputTokens : countTokensBounded(e.content),
        model: e.model,
        finishReason: e.finishReason,
      });
    } else if (e.finishReason === 'stopped' || e.finishReason === 'aborted') {
      // A turn cut by its client's disconnect ends like a stopped one (PROTOCOLS.md section 3) for
      // whoever still follows it: the user's other tabs, and a client that resumes it.
      target.emit('chat:stopped', { conversationId: e.conversationId, messageId: e.messageId || null });
    }
  };

  nsp.on('connection', (socket: AiSocket) => {
    const turns = new SocketTurns();
    const bounded = { turns, replays: 0, ownBacklog: false };
    /** A turn or replay of this socket's ended: whether it left the socket over the bound. */
    const ownEnded = () => {
      bounded.ownBacklog ||= outgoingBytes(socket) > maxBacklogBytes;
    };
    selfBounded.set(socket.id, bounded);
    backlogs.watch();
    /** Conversations with a turn of this socket's running: their ends reach this socket anyway. */
    const ownTurns = new CountedSet();
    const sessionLog = withBindings(log, { socketId: socket.id, userId: socket.data.userId });
    // Every socket of a signed-in user, on any node, receives that user's turns (multi-tab).
    const userRoom = socket.data.userId ? `user:${socket.data.userId}` : undefined;
    if (userRoom) void socket.join(userRoom);
    // Its own events are refused once the connection's token expires (each is checked again), and
    // the tabs' events stop with them: the socket leaves the user's room, and is told.
    const validUntil = userRoom ? connectionTokenExpiry(socket) : undefined;
    const expiry =
      userRoom && validUntil !== undefined
        ? atTime(validUntil, () => {
            void socket.leave(userRoom);
            socket.emit('chat:error', { message: 'Invalid token: token expired; reconnect with a new token', code: 'UNAUTHORIZED' });
          })
        : undefined;

    socket.on('disconnect', (reason) => {
      expiry?.cancel();
      selfBounded.delete(socket.id);
      // STREAM_ON_DISCONNECT=continue: the turns run to their end, stored and resumable.
      const aborted = continueOnDisconnect ? 0 : turns.abortAll('disconnect');
      sessionLog.debug({ reason, aborted }, 'socket disconnected');
    });

    socket.on('chat:resume', async (payload: unknown) => {
      try {
        const parsed = resumeSchema.safeParse(payload);
        if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
        bounded.replays++;
        await replayToSocket(services, socket, parsed.data.conversationId, (e) => {
          if (e.type === 'delta') socket.emit('chat:message', { content: e.text, isComplete: false });
          else if (e.type === 'end') emitEnd(socket, e);
          else if (e.type === 'error') socket.emit('chat:error', { message: e.error.message, code: e.error.code });
        }).finally(() => {
          bounded.replays--;
          ownEnded();
        });
      } catch (err) {
        const e = toAppError(err);
        socket.emit('chat:error', { message: e.message, code: e.code });
      }
    });

    socket.on('chat:stop', async (payload?: unknown) => {
      const conversationId = typeof payload === 'object' && payload !== null ? (payload as { conversationId?: unknown }).conversationId : undefined;
      if (conversationId !== undefined && conversationId !== null) {
        // That conversation's turn, wherever it runs, for its owner only (someone else's id stops nothing).
        try {
          const id = conversationIdSchema.safeParse(conversationId);
          if (!id.success) throw new AppError('BAD_REQUEST', 'conversationId: not a conversation id');
          // This socket's own start for it, still being admitted: stopped before anything is awaited.
          // Its end (chat:stopped, with the stored reply) reaches this socket as its own turn's.
          const ownQueued = turns.abortRequested(id.data) > 0;
          const principal = await eventPrincipal(services, socket, undefined);
          let stopped = ownQueued;
          let messageId: string | null = null;
          let viaRoom = ownQueued || ownTurns.has(id.data);
          for (const owner of ownersOf(principal)) {
            const key = conversationKey(owner, id.data);
            // Its end reaches this socket through the user's room already, or as this socket's own
            // turn (read before the turn ends).
            if (userRoom && roomTurns.has(key)) viaRoom = true;
            const result = await stopConversationTurnWithReply(services, key);
            if (!result.stopped) continue;
            stopped = true;
            messageId ??= result.messageId;
          }
          // Any other turn (one on the default namespace, an anonymous owner's, another node's) ends
          // unseen here: the requester is answered itself, once the stopped reply is stored.
          if (stopped && !viaRoom) socket.emit('chat:stopped', { conversationId: id.data, messageId });
        } catch (err) {
          const e = toAppError(err);
          socket.emit('chat:error', { message: e.message, code: e.code });
        }
        return;
      }
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
        // The same events, with the conversation named, for the user's other tabs (every node through the adapter).
        const allTabs = userRoom ? socket.to(userRoom) : undefined;
        const tabs = allTabs && userRoom ? () => tabsOf(socket, userRoom, allTabs) : undefined;
        let turnConversation = '';
        let roomKey: string | undefined;
        let ownId: string | undefined;
        const leaveRoomTurns = () => {
          if (ownId !== undefined) ownTurns.remove(ownId);
          if (roomKey !== undefined) roomTurns.remove(roomKey);
          ownId = roomKey = undefined;
        };
        // A named conversation is this socket's (and the user's room's) from the request on: a stop
        // naming it while the turn is admitted is answered by the turn's own end.
        if (conversationId) {
          ownId = conversationId;
          ownTurns.add(ownId);
          if (userRoom) {
            roomKey = conversationKey(socket.data.userId!, conversationId);
            roomTurns.add(roomKey);
          }
        }
        const chatMessage = tokenEmitter<{ content: string; isComplete: false }>(socket, 'chat:message');
        await runSocketTurn({
          services,
          socket,
          turns,
          after: turns.size > 0 ? turns.settled() : undefined,
          input: { message, conversationId: conversationId ?? undefined, model, maxTokens, temperature, protocol: 'chat:start' },
          events: {
            start: (e) => {
              turnConversation = e.conversationId;
              if (ownId === undefined) {
                ownId = e.conversationId;
                ownTurns.add(ownId);
                if (userRoom) {
                  roomKey = conversationKey(socket.data.userId!, e.conversationId);
                  roomTurns.add(roomKey);
                }
              }
              if (e.conversationCreated) socket.emit('chat:conversation', { conversationId: e.conversationId });
              socket.emit('chat:user-message', { messageId: e.userMessageId, content: e.content });
              if (tabs) {
                const to = tabs();
                if (e.conversationCreated) to.emit('chat:conversation', { conversationId: e.conversationId });
                to.emit('chat:user-message', { messageId: e.userMessageId, content: e.content });
              }
            },
            delta: (text) => {
              chatMessage({ content: text, isComplete: false });
              tabs?.().emit('chat:message', { content: text, isComplete: false, conversationId: turnConversation });
            },
            end: (e) => {
              emitEnd(socket, e);
              if (tabs) emitEnd(tabs(), e);
              leaveRoomTurns();
            },
            error: (e) => {
              socket.emit('chat:error', { message: e.error.message, code: e.error.code });
              tabs?.().emit('chat:error', { message: e.error.message, code: e.error.code });
              leaveRoomTurns();
            },
          },
        }).finally(() => {
          leaveRoomTurns();
          ownEnded();
        });
      } catch (err) {
        const e = toAppError(err);
        services.metrics.error(e, 'chat:start');
        socket.emit('chat:error', { message: e.message, code: e.code });
      }
    });
  });
}

/** The longest delay a Node timer takes (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `task` at `when` (ms since the epoch), however far off; `cancel()` stops it. */
function atTime(when: number, task: () => void): { cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    const wait = when - Date.now();
    if (wait <= 0) {
      timer = undefined;
      task();
      return;
    }
    timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
    timer.unref?.();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}

/** Keys held by several holders at once: a key is in the set while any holder has added it and not removed it. */
class CountedSet {
  readonly #counts = new Map<string, number>();

  add(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  remove(key: string): void {
    const left = (this.#counts.get(key) ?? 1) - 1;
    if (left > 0) this.#counts.set(key, left);
    else this.#counts.delete(key);
  }

  has(key: string): boolean {
    return this.#counts.has(key);
  }
}
