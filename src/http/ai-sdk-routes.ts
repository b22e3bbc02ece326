import { Hono } from 'hono';
import { z } from 'zod';
import { conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { ownersOf, type Principal } from '../chat/principal.js';
import type { Logger } from '../logger.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { findOwnedConversation, type Conversation, type FinishReason, type StoredMessage } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { inArrivalOrder } from './arrival-order.js';
import { authenticate } from './authenticate.js';
import { readJsonBody, setRateLimitHeaders } from './http-helpers.js';
import { respondWithReplay, respondWithTurn, sse, SSE_HEADERS, type StreamFrames } from './turn-stream.js';
import { findResumable } from '../chat/resume-target.js';

/** The header that tells the AI SDK's transports this is a UI message stream. */
const UI_STREAM_HEADERS = { ...SSE_HEADERS, 'x-vercel-ai-ui-message-stream': 'v1' };

/** How many of a conversation's latest messages a client gets back to show it again. */
const HISTORY_LIMIT = 200;

/** A UI message as `DefaultChatTransport` sends it: its text parts are read, other parts ignored. */
function uiMessageSchema() {
  const textPart = z.object({ type: z.literal('text'), text: z.string() }).loose();
  return z
    .object({
      id: z.string().max(256).optional(),
      role: z.enum(['system', 'user', 'assistant']),
      parts: z.array(z.union([textPart, z.object({ type: z.string() }).loose()])).max(1_000),
    })
    .loose();
}

/** Messages in one `/api/chat` request at most (the client's whole chat: only the last one is read). */
const MAX_UI_MESSAGES = 100_000;

/**
 * What `DefaultChatTransport` sends (`useChat`): the chat id, its UI messages (only the last one
 * is new), the trigger. `lastOnly`: the earlier messages are only counted, not checked one by one
 * (the server keeps the conversation itself and never reads them): a long chat's request costs
 * its parse, not a validation of every message it ever had. The one before the last is kept
 * when it is well formed (a regenerate or an edit is placed by it), so `messages` is then the
 * last one or two.
 */
export function aiChatSchema(options: { lastOnly?: boolean } = {}) {
  const message = uiMessageSchema();
  return z
    .object({
      id: conversationIdSchema,
      trigger: z.enum(['submit-message', 'regenerate-message']).optional(),
      messageId: z.string().max(256).optional(),
      messages: options.lastOnly
        ? z
            .array(z.unknown())
            .min(1)
            .max(MAX_UI_MESSAGES)
            .transform((all, ctx) => {
              const last = message.safeParse(all.at(-1));
              if (last.success) {
                const previous = all.length > 1 ? message.safeParse(all.at(-2)) : undefined;
                return previous?.success ? [previous.data, last.data] : [last.data];
              }
              for (const issue of last.error.issues) ctx.addIssue({ ...issue, path: [all.length - 1, ...issue.path] } as Parameters<typeof ctx.addIssue>[0]);
              return z.NEVER;
            })
        : z.array(message).min(1).max(MAX_UI_MESSAGES),
      model: z.string().min(1).max(128).optional(),
      temperature: z.number().min(0).max(2).optional(),
      maxTokens: z.number().int().min(1).max(1_000_000).optional(),
    })
    .loose();
}

/**
 * `/api/chat`: what the AI SDK's `useChat` (`DefaultChatTransport`) sends and reads, over
 * the one pipeline. The chat `id` is the conversation: owned, stored, continued from the store
 * (only the last user message of the request is new), remembered for signed-in users.
 */
export function aiSdkRoutes(services: Services): Hono<AppEnv> {
  const { config, store } = services;
  const schema = aiChatSchema({ lastOnly: true });
  const app = new Hono<AppEnv>();
  const auth = authenticate(services);
  const bodyLimits = { maxBodyBytes: config.chat.maxHistoryBodyBytes, requestTimeoutMs: config.chat.requestTimeoutMs };

  app.post('/', inArrivalOrder(services), auth, async (c) => {
    const body = await readJsonBody(c, bodyLimits);
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const req = parsed.data;
    const last = req.messages.at(-1)!;
    if (last.role !== 'user') throw new AppError('BAD_REQUEST', 'The last message must be a user message (the last message is the one answered)');
    const message = textOfUi(last);
    if (message.trim() === '') throw new AppError('BAD_REQUEST', 'The last message has no text');
    if (message.length > config.chat.maxMessageChars) throw new AppError('BAD_REQUEST', `The last message must be at most ${config.chat.maxMessageChars} characters`);
    const turn = await services.pipeline.prepare({
      principal: c.get('principal'),
      message,
      conversationId: req.id,
      model: req.model,
      temperature: req.temperature,
      maxTokens: req.maxTokens,
      protocol: 'ai-sdk',
      arrivedInPass: c.get('arrivedInPass'),
    });
    setRateLimitHeaders(c, turn.rateLimit);
    // Once the turn is admitted (a refused one changes nothing), before it reads the history.
    if (!turn.conversationCreated && (req.trigger === 'regenerate-message' || req.messageId !== undefined)) {
      const sent = (body as { messages: unknown[] }).messages.length;
      const previous = req.messages.length > 1 ? req.messages.at(-2)! : undefined;
      const before = sent === 1 ? 'none' : previous ? { role: previous.role, text: textOfUi(previous) } : 'unknown';
      await rewind(services, c.get('principal'), turn.conversation, { messageId: req.messageId, before, text: message }, c.get('logger'));
    }
    return respondWithTurn(c, turn, uiMessageFrames(turn.conversation.id), UI_STREAM_HEADERS);
  });

  /** `useChat({ resume: true })`: the running reply from its start, then live; 204 when none runs (a finished one is in /messages). */
  app.get('/:id/stream', auth, async (c) => {
    const id = conversationIdSchema.safeParse(c.req.param('id'));
    const target = id.success ? await findResumable(services.streams, services.store, c.get('principal'), id.data) : undefined;
    if (!target || target.ended) return c.body(null, 204);
    return respondWithReplay(c, services.streams!, target, uiMessageFrames(id.data!), UI_STREAM_HEADERS);
  });

  /**
   * The conversation as UI messages (`useChat({ messages })` after a reload): its latest
   * HISTORY_LIMIT, oldest first, so a long chat reopens where it left off; NOT_FOUND for an id
   * the caller does not own.
   */
  app.get('/:id/messages', auth, async (c) => {
    const id = conversationIdSchema.safeParse(c.req.param('id'));
    const conversation = id.success ? await findOwnedConversation(store, ownersOf(c.get('principal')), id.data) : undefined;
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    const messages = await store.recentMessages(conversation.key, HISTORY_LIMIT);
    return c.json(messages.map(uiMessage));
  });
  return app;
}

const textOfUi = (m: { parts: readonly { type: string; text?: unknown }[] }) => m.parts.map((p) => (p.type === 'text' && typeof p.text === 'string' ? p.text : '')).join('');

/** Stored messages looked at to place a regenerate or an edit (it is placed near the end). */
const REWIND_WINDOW = 400;

/** Where a regenerate or an edit goes: the message it names, the one the client has before it, the text it sends. */
interface RewindPlace {
  messageId: string | undefined;
  before: { role: string; text: string } | 'none' | 'unknown';
  text: string;
}

/**
 * `regenerate()` and editing a message (`trigger: "regenerate-message"`, or a submit naming the
 * `messageId` it replaces): the client dropped the reply it wants again (and, for an edit,
 * everything after the edited message). The stored conversation is cut back the same way before
 * the turn, so it keeps one answer per question, the model does not see the answer it is asked
 * to replace, and a reload shows what the page showed. The cut is placed by the stored message
 * the `messageId` names (a page loaded from /messages has the stored ids); else by the message
 * the client has before the one it sends, the latest stored one with its role and text. Nothing
 * is cut when the place is not found (a client that sends only its last message gives none), or
 * while a reply is streaming in the conversation. Memories of the messages cut are forgotten with them.
 */
async function rewind(services: Services, principal: Principal, conversation: Conversation, place: RewindPlace, logger: Logger): Promise<void> {
  const { store, turns, memory } = services;
  if (turns.isRunning(conversation.key)) return;
  try {
    const stored = await store.recentMessages(conversation.key, REWIND_WINDOW);
    const keep = cutPoint(stored, place);
    if (keep === undefined || keep >= stored.length) return;
    const ids = stored.slice(keep).map((m) => m.id);
    if (memory && principal.userId !== null) {
      for (const id of ids) await memory.forget(conversation.ownerId, id).catch((err: unknown) => logger.warn({ err, messageId: id }, 'could not forget a replaced message'));
    }
    const deleted = await store.deleteMessages(conversation.key, ids);
    logger.info({ conversationId: conversation.id, deleted: deleted.length }, 'messages replaced by a regenerate or an edit');
  } catch (err) {
    // The turn goes on as a new one after them, as before this existed.
    logger.warn({ err, conversationId: conversation.id }, 'could not replace messages for a regenerate or an edit');
  }
}

/** How many stored messages stay (see rewind); undefined: nothing is cut. */
function cutPoint(stored: readonly StoredMessage[], { messageId, before, text }: RewindPlace): number | undefined {
  const named = messageId === undefined ? -1 : stored.findIndex((m) => m.id === messageId);
  if (named >= 0) {
    // A reply named (regenerate): its question goes too, as the turn asks it again.
    if (stored[named]!.role === 'assistant') return named > 0 && stored[named - 1]!.role === 'user' && stored[named - 1]!.content === text ? named - 1 : named;
    return named;
  }
  // Nothing before the message sent (a client that sends only its last one): a regenerate of the
  // last reply looks exactly like the retry of a message that was refused (the AI SDK's retry is
  // a regenerate too), whose earlier exchange with the same text the page still shows. Nothing
  // is cut: a duplicate answer is better than a lost one.
  if (before === 'unknown' || before === 'none') return undefined;
  for (let i = stored.length - 1; i >= 0; i--) if (stored[i]!.role === before.role && stored[i]!.content === before.text) return i + 1;
  return undefined;
}

function uiMessage(m: StoredMessage) {
  return {
    id: m.id,
    role: m.role,
    parts: [{ type: 'text', text: m.content, state: 'done' }],
    metadata: {
      createdAt: new Date(m.createdAt).toISOString(),
      ...(m.model ? { model: m.model } : {}),
      ...(m.finishReason ? { finishReason: m.finishReason } : {}),
      ...(m.usage ? { usage: m.usage } : {}),
    },
  };
}

const FINISH: Record<FinishReason, string> = { stop: 'stop', length: 'length', stopped: 'stop', aborted: 'other', error: 'error' };

/**
 * The UI message stream protocol v1: `start`, `start-step`, `text-start`, `text-delta`s,
 * `text-end`, `finish-step`, `finish` (with the stored message id, model and usage as message
 * metadata), then `[DONE]`; a failure is an `error` part with `errorText` and the code.
 */
function uiMessageFrames(conversationId: string): StreamFrames {
  const textId = 'text-0';
  const deltaHead = `data: {"type":"text-delta","id":"${textId}","delta":`;
  let opened = false;
  const open = () => {
    if (opened) return '';
    opened = true;
    return sse({ type: 'start', messageMetadata: { conversationId } }) + sse({ type: 'start-step' }) + sse({ type: 'text-start', id: textId });
  };
  const close = () => sse({ type: 'text-end', id: textId }) + sse({ type: 'finish-step' });
  return {
    content: (text) => `${open()}${deltaHead}${JSON.stringify(text)}}\n\n`,
    end: (e) =>
      open() +
      close() +
      sse({
        type: 'finish',
        finishReason: e.filtered ? 'content-filter' : FINISH[e.finishReason],
        messageMetadata: { conversationId, messageId: e.messageId, model: e.model, finishReason: e.finishReason, ...(e.usage ? { usage: e.usage } : {}) },
      }) +
      'data: [DONE]\n\n',
    error: (error) => open() + close() + sse({ type: 'error', errorText: `${error.message} (${error.code})`, code: error.code }) + 'data: [DONE]\n\n',
  };
}
