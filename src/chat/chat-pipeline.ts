import { admitApiKey } from '../auth/api-key-policy.js';
import { AppError, toAppError } from '../errors.js';
import { type Logger, withBindings } from '../logger.js';
import type { StartGate } from './start-gate.js';
import type { LanguageModel, ModelFinishReason, ModelMessage, ModelStream, Sampling, TokenUsage } from '../models/language-model.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { chatLimit, type RateLimitDecision, type RateLimitPolicy, type RateLimiter } from '../ratelimit/rate-limiter.js';
import { conversationKey, findOwnedConversation, monotonicNow, timeOrderedId, type Conversation, type ConversationStore, type FinishReason, type StoredMessage } from '../stores/conversation-store.js';
import type { MemoryMatch } from '../memory/memory-store.js';
import { countTokensBounded } from '../models/tokenizer.js';
import { buildContext, type ContextMessage } from './context-builder.js';
import { cleanLabel } from './chat-request.js';
import { ownersOf, type Principal } from './principal.js';
import { TurnAbort, asTurnAbort } from './turn-abort.js';
import type { TurnTracker } from './turn-tracker.js';
import type { TurnCoordinator, TurnLease } from './turn-coordinator.js';
import { eventId, type TurnLog, type TurnStreams } from './turn-streams.js';
import type { LongTermMemory } from '../memory/long-term-memory.js';
import { noopMetrics, type Metrics } from '../metrics/metrics.js';
import { BoundedMap } from '../bounded-map.js';

export interface ChatTurnInput {
  principal: Principal;
  message: string;
  conversationId?: string | undefined;
  model?: string | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  /** Up to 4 sequences that end the reply where they would start (OpenAI's `stop`). */
  stop?: readonly string[] | undefined;
  /** top_p, penalties and seed (the OpenAI-compatible API), handed to the model as they are. */
  sampling?: Sampling | undefined;
  /**
   * A stateless turn (OpenAI-compatible clients that send the whole history): the client's
   * earlier messages come in `history`, nothing is read from or written to the store, and no
   * long-term memory is recalled or kept. `conversationId` is then ignored. The pipeline takes
   * the history (leaves `history` empty) once the model is asked: it is not kept while the
   * reply streams.
   */
  stateless?: { history: readonly ModelMessage[] } | undefined;
  /** Which wire protocol runs the turn (`sse`, `ai:chat`, `chat:start`, ...): a metrics label, so a fixed name. */
  protocol?: string | undefined;
  /**
   * The arrival gate's pass this request was let through in (`StartGate.pass`): the HTTP chat
   * routes wait for it as their first step (`inArrivalOrder`); otherwise `prepare` waits first.
   */
  arrivedInPass?: number | undefined;
}

export type ChatTurnEvent =
  | {
      type: 'start';
      conversationId: string;
      conversationCreated: boolean;
      userMessageId: string;
      content: string;
      model: string;
      /**
       * When the user message was known stored (ms, `monotonicNow`): its conversation existed by
       * then, so a turn stamped before a conversation's `createdAt` belongs to an earlier one under
       * the same id (deleted since), whose kept log must not be resumed (see findResumable).
       * Absent from events recorded by an earlier version.
       */
      storedAt?: number;
    }
  | { type: 'delta'; text: string }
  | {
      type: 'end';
      conversationId: string;
      messageId: string;
      content: string;
      finishReason: FinishReason;
      usage: TokenUsage | undefined;
      model: string;
      /**
       * The provider ended the reply with its content filter (stored as `stop`, as the contract's
       * finish reasons have no other name for it): the OpenAI and AI SDK routes say so in theirs.
       */
      filtered?: boolean;
    }
  | { type: 'error'; conversationId: string; messageId: string | undefined; content: string; error: AppError };


/** The most characters a reply may have per token of its limit, beyond which the provider ignored the limit. */
const MAX_CHARS_PER_TOKEN = 64;
export interface ChatPipelineOptions {
  systemPrompt: string;
  historyLimit: number;
  maxOutputTokens: number;
  /**
   * MAX_MESSAGE_CHARS, for every protocol: each route refuses a longer message in its own words
   * first; this is the rule itself, so a protocol that forgets to check cannot get past it.
   */
  maxMessageChars: number;
  /** A model that sends nothing for this long after the request ends the turn with PROVIDER_ERROR. */
  firstByteTimeoutMs: number;
  /** A model that goes quiet this long between parts ends the turn with PROVIDER_ERROR (partial reply kept). */
  idleTimeoutMs: number;
  /** A client whose buffer stays full this long ends its turn (stored as aborted, told BAD_REQUEST). */
  slowClientTimeoutMs: number;
  /** A stored turn whose client goes away runs to its end (STREAM_ON_DISCONNECT=continue). */
  continueOnDisconnect?: boolean | undefined;
}

