import { Hono, type Context } from 'hono';
import { z } from 'zod';
import type { ChatTurnInput, PreparedTurn } from '../chat/chat-pipeline.js';
import { conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { TurnAbort } from '../chat/turn-abort.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { ModelMessage, Sampling, TokenUsage } from '../models/language-model.js';
import { listModels } from '../models/model-registry.js';
import { countTokensBounded } from '../models/tokenizer.js';
import type { Services } from '../services.js';
import type { FinishReason } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { inArrivalOrder } from './arrival-order.js';
import { authenticate } from './authenticate.js';
import { errorResponder, readJsonBody, requestHeader, setRateLimitHeaders } from './http-helpers.js';
import { nodeResponse } from './node-response.js';
import { respondWithTurn, sse, type StreamEnd, type StreamFrames } from './turn-stream.js';

/** The header (or `metadata.conversation_id`) that makes an OpenAI-compatible request a stored conversation. */
export const CONVERSATION_HEADER = 'x-conversation-id';

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const contentSchema = z.union([
  z.string(),
  z.array(z.union([textPart, z.object({ type: z.string() }).loose()])).max(256),
]);

/** What `POST /v1/chat/completions` accepts: OpenAI's request, the parts a text chat gateway can honour. */
export function completionRequestSchema(maxMessageChars: number, maxBodyChars: number) {
  const message = z.object({
    role: z.enum(['system', 'developer', 'user', 'assistant']),
    content: contentSchema.nullable().optional(),
    name: z.string().max(256).optional(),
  });
  const nullableInt = z.number().int().min(1).max(1_000_000).nullable().optional();
  return z
    .object({
      model: z.string().min(1).max(128),
      messages: z.array(message).min(1).max(10_000),
      stream: z.boolean().nullable().optional(),
      stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullable().optional(),
      max_tokens: nullableInt,
      max_completion_tokens: nullableInt,
      temperature: z.number().min(0).max(2).nullable().optional(),
      stop: z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(4)]).nullable().optional(),
      n: z.literal(1).nullable().optional(),
      tools: z.array(z.unknown()).max(0, 'are not supported by this gateway').nullable().optional(),
      functions: z.array(z.unknown()).max(0, 'are not supported by this gateway').nullable().optional(),
      // Sampling settings, handed to the provider (Gemini has each; the local model ignores them).
      top_p: z.number().min(0).max(1).nullable().optional(),
      presence_penalty: z.number().min(-2).max(2).nullable().optional(),
      frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
      seed: z.number().int().min(-(2 ** 53) + 1).max(2 ** 53 - 1).nullable().optional(),
      // What would change the reply's form is refused rather than silently left out: a client
      // asking for JSON, log probabilities, a tool call or audio must not get plain text as if
      // it had been honoured.
      response_format: z
        .object({ type: z.string() })
        .loose()
        .refine((f) => f.type === 'text', 'JSON mode and structured outputs are not supported by this gateway (only {"type": "text"})')
        .nullable()
        .optional(),
      logprobs: z.boolean().refine((v) => !v, 'are not supported by this gateway').nullable().optional(),
      top_logprobs: z.number().refine((v) => v === 0, 'are not supported by this gateway').nullable().optional(),
      logit_bias: z.record(z.string(), z.unknown()).refine((b) => Object.keys(b).length === 0, 'is not supported by this gateway').nullable().optional(),
      tool_choice: z.unknown().refine((v) => v === 'none', 'is not supported by this gateway (no tools)').nullable().optional(),
      function_call: z.unknown().refine((v) => v === 'none', 'is not supported by this gateway (no functions)').nullable().optional(),
      modalities: z.array(z.string()).refine((m) => m.every((x) => x === 'text'), 'are not supported by this gateway beyond "text"').nullable().optional(),
      audio: z.null({ error: 'audio output is not supported by this gateway' }).optional(),
      prediction: z.null({ error: 'predicted outputs are not supported by this gateway' }).optional(),
      user: z.string().max(256).optional(),
      metadata: z.record(z.string(), z.string().max(512)).nullable().optional(),
    })
    .loose()
    .superRefine((req, ctx) => {
      const last = req.messages.at(-1)!;
      if (last.role !== 'user') ctx.addIssue({ code: 'custom', path: ['messages', req.messages.length - 1, 'role'], message: 'must be "user" (the last message is the one answered)' });
      let total = 0;
      req.messages.forEach((m, i) => {
        const text = textOf(m.content);
        if (text === undefined) ctx.addIssue({ code: 'custom', path: ['messages', i, 'content'], message: 'may hold only text parts' });
        else total += text.length;
      });
      const lastText = textOf(last.content) ?? '';
      if (lastText.trim() === '') ctx.addIssue({ code: 'custom', path: ['messages', req.messages.length - 1, 'content'], message: 'must not be empty' });
      if (lastText.length > maxMessageChars) ctx.addIssue({ code: 'custom', path: ['messages', req.messages.length - 1, 'content'], message: `must be at most ${maxMessageChars} characters` });
      if (total > maxBodyChars) ctx.addIssue({ code: 'custom', path: ['messages'], message: `must hold at most ${maxBodyChars} characters in all` });
    });
}

