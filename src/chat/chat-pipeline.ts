import { AppError, toAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { LanguageModel, ModelFinishReason, TokenUsage } from '../models/language-model.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { chatLimit, type RateLimitDecision, type RateLimitPolicy, type RateLimiter } from '../ratelimit/rate-limiter.js';
import type { Conversation, ConversationStore, FinishReason } from '../stores/conversation-store.js';
import { abortable } from './abortable.js';
import { buildContext } from './context-builder.js';
import type { Principal } from './principal.js';
import { abortKind, abortedByServer } from './turn-abort.js';
import type { TurnTracker } from './turn-tracker.js';

export interface ChatTurnInput {
  principal: Principal;
  message: string;
  conversationId?: string | undefined;
  model?: string | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
}

export type ChatTurnEvent =
  | {
      type: 'start';
      conversationId: string;
      conversationCreated: boolean;
      userMessageId: string;
      content: string;
      model: string;
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
    }
  | { type: 'error'; conversationId: string; messageId: string | undefined; content: string; error: AppError };

export interface ChatPipelineOptions {
  systemPrompt: string;
  historyLimit: number;
  maxOutputTokens: number;
}

export interface ChatPipelineDeps {
  store: ConversationStore;
  models: ModelRegistry;
  limiter: RateLimiter;
  rateLimits: RateLimitPolicy;
  turns: TurnTracker;
  logger: Logger;
  options: ChatPipelineOptions;
}

/** A turn that passed every admission check; iterate `run()` to stream it. */
export interface PreparedTurn {
  readonly conversation: Conversation;
  readonly conversationCreated: boolean;
  readonly model: LanguageModel;
  readonly rateLimit: RateLimitDecision;
  run(signal?: AbortSignal): AsyncGenerator<ChatTurnEvent, void, undefined>;
}

const TITLE_CHARS = 80;

/**
 * The one chat pipeline every protocol shares: admit (model, ownership, rate limit),
 * persist the user message, build context, stream the model, persist the reply however
 * the stream ends.
 */
export class ChatPipeline {
  constructor(private readonly deps: ChatPipelineDeps) {}

  /** Throws AppError (INVALID_MODEL, NOT_FOUND, RATE_LIMIT, ...) before anything is streamed or stored. */
  async prepare(input: ChatTurnInput): Promise<PreparedTurn> {
    const { store, limiter, models, turns } = this.deps;
    if (turns.closing) throw new AppError('INTERNAL', 'The server is shutting down; retry in a moment');
    const model = models.resolve(input.model);
    const ownerId = input.principal.userId;

    const existing = input.conversationId ? await store.getConversation(input.conversationId) : undefined;
    if (existing && existing.ownerId !== ownerId) throw notFound();
    const { key, limit } = chatLimit(input.principal, this.deps.rateLimits);
    const rateLimit = await limiter.consume(key, limit);
    if (!rateLimit.allowed) {
      const retryAfterSeconds = Math.max(1, Math.ceil((rateLimit.reset - Date.now()) / 1000));
      throw new AppError('RATE_LIMIT', `Too many chat requests; retry in ${retryAfterSeconds} s`, {
        details: { rateLimit, retryAfterSeconds },
      });
    }

    // Only a new conversation needs a write here; a known one was read and checked above.
    const { conversation, created } = existing
      ? { conversation: existing, created: false }
      : await store.ensureConversation({ id: input.conversationId ?? crypto.randomUUID(), ownerId, title: titleOf(input.message) });
    // Another caller may have created the same id between the read and the insert.
    if (conversation.ownerId !== ownerId) throw notFound();

    return {
      conversation,
      conversationCreated: created,
      model,
      rateLimit,
      run: (signal) => this.#run(input, conversation, created, model, signal),
    };
  }

  async *#run(
    input: ChatTurnInput,
    conversation: Conversation,
    conversationCreated: boolean,
    model: LanguageModel,
    outer: AbortSignal | undefined,
  ): AsyncGenerator<ChatTurnEvent, void, undefined> {
    const { store, turns, options } = this.deps;
    const logger = this.deps.logger.child({ conversationId: conversation.id, model: model.modelId, provider: model.provider });
    const { signal, finish } = turns.track(outer);
    const conversationId = conversation.id;
    const modelName = model.provider === 'local' ? model.modelId : `${model.provider}:${model.modelId}`;
    let text = '';
    let ended: { finishReason: FinishReason; usage: TokenUsage | undefined; error?: AppError } | undefined;
    let assistantId: string | undefined;
    const startedAt = performance.now();

    try {
      const userMessage = await store.appendMessage({ conversationId, role: 'user', content: input.message });
      yield {
        type: 'start',
        conversationId,
        conversationCreated,
        userMessageId: userMessage.id,
        content: userMessage.content,
        model: modelName,
      };

      const maxTokens = Math.min(input.maxTokens ?? options.maxOutputTokens, options.maxOutputTokens);
      // A conversation created by this turn holds just the message stored above.
      const history = conversationCreated ? [userMessage] : await store.recentMessages(conversationId, options.historyLimit);
      const messages = buildContext({
        systemPrompt: options.systemPrompt,
        recalled: [],
        history,
        contextTokens: model.contextTokens,
        reserveTokens: maxTokens,
      });

      for await (const part of abortable(model.stream({ messages, maxTokens, temperature: input.temperature, signal }), signal)) {
        if (part.type === 'text-delta') {
          text += part.text;
          yield { type: 'delta', text: part.text };
        } else {
          ended = { finishReason: storedFinish(part.finishReason), usage: part.usage };
        }
      }
      if (!ended) throw new AppError('PROVIDER_ERROR', 'The model stream ended without a finish');
    } catch (err) {
      if (abortedByServer(signal.reason)) {
        // The client is still there: tell it, on whatever protocol, why its reply stopped.
        ended = { finishReason: 'aborted', usage: undefined, error: new AppError('INTERNAL', 'The server is shutting down; the partial reply was saved') };
      } else if (signal.aborted) ended = { finishReason: abortKind(signal.reason), usage: undefined };
      else {
        const error = toAppError(err);
        if (error.code === 'INTERNAL' || error.code === 'PROVIDER_ERROR') logger.error({ err }, 'chat turn failed');
        ended = { finishReason: 'error', usage: undefined, error };
      }
    } finally {
      // Runs on normal end, on error and when the consumer stops iterating (a write to a gone client failed).
      ended ??= { finishReason: abortKind(signal.aborted ? signal.reason : undefined), usage: undefined };
      assistantId = await this.#persistReply(conversationId, text, modelName, ended, logger);
      finish();
      logger.info(
        { finishReason: ended.finishReason, outputChars: text.length, usage: ended.usage, ms: Math.round(performance.now() - startedAt) },
        'chat turn ended',
      );
    }

    if (ended.error) {
      yield { type: 'error', conversationId, messageId: assistantId, content: text, error: ended.error };
      return;
    }
    yield { type: 'end', conversationId, messageId: assistantId ?? '', content: text, finishReason: ended.finishReason, usage: ended.usage, model: modelName };
  }

  async #persistReply(
    conversationId: string,
    content: string,
    model: string,
    ended: { finishReason: FinishReason; usage: TokenUsage | undefined },
    logger: Logger,
  ): Promise<string | undefined> {
    // An error before any text leaves nothing worth storing; every other ending is kept.
    if (ended.finishReason === 'error' && content === '') return undefined;
    try {
      const stored = await this.deps.store.appendMessage({
        conversationId,
        role: 'assistant',
        content,
        model,
        finishReason: ended.finishReason,
        usage: ended.usage,
      });
      return stored.id;
    } catch (err) {
      logger.error({ err }, 'could not store the assistant reply');
      return undefined;
    }
  }
}

function notFound(): AppError {
  return new AppError('NOT_FOUND', 'Conversation not found');
}

function storedFinish(reason: ModelFinishReason): FinishReason {
  return reason === 'length' ? 'length' : 'stop';
}

function titleOf(message: string): string {
  const flat = message.replace(/\s+/g, ' ').trim();
  return flat.length <= TITLE_CHARS ? flat : `${flat.slice(0, TITLE_CHARS - 1)}…`;
}