type StartEvent = Extract<ChatTurnEvent, { type: 'start' }>;
type EndEvent = Extract<ChatTurnEvent, { type: 'end' }>;
type ErrorEvent = Extract<ChatTurnEvent, { type: 'error' }>;

/**
 * Where a protocol adapter receives a turn's events. Text is pushed as it arrives (one call
 * per network read upstream), and `delta` answers whether the client can take more: on false
 * the turn stops pulling from the model until `drained()` resolves, and ends the turn (stored,
 * BAD_REQUEST) if that takes longer than SLOW_CLIENT_TIMEOUT_MS. Exactly one of `end` and
 * `error` comes last, after the reply is stored.
 */
export interface TurnSink {
  /** `id` (every method): the event's resumable id (`<turnId>-<seq>`), when the turn is recorded. */
  start(event: StartEvent, id?: string): void;
  delta(text: string, id?: string): boolean;
  /** Resolves when the client has room again (what it resolves with is not read). */
  drained(): Promise<unknown>;
  end(event: EndEvent, id?: string): void;
  error(event: ErrorEvent, id?: string): void;
}

export interface ChatPipelineDeps {
  store: ConversationStore;
  /** Long-term memory for signed-in users; absent when MEMORY_ENABLED=false. */
  memory?: LongTermMemory | undefined;
  models: ModelRegistry;
  limiter: RateLimiter;
  rateLimits: RateLimitPolicy;
  turns: TurnTracker;
  /** Several nodes: one running turn per conversation across all of them (BUSY). */
  coordinator?: TurnCoordinator | undefined;
  /** Where turns are recorded for resuming; undefined when resuming is off. */
  streams?: TurnStreams | undefined;
  logger: Logger;
  options: ChatPipelineOptions;
  /** Absent: nothing is measured. */
  metrics?: Metrics | undefined;
  /**
   * Takes a burst of chat requests in arrival order, a few per pass of the event loop, so that
   * the first of them reach their model before the last have been checked; absent: no order.
   */
  arrivalGate?: StartGate | undefined;
  /** Spreads a burst of turn starts over passes of the event loop; absent: no spreading. */
  startGate?: StartGate | undefined;
}

/** A turn that passed every admission check; `run()` streams it into a sink. */
export interface PreparedTurn {
  readonly conversation: Conversation;
  readonly conversationCreated: boolean;
  readonly model: LanguageModel;
  readonly rateLimit: RateLimitDecision;
  /** The client's going away does not end the turn (STREAM_ON_DISCONNECT=continue, stored turns only). */
  readonly continueOnDisconnect: boolean;
  /**
   * Resolves once the final event was handed to the sink (and the reply stored). Never rejects.
   * `abort` ends the turn early: pass the AbortController the protocol aborts on a stop or a
   * disconnect (the turn then uses it as its own), or a signal to follow.
   */
  run(sink: TurnSink, abort?: AbortController | AbortSignal): Promise<void>;
}

interface Ending {
  finishReason: FinishReason;
  usage: TokenUsage | undefined;
  error?: AppError | undefined;
  /** The provider's content filter ended the reply. */
  filtered?: boolean;
}

const TITLE_CHARS = 80;

/**
 * The one chat pipeline every protocol shares: admit (model, ownership, rate limit),
 * persist the user message, build context, stream the model, persist the reply however
 * the stream ends.
 */
/** What a turn asked for during a shutdown gets: before it is counted, or after (released). */
function shuttingDown(): AppError {
  return new AppError('INTERNAL', 'The server is shutting down; retry in a moment');
}

/** How long a conversation moved from an IP to a cookie is remembered as moved (a lookup under way then reads it again). */
const MOVED_REMEMBERED_MS = 60_000;

export class ChatPipeline {
  /** Conversations known by an IP that requests have in hand, and the move of one under way (#adopt). */
  readonly #held = new Map<string, { count: number; moving?: Promise<void> | undefined }>();
  /** Conversations moved from an IP to a cookie lately, by their old key (bounded: the oldest go first). */
  readonly #movedAway = new BoundedMap<string, number>(10_000);