type CompletionRequest = z.infer<ReturnType<typeof completionRequestSchema>>;

/** A message's text: a string, or its text parts joined; undefined when it holds anything else (images, audio). */
function textOf(content: z.infer<typeof contentSchema> | null | undefined): string | undefined {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  let text = '';
  for (const part of content) {
    if (part.type !== 'text' || typeof (part as { text?: unknown }).text !== 'string') return undefined;
    text += (part as { text: string }).text;
  }
  return text;
}

/**
 * `/v1`: the OpenAI chat-completions protocol over the one pipeline (admission, limits, model
 * routing; persistence and memory when a conversation is named), so the `openai` SDK, the AI
 * SDK's OpenAI-compatible provider and tools configured with an "OpenAI API key" work against
 * the gateway. Errors are OpenAI-shaped: `{error: {message, type, code, param}}`.
 */
export function openaiRoutes(services: Services): Hono<AppEnv> {
  const { config } = services;
  const schema = completionRequestSchema(config.chat.maxMessageChars, config.chat.maxHistoryBodyBytes);
  // A stateless client sends its whole conversation every time (it is the context).
  const bodyLimits = { maxBodyBytes: config.chat.maxHistoryBodyBytes, requestTimeoutMs: config.chat.requestTimeoutMs };
  const app = new Hono<AppEnv>();
  // Per route, not `use('*')`: /v1/realtime (added by the Node entry) authenticates its own way.
  // A token (JWT or gateway API key) always: these are the routes any tool with an "OpenAI
  // base URL" can reach, and the provider keys behind them are the server's.
  const auth = authenticate(services, { requireUser: true });

  app.get('/models', auth, (c) => {
    const principal = c.get('principal');
    const allowedByKey = principal.apiKey?.models;
    const names = listModels(services.models, config.chat.allowedModels, allowedByKey);
    return c.json({ object: 'list', data: names.map((id) => ({ id, object: 'model', created: 0, owned_by: ownerOfModel(id) })) });
  });

  app.post('/chat/completions', inArrivalOrder(services), auth, async (c) => {
    const parsed = schema.safeParse(await readJsonBody(c, bodyLimits));
    if (!parsed.success) {
      // OpenAI names the offending parameter in `param`: SDKs and tools show it next to the message.
      const path = parsed.error.issues[0]?.path;
      const param = path?.length ? path.join('.') : undefined;
      throw new AppError('BAD_REQUEST', describeIssues(parsed.error), param === undefined ? {} : { details: { param } });
    }
    const req = parsed.data;
    const named = requestHeader(c, CONVERSATION_HEADER) ?? req.metadata?.conversation_id;
    if (named !== undefined && !conversationIdSchema.safeParse(named).success) {
      throw new AppError('BAD_REQUEST', `${CONVERSATION_HEADER} must be 1-128 characters of A-Z, a-z, 0-9, _ and -`);
    }
    const turn = await services.pipeline.prepare(turnInput(c, req, named));
    setRateLimitHeaders(c, turn.rateLimit);
    const id = `chatcmpl-${turn.conversation.id}-${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    if (req.stream) return respondWithTurn(c, turn, chunkFrames(id, created, turn, req.stream_options?.include_usage === true));
    return completeTurn(c, turn, id, created);
  });

  app.onError(errorResponder(services, openaiError));
  return app;
}

/** The OpenAI names of the pipeline's sampling fields (a refused one is named in `param`). */
const SAMPLING_PARAMS: Record<keyof Sampling, string> = { topP: 'top_p', presencePenalty: 'presence_penalty', frequencyPenalty: 'frequency_penalty', seed: 'seed' };

function turnInput(c: Context<AppEnv>, req: CompletionRequest, conversationId: string | undefined): ChatTurnInput {
  const messages = req.messages.map((m): ModelMessage => ({ role: m.role === 'developer' ? 'system' : m.role, content: textOf(m.content) ?? '' }));
  const last = messages.pop()!;
  const maxTokens = req.max_completion_tokens ?? req.max_tokens ?? undefined;
  return {
    principal: c.get('principal'),
    message: last.content,
    model: req.model,
    maxTokens,
    temperature: req.temperature ?? undefined,
    stop: typeof req.stop === 'string' ? [req.stop] : (req.stop ?? undefined),
    sampling: {
      topP: req.top_p ?? undefined,
      presencePenalty: req.presence_penalty ?? undefined,
      frequencyPenalty: req.frequency_penalty ?? undefined,
      seed: req.seed ?? undefined,
    },
    protocol: 'openai',
    arrivedInPass: c.get('arrivedInPass'),
    // A named conversation is stored (its history comes from the store, not the request); otherwise the client's history is the context.
    ...(conversationId ? { conversationId } : { stateless: { history: messages.filter((m) => m.content !== '') } }),
  };
}

const FINISH: Record<FinishReason, string> = { stop: 'stop', length: 'length', stopped: 'stop', aborted: 'stop', error: 'stop' };

/** OpenAI's finish reason for a reply: `content_filter` when the provider's filter ended it. */
function finishOf(e: StreamEnd): string {
  return e.filtered ? 'content_filter' : FINISH[e.finishReason];
}

function usageOf(e: StreamEnd): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  const usage: TokenUsage = e.usage ?? { inputTokens: 0, outputTokens: countTokensBounded(e.content) };
  return { prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens, total_tokens: usage.inputTokens + usage.outputTokens };
}

/** `chat.completion.chunk` events, as OpenAI streams them: the role first, text deltas, the finish, usage when asked, `[DONE]`. */
function chunkFrames(id: string, created: number, turn: PreparedTurn, includeUsage: boolean): StreamFrames {
  const model = JSON.stringify(publicModelName(turn));
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${model},"system_fingerprint":null,"choices":[{"index":0,"delta":`;
  const tail = `,"logprobs":null,"finish_reason":null}]${includeUsage ? ',"usage":null' : ''}}\n\n`;
  let opened = false;
  const open = () => {
    if (opened) return '';
    opened = true;
    return `${head}{"role":"assistant","content":""}${tail}`;
  };
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    sse({ id, object: 'chat.completion.chunk', created, model: publicModelName(turn), system_fingerprint: null, choices, ...extra });
  return {
    content: (text) => `${open()}${head}{"content":${JSON.stringify(text)}}${tail}`,
    end: (e) =>
      open() +
      chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finishOf(e) }], includeUsage ? { usage: null } : {}) +
      (includeUsage ? chunk([], { usage: usageOf(e) }) : '') +
      'data: [DONE]\n\n',
    // The openai SDK raises an APIError for an `error` event mid-stream.
    error: (error) => open() + sse(openaiError(error)),
  };
}