  constructor(private readonly deps: ChatPipelineDeps) {}

  /** Throws AppError (INVALID_MODEL, RATE_LIMIT, ...) before anything is streamed or stored. */
  async prepare(input: ChatTurnInput): Promise<PreparedTurn> {
    const { store, limiter, models, turns } = this.deps;
    if (turns.closing) throw shuttingDown();
    const { arrivalGate, startGate } = this.deps;
    let arrivedInPass = input.arrivedInPass;
    if (arrivedInPass === undefined && arrivalGate) {
      const wait = arrivalGate.admit();
      if (wait) {
        await wait;
        // A shutdown that began while it queued refuses it before it is counted against its owner.
        if (turns.closing) throw shuttingDown();
      }
      arrivedInPass = arrivalGate.pass;
    }
    const { maxMessageChars } = this.deps.options;
    if (input.message.length > maxMessageChars) throw new AppError('BAD_REQUEST', `message: must be at most ${maxMessageChars} characters`);
    const model = models.resolve(input.model);
    if (input.principal.apiKey) await admitApiKey(input.principal, { requested: input.model ?? models.defaultModel, served: model }, limiter);
    const refused = input.sampling && model.refusedSampling?.(input.sampling);
    // `details.sampling` names the field: each protocol words it its own way (/v1: `param`).
    if (refused) throw new AppError('BAD_REQUEST', refused.message, { details: { sampling: refused.field } });
    const owners = ownersOf(input.principal);

    // A conversation is reached only through its owner: someone else's id is simply not found here.
    let found = input.conversationId && !input.stateless ? await findOwnedConversation(store, owners, input.conversationId) : undefined;
    // Moved to a cookie by another request while it was read (see #adopt): read again.
    if (found && this.#wasMoved(found.key)) {
      await this.#held.get(found.key)?.moving;
      found = await findOwnedConversation(store, owners, found.id);
    }
    // Conversations that may move (those known by an IP) are held from here to the turn's end.
    const held = found?.ownerId.startsWith('ip:') ? this.#hold(found.key) : undefined;
    // A new conversation is written with its first message (one commit, when the turn runs).
    const created = !found;
    let conversation = found ?? newConversation(owners[0]!, (!input.stateless && input.conversationId) || timeOrderedId(), titleOf(input.message));
    let lease: TurnLease | undefined;
    let rateLimit: RateLimitDecision;
    try {
      lease = input.stateless ? undefined : await this.#claim(conversation.key);
      // Several nodes: another node may have moved it before this one had its slot.
      if (held && lease) {
        const taken = lease;
        const still = await store.getConversation(conversation.ownerId, conversation.id).catch((err: unknown) => {
          taken.release();
          throw err;
        });
        if (!still) {
          taken.release();
          throw new AppError('BUSY', 'This conversation moved while the turn started; send it again');
        }
      }
      const { key, limit } = chatLimit(input.principal, this.deps.rateLimits);
      rateLimit = await limiter.consume(key, limit).catch((err: unknown) => {
        lease?.release();
        throw err;
      });
      if (!rateLimit.allowed) {
        lease?.release();
        const retryAfterSeconds = Math.max(1, Math.ceil((rateLimit.reset - Date.now()) / 1000));
        throw new AppError('RATE_LIMIT', `Too many chat requests; retry in ${retryAfterSeconds} s`, {
          details: { rateLimit, retryAfterSeconds },
        });
      }
      // The turn's expensive part (the store, the model request) starts in the pass its request was
      // let through in. Checks that waited on the network (a shared limiter, a remote store) may end
      // in a later pass, together with a burst of others: such a start waits its pass of the start
      // gate. After admission: a client flooding starts is refused at its rate limit there.
      if (!arrivalGate || arrivalGate.pass !== arrivedInPass) {
        const wait = startGate?.admit();
        if (wait) await wait;
      }
      if (turns.closing) {
        lease?.release();
        throw shuttingDown();
      }
      if (input.principal.userId !== null && turns.isOwnerClosed(input.principal.userId)) {
        lease?.release();
        throw new AppError('UNAUTHORIZED', 'This account is being deleted');
      }
      // Admitted: a conversation the browser began from its IP moves to its cookie now.
      if (found && held && input.principal.anonymousId) ({ conversation, lease } = await this.#adopt(found, owners[0]!, lease));
    } catch (err) {
      held?.release();
      throw err;
    }
    const turnLease = lease;
    const turnConversation = conversation;

    return {
      conversation: turnConversation,
      conversationCreated: created,
      model,
      rateLimit,
      continueOnDisconnect: !input.stateless && this.deps.options.continueOnDisconnect === true,
      run: held
        ? async (sink, signal) => {
            try {
              await this.#run(input, turnConversation, created, model, sink, signal, turnLease);
            } finally {
              held.release();
            }
          }
        : (sink, signal) => this.#run(input, turnConversation, created, model, sink, signal, turnLease),
    };
  }

  /**
   * Marks a conversation known by an IP as in the hands of a request, from its lookup to its
   * turn's end: #adopt moves only one nobody else holds. `release()` once.
   */
  #hold(key: string): { release(): void } {
    let entry = this.#held.get(key);
    if (!entry) this.#held.set(key, (entry = { count: 0 }));
    entry.count++;
    let released = false;
    const held = entry;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (--held.count === 0 && held.moving === undefined && this.#held.get(key) === held) this.#held.delete(key);
      },
    };
  }

  /** Whether the conversation under this key is being moved, or was moved lately (a lookup that began before may have read it). */
  #wasMoved(key: string): boolean {
    if (this.#held.get(key)?.moving) return true;
    const at = this.#movedAway.get(key);
    return at !== undefined && performance.now() - at < MOVED_REMEMBERED_MS;
  }

  /**
   * A conversation an anonymous browser started from its IP, before it had its cookie (its first
   * turn), moves to the cookie with the next turn it makes there, once that turn is admitted: what
   * it says from then on is not reachable from its IP (everyone behind the same NAT). Only when no
   * other request has it in hand (a cookie-less client on the same address sending to the same
   * id, another browser): it then stays where it is this time. With several nodes this turn holds
   * the conversation's slot (no other node runs a turn in it) and takes the new key's too; a
   * node that had read it before the move finds it gone once it has the slot (BUSY, send again).
   * A move that fails (logged) leaves it where it is.
   */
  async #adopt(found: Conversation, cookie: string, lease: TurnLease | undefined): Promise<{ conversation: Conversation; lease: TurnLease | undefined }> {
    const unchanged = { conversation: found, lease };
    const { store, turns, coordinator, logger } = this.deps;
    const entry = this.#held.get(found.key);
    if (!entry || entry.count > 1 || entry.moving || turns.isRunning(found.key)) return unchanged;
    const newKey = conversationKey(cookie, found.id);
    const acquired = coordinator ? await coordinator.acquire(newKey).catch(() => undefined) : undefined;
    if (coordinator && !acquired) return unchanged;
    // A stop sent for the conversation under its new key before the turn starts is kept, as for any slot (#claim).
    const next = acquired && this.#registered(newKey, acquired);
    let moved: Conversation | undefined;
    const move = store.moveConversation(found.ownerId, found.id, cookie).then(
      (c) => void (moved = c),
      (err: unknown) => logger.warn({ err, conversationId: found.id }, 'could not move an anonymous conversation from its IP to its cookie'),
    );
    entry.moving = move;
    try {
      await move;
    } finally {
      entry.moving = undefined;
    }
    if (!moved) {
      next?.release();
      return unchanged;
    }
    this.#movedAway.set(found.key, performance.now());
    lease?.release();
    return { conversation: moved, lease: next };
  }

  /** Several nodes: the conversation's running-turn slot, or BUSY. One node keeps no lock (turns of a conversation may overlap, as before). */
  async #claim(conversationKey: string): Promise<TurnLease | undefined> {
    const { coordinator, turns } = this.deps;
    if (!coordinator) return undefined;
    const busy = () => new AppError('BUSY', 'A reply is already streaming in this conversation; stop it or wait for its end');
    if (turns.isRunning(conversationKey)) throw busy();
    const lease = await coordinator.acquire(conversationKey);
    if (!lease) throw busy();
    return this.#registered(conversationKey, lease);
  }

  /** A slot this node holds for a turn it has not started yet: a stop for that conversation meanwhile stops the turn as it starts. */
  #registered(conversationKey: string, lease: TurnLease): TurnLease {
    const unlease = this.deps.turns.leased(conversationKey);
    return {
      turnId: lease.turnId,
      release: () => {
        unlease();
        lease.release();
      },
    };
  }

  async #run(
    input: ChatTurnInput,
    conversation: Conversation,
    conversationCreated: boolean,
    model: LanguageModel,
    client: TurnSink,
    outer: AbortController | AbortSignal | undefined,
    lease: TurnLease | undefined,
  ): Promise<void> {
    // Registered until the sink has the final event: shutdown and deletion wait for that.
    const turn = this.deps.turns.track(outer, conversation);
    const streams = input.stateless ? undefined : this.deps.streams;
    const sink = streams ? recorded(client, streams.open(conversation.key, lease?.turnId)) : client;
    try {
      const modelName = model.provider === 'local' ? model.modelId : `${model.provider}:${model.modelId}`;
      const result = await this.#stream(input, conversation, conversationCreated, model, modelName, sink, turn);
      const conversationId = conversation.id;
      if (result.ending.error) {
        sink.error({ type: 'error', conversationId, messageId: result.messageId, content: result.text, error: result.ending.error });
      } else {
        const { finishReason, usage, filtered } = result.ending;
        sink.end({
          type: 'end',
          conversationId,
          messageId: result.messageId ?? '',
          content: result.text,
          finishReason,
          usage,
          model: modelName,
          ...(filtered ? { filtered } : {}),
        });
      }
    } catch (err) {
      // A sink that throws is a bug in an adapter: log it, never let it escape into the socket layer.
      this.deps.logger.error({ err }, 'a protocol adapter failed while handling a turn event');
    } finally {
      turn.finish();
      lease?.release();
    }
  }

  /** Streams the reply into the sink; returns (after storing the reply, however the stream ended) how it ended. */
  async #stream(
    input: ChatTurnInput,
    conversation: Conversation,
    conversationCreated: boolean,
    model: LanguageModel,
    modelName: string,
    sink: TurnSink,
    turn: { signal: AbortSignal; abort(reason: unknown): void },
  ): Promise<{ ending: Ending; text: string; messageId: string | undefined }> {
    const { store, options } = this.deps;
    const { signal } = turn;
    const logger = withBindings(this.deps.logger, { conversationId: conversation.id, model: model.modelId, provider: model.provider });
    // A stream timeout aborts the turn with a PROVIDER_ERROR as the reason (a turn abort is a TurnAbort).
    const watchdog = new StreamWatchdog(options.firstByteTimeoutMs, options.idleTimeoutMs, (err) => turn.abort(err));
    /** The reply, joined once it ends: appended with `+=`, it would hold a string object per token until then (copied by every young-generation GC while it streams). */
    const pieces: string[] = [];
    let textLength = 0;
    let text = '';
    // No token is this long (o200k's longest are a few dozen characters): far past it, the
    // provider is not keeping to the reply's limit.
    const maxReplyChars = Math.min(input.maxTokens ?? options.maxOutputTokens, options.maxOutputTokens) * MAX_CHARS_PER_TOKEN;
    let ending: Ending | undefined;
    let messageId: string | undefined;
    const startedAt = performance.now();
    const observed = (this.deps.metrics ?? noopMetrics).turnStarted(input.protocol ?? 'other', model.provider, model.modelId);
    const memory = this.deps.memory;
    const userId = input.principal.userId;
    let remember = false;
    /** The user message's write; the reply is stored only after it, and only if it landed. */
    let userWrite: Promise<StoredMessage> | undefined;
    let stream: ModelStream | undefined;
    let streamEnded = false;
    /** Tells the client its message is stored (once): before any text, or before the end of a turn stopped earlier. */
    let announce = () => {};
    try {
      // A client that left before its turn began (while it waited for the start gate or its
      // admission) leaves nothing behind: no message stored, no model asked. A stop is different:
      // its client saw the message sent, so the message and an empty stopped reply are stored.
      if (signal.aborted && asTurnAbort(signal.reason).kind === 'disconnect') signal.throwIfAborted();
      // Only signed-in users have long-term memory; an anonymous caller's context is its own conversation.
      // (A flag, not the object: its history is taken once the model is asked, see #ask.)
      const stateless = input.stateless !== undefined;
      remember = !stateless && memory !== undefined && userId !== null && (await memory.isEnabledFor(userId).catch(() => false));
      const userMessage: StoredMessage = {
        id: timeOrderedId(),
        conversationKey: conversation.key,
        role: 'user',
        content: input.message,
        createdAt: monotonicNow(),
      };
      // The model is asked while the message is being stored: the request does not wait for the
      // commit, but no reply text reaches the client (or the store) before the message is durable.
      // Its tokens are counted by the store as it writes it (SQLite: in the group commit, once
      // the model request has been written).
      userWrite = stateless
        ? Promise.resolve(userMessage)
        : store.appendMessage({
            ...userMessage,
            remember,
            ...(conversationCreated ? { conversation: { ownerId: conversation.ownerId, id: conversation.id, title: conversation.title } } : {}),
          });
      userWrite.catch(() => {}); // awaited below; a failure must not surface as unhandled first
      announce = () => {
        announce = () => {};
        sink.start({ type: 'start', conversationId: conversation.id, conversationCreated, userMessageId: userMessage.id, content: userMessage.content, model: modelName, storedAt: monotonicNow() });
      };

      let waitingForClient = false;
      let userStored = false;
      /** The reply reached maxReplyChars: what comes after is dropped. */
      let capped = false;
      /** Text that came before the user message was durable: handed over as one delta once it is. */
      let early = '';
      let firstText = true;
      const deliver = (delta: string) => {
        if (firstText) {
          firstText = false;
          observed.firstToken();
        }
        if (sink.delta(delta) || waitingForClient) return;
        // The client's buffer is full: stop pulling from the model until it reads.
        waitingForClient = true;
        stream!.pause();
        watchdog.hold();
        void this.#waitForClient(sink, turn).then((ok) => {
          waitingForClient = false;
          watchdog.touch();
          if (ok) stream!.resume();
        });
      };
      stream = await this.#ask(input, conversation, conversationCreated, model, userMessage, remember, signal, watchdog, (received) => {
        watchdog.touch();
        if (capped) return;
        let delta = received;
        if (textLength + delta.length > maxReplyChars) {
          // A provider that ignores max_tokens would grow the reply (and the memory it holds,
          // and the row it is stored in) without end: it is cut at maxReplyChars (not inside a
          // surrogate pair) and ends as a reply at its limit, once that text reached the client.
          capped = true;
          let end = maxReplyChars - textLength;
          if (end > 0 && isHighSurrogate(delta.charCodeAt(end - 1))) end--;
          delta = delta.slice(0, end);
        }
        if (delta) {
          pieces.push(delta);
          textLength += delta.length;
        }
        if (!userStored) early += delta;
        else {
          // A sink that throws is an adapter bug. Caught here, where every provider's text comes
          // through (a socket handler, a timer, a promise reaction): it ends this turn with
          // INTERNAL, never the process, and the text so far is stored as usual.
          try {
            if (delta) deliver(delta);
          } catch (err) {
            if (!signal.aborted) turn.abort(toAppError(err));
          }
        }
        if (capped && userStored && !signal.aborted) turn.abort(new TurnAbort('too-long'));
      });
      const done = stream.done.finally(() => (streamEnded = true));
      done.catch(() => {}); // awaited below, after the user message

      await userWrite;
      userStored = true;
      announce();
      if (early) deliver(early);
      early = '';
      if (capped && !streamEnded && !signal.aborted) turn.abort(new TurnAbort('too-long'));
      const finish = await done;
      ending = {
        finishReason: capped ? 'length' : storedFinish(finish.finishReason),
        usage: finish.usage,
        ...(finish.finishReason === 'content-filter' && !capped ? { filtered: true } : {}),
      };
    } catch (err) {
      if (signal.aborted && !(signal.reason instanceof AppError)) {
        const abort = asTurnAbort(signal.reason);
        ending = { finishReason: abort.finishReason, usage: undefined, error: abort.clientError };
      } else {
        const error = signal.reason instanceof AppError ? signal.reason : toAppError(err);
        if (error.code === 'INTERNAL' || error.code === 'PROVIDER_ERROR') logger.error({ err }, 'chat turn failed');
        ending = { finishReason: 'error', usage: undefined, error };
      }
    } finally {
      watchdog.stop();
      // The model call outlives a failed user-message write: end it (a finished one is left alone).
      if (stream && !streamEnded && !signal.aborted) turn.abort(new Error('The user message could not be stored'));
      // Runs on every ending: normal, error, abort (stop, disconnect, shutdown, deletion, slow client).
      ending ??= { finishReason: signal.aborted ? asTurnAbort(signal.reason).finishReason : 'aborted', usage: undefined };
      // Only a complete reply becomes a memory: a stopped or failed one says less than it seems to.
      const rememberReply = remember && (ending.finishReason === 'stop' || ending.finishReason === 'length');
      // After the user message, and only if it was stored: a reply never stands without its question.
      const userStored = userWrite ? await userWrite.then(() => true, () => false) : false;
      // What the model said to an unstored question was never shown.
      text = userStored ? pieces.join('') : '';
      pieces.length = 0;
      if (userStored) announce();
      messageId = !userStored
        ? undefined
        : input.stateless
          ? timeOrderedId()
          : await this.#persistReply(conversation.key, text, modelName, ending, rememberReply, logger);
      if (remember) memory!.wake();
      observed.end(ending);
      logger.info(
        { finishReason: ending.finishReason, outputChars: text.length, usage: ending.usage, ms: Math.round(performance.now() - startedAt) },
        'chat turn ended',
      );
    }
    return { ending, text, messageId };
  }

  /**
   * Builds the model's context (history, recalled memories) and asks the model. Apart from
   * `#stream`, which stays suspended for the whole reply and so keeps every variable of its own:
   * the conversation loaded and sent here is not kept while the reply streams.
   */
  async #ask(
    input: ChatTurnInput,
    conversation: Conversation,
    conversationCreated: boolean,
    model: LanguageModel,
    userMessage: StoredMessage,
    remember: boolean,
    signal: AbortSignal,
    watchdog: StreamWatchdog,
    onText: (delta: string) => void,
  ): Promise<ModelStream> {
    const { store, options, memory } = this.deps;
    const { stateless } = input;
    // Taken, not kept: `input` lives as long as the turn does.
    const given = stateless?.history ?? [];
    if (stateless) input.stateless = { history: [] };
    // Recall runs while the user message is stored: it costs the first token only what it takes beyond that write.
    const recall = remember ? memory!.recall(input.principal.userId!, input.message) : undefined;
    // A reply the client did not size takes at most half the model's context: reserving a whole
    // MAX_OUTPUT_TOKENS out of a context no larger (a 4,096-token local model) would leave no
    // room for the conversation, and every turn would go out without its history.
    const maxTokens =
      input.maxTokens !== undefined
        ? Math.min(input.maxTokens, options.maxOutputTokens)
        : Math.min(options.maxOutputTokens, Math.max(1, Math.floor(model.contextTokens / 2)));
    // A conversation created by this turn holds just the new message.
    const history: ContextMessage[] = stateless
      ? [...given, userMessage]
      : conversationCreated
        ? [userMessage]
        : withNewMessage(await store.recentMessages(conversation.key, options.historyLimit), userMessage, options.historyLimit);
    const messages = buildContext({
      systemPrompt: options.systemPrompt,
      recalled: recall ? recalledOutside(await recall, history, input.message, memory!.options.topK) : [],
      history,
      contextTokens: model.contextTokens,
      reserveTokens: maxTokens,
    });
    signal.throwIfAborted();
    watchdog.start();
    return model.stream({ messages, maxTokens, temperature: input.temperature, stop: input.stop, sampling: input.sampling, signal }, onText);
  }

  /** Waits for a full client buffer to drain; after SLOW_CLIENT_TIMEOUT_MS ends the turn instead. Resolves false when the turn ended. */
  async #waitForClient(sink: TurnSink, turn: { signal: AbortSignal; abort(reason: unknown): void }): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.deps.options.slowClientTimeoutMs)));
    let onAbort: (() => void) | undefined;
    const ended = new Promise<false>((resolve) => {
      if (turn.signal.aborted) resolve(false);
      else turn.signal.addEventListener('abort', (onAbort = () => resolve(false)), { once: true });
    });
    try {
      const drained = await Promise.race([sink.drained().then(() => true), timedOut, ended]);
      if (!drained && !turn.signal.aborted) turn.abort(new TurnAbort('slow-client'));
      return drained;
    } finally {
      clearTimeout(timer);
      // One wait per time the client's buffer fills: a long reply to a slow reader has hundreds.
      if (onAbort) turn.signal.removeEventListener('abort', onAbort);
    }
  }

  async #persistReply(conversationKey: string, content: string, model: string, ending: Ending, remember: boolean, logger: Logger): Promise<string | undefined> {
    // An error before any text leaves nothing worth storing; every other ending is kept.
    if (ending.finishReason === 'error' && content === '') return undefined;
    try {
      const stored = await this.deps.store.appendMessage({
        conversationKey,
        role: 'assistant',
        content,
        model,
        finishReason: ending.finishReason,
        usage: ending.usage,
        // The provider's own count is exact for its tokenizer; count only when it sent none. What a
        // reasoning model spent thinking is billed but is not in the reply the next turns send.
        tokens: ending.usage ? ending.usage.outputTokens - (ending.usage.reasoningTokens ?? 0) : countTokensBounded(content),
        remember,
      });
      return stored.id;
    } catch (err) {
      logger.error({ err }, 'could not store the assistant reply');
      return undefined;
    }
  }
}