/** Non-streaming: the whole reply as one `chat.completion` (a client that leaves stops the model). */
async function completeTurn(c: Context<AppEnv>, turn: PreparedTurn, id: string, created: number): Promise<Response> {
  const controller = new AbortController();
  const outgoing = nodeResponse(c) as { once(event: 'close', l: () => void): unknown; off?(event: 'close', l: () => void): unknown; writableEnded?: boolean } | undefined;
  const onClose = () => {
    if (!outgoing?.writableEnded) controller.abort(new TurnAbort('disconnect'));
  };
  if (outgoing) outgoing.once('close', onClose);
  else c.req.raw.signal?.addEventListener('abort', onClose, { once: true });
  let text = '';
  let result: { end: StreamEnd } | { error: AppError } | undefined;
  await turn.run(
    {
      start: () => undefined,
      delta: (t) => {
        text += t;
        return true;
      },
      drained: () => Promise.resolve(),
      end: (e) => (result = { end: e }),
      error: (e) => (result = { error: e.error }),
    },
    controller,
  );
  outgoing?.off?.('close', onClose);
  if (!result || 'error' in result) throw result?.error ?? new AppError('INTERNAL', 'The reply ended without an outcome');
  const e = result.end;
  return c.json({
    id,
    object: 'chat.completion',
    created,
    model: publicModelName(turn),
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finishOf(e) }],
    usage: usageOf(e),
  });
}

/** The model that answered, as OpenAI names it (no provider prefix). */
function publicModelName(turn: PreparedTurn): string {
  return turn.model.modelId;
}

function ownerOfModel(name: string): string {
  if (name === 'local' || name.startsWith('local:')) return 'ai-chat-gateway';
  if (name.startsWith('gemini') || name.startsWith('gemini:')) return 'google';
  return 'openai';
}

const OPENAI_TYPES: Record<ErrorCode, string> = {
  BAD_REQUEST: 'invalid_request_error',
  UNAUTHORIZED: 'authentication_error',
  NOT_FOUND: 'not_found_error',
  RATE_LIMIT: 'rate_limit_error',
  INVALID_MODEL: 'invalid_request_error',
  BUSY: 'conflict_error',
  PROVIDER_ERROR: 'api_error',
  REALTIME_UNAVAILABLE: 'api_error',
  INTERNAL: 'api_error',
};

/** OpenAI's error body; `code` is the gateway's stable code (PROTOCOLS.md section 0). */
export function openaiError(error: AppError): { error: { message: string; type: string; code: string; param: string | null } } {
  // A sampling value the model's provider would refuse (ChatPipeline.prepare), by its OpenAI name.
  const sampling = error.details?.sampling;
  const refused = typeof sampling === 'string' && Object.hasOwn(SAMPLING_PARAMS, sampling) ? SAMPLING_PARAMS[sampling as keyof Sampling] : undefined;
  const param = error.code === 'INVALID_MODEL' ? 'model' : (refused ?? (typeof error.details?.param === 'string' ? error.details.param : null));
  const message = refused ? `${refused}: ${error.message}` : error.message;
  return { error: { message, type: OPENAI_TYPES[error.code] ?? 'api_error', code: error.code, param } };
}