/**
 * Ends a model call that goes quiet: nothing within `firstByteMs` of the request, or nothing
 * for `idleMs` between parts (the SDKs' own timeouts stop counting once headers arrive).
 * `touch()` is a clock read per part; the one timer re-arms itself only when it fires.
 */
class StreamWatchdog {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastPartAt = 0;
  /** While the client is being waited for, the model is paused on purpose: not idle. */
  #held = false;

  constructor(
    private readonly firstByteMs: number,
    private readonly idleMs: number,
    private readonly onTimeout: (error: AppError) => void,
  ) {}

  start(): void {
    this.#timer = setTimeout(() => this.#check(), this.firstByteMs);
  }

  touch(): void {
    this.#lastPartAt = performance.now();
    this.#held = false;
  }

  hold(): void {
    this.#held = true;
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    if (this.#lastPartAt === 0) {
      this.onTimeout(new AppError('PROVIDER_ERROR', `The model provider did not start answering within ${seconds(this.firstByteMs)}`));
      return;
    }
    const quiet = this.#held ? 0 : performance.now() - this.#lastPartAt;
    if (quiet >= this.idleMs) {
      this.onTimeout(new AppError('PROVIDER_ERROR', `The model provider sent nothing for ${seconds(this.idleMs)}; the reply was cut`));
      return;
    }
    this.#timer = setTimeout(() => this.#check(), this.idleMs - quiet);
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * The best memories worth a place in the prompt, at most `topK`: not already in the
 * short-term window, not the same words as the new message (asking the same question twice
 * would recall the question), and no text twice.
 */
function recalledOutside(matches: readonly MemoryMatch[], window: readonly { id?: string }[], message: string, topK: number): string[] {
  const inWindow = new Set(window.map((m) => m.id));
  const seen = new Set([normalised(message)]);
  const out: string[] = [];
  for (const m of matches) {
    if (out.length === topK) break;
    const key = normalised(m.text);
    if (inWindow.has(m.messageId) || seen.has(key)) continue;
    seen.add(key);
    out.push(m.text);
  }
  return out;
}

function normalised(text: string): string {
  return text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
}

/** The last `limit` messages ending with the new one (a store read while it was being written may or may not hold it). */
function withNewMessage(prior: readonly StoredMessage[], message: StoredMessage, limit: number): StoredMessage[] {
  const others = prior.filter((m) => m.id !== message.id);
  return [...others.slice(Math.max(0, others.length - (limit - 1))), message];
}

function storedFinish(reason: ModelFinishReason): FinishReason {
  return reason === 'length' ? 'length' : 'stop';
}

function newConversation(ownerId: string, id: string, title: string): Conversation {
  const now = Date.now();
  return { key: conversationKey(ownerId, id), id, ownerId, title, createdAt: now, updatedAt: now };
}

function titleOf(message: string): string {
  const flat = cleanLabel(message);
  return flat.length <= TITLE_CHARS ? flat : `${flat.slice(0, TITLE_CHARS - 1)}…`;
}

/** A sink that records each event before handing it on, with its resumable id. */
function recorded(sink: TurnSink, log: TurnLog): TurnSink {
  const { turnId } = log;
  return {
    start: (e) => sink.start(e, eventId(turnId, log.append(e))),
    delta: (text) => sink.delta(text, eventId(turnId, log.append({ type: 'delta', text }))),
    drained: () => sink.drained(),
    end: (e) => sink.end(e, eventId(turnId, log.append(e))),
    error: (e) => sink.error(e, eventId(turnId, log.append(e))),
  };
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
