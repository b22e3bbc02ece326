import type { ApiError, Content, GoogleGenAI } from '@google/genai';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { LanguageModel, ModelCallOptions, ModelFinishReason, ModelMessage, ModelStream, Sampling } from './language-model.js';
import type { ProviderTransport } from './openai-model.js';
import { streamCutError } from './provider-error.js';
import { genaiClient, isGenaiApiError } from './genai-sdk.js';
import { sseModelStream } from './sse-model-stream.js';

export interface GeminiProviderOptions {
  apiKey: string;
  baseUrl?: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  contextTokens: number;
  logger?: Logger | undefined;
  transport?: ProviderTransport | undefined;
}

export class GeminiProvider {
  /** The SDK client, once `@google/genai` is loaded (started here, at start-up). */
  readonly client: Promise<GoogleGenAI>;
  readonly contextTokens: number;
  readonly transport: ProviderTransport;
  readonly logger: Logger | undefined;
  /** How long an attempt may wait for the response head (see `headWithin`). */
  readonly timeoutMs: number;

  constructor(options: GeminiProviderOptions) {
    // No `timeoutMs` for the SDK: its timer stays armed while the body is read, and would cut
    // every reply that streams for longer. The timeout is enforced by `headWithin` instead.
    this.client = genaiClient({ apiKey: options.apiKey, baseUrl: options.baseUrl, maxRetries: options.maxRetries });
    this.timeoutMs = options.timeoutMs;
    this.contextTokens = options.contextTokens;
    this.transport = options.transport ?? {};
    this.logger = options.logger;
  }

  model(modelId: string): LanguageModel {
    return new GeminiChatModel(this, modelId);
  }
}

const FINISH: Record<string, ModelFinishReason> = {
  STOP: 'stop',
  MAX_TOKENS: 'length',
  SAFETY: 'content-filter',
  RECITATION: 'content-filter',
  BLOCKLIST: 'content-filter',
  PROHIBITED_CONTENT: 'content-filter',
  SPII: 'content-filter',
  IMAGE_SAFETY: 'content-filter',
};

interface GeminiChunk {
  /** Set, with no candidates, when Google blocked the prompt itself. */
  promptFeedback?: { blockReason?: string };
  candidates?: { content?: { parts?: { text?: string; thought?: boolean }[] }; finishReason?: string }[];
  usageMetadata?: { promptTokenCount?: number; candidatesTokenCount?: number; thoughtsTokenCount?: number };
  error?: unknown;
}

/**
 * `generateContentStream` through the official SDK, which builds the request (URL, key,
 * contents, config), retries and maps HTTP errors. Its per-chunk decoding (a Response and a
 * JSON promise per event) is replaced: the SDK is handed a fetch that keeps a successful
 * streaming response for this adapter and gives the SDK an empty body, and the bytes are
 * decoded here as they arrive.
 */
class GeminiChatModel implements LanguageModel {
  readonly provider = 'gemini';

  constructor(
    readonly owner: GeminiProvider,
    readonly modelId: string,
  ) {}

  get contextTokens(): number {
    return this.owner.contextTokens;
  }

  refusedSampling(sampling: Sampling): { field: keyof Sampling; message: string } | undefined {
    return geminiSamplingIssue(sampling);
  }

  stream(options: ModelCallOptions, onText: (text: string) => void): ModelStream {
    return sseModelStream({
      provider: 'Gemini',
      signal: options.signal,
      onText,
      bodies: this.owner.transport,
      request: generateRequest(this, options),
      readChunk: (data, report) => {
        let chunk: GeminiChunk;
        try {
          chunk = JSON.parse(data) as GeminiChunk;
        } catch {
          this.owner.logger?.error({ sdk: 'gemini', detail: data.slice(0, 500) }, 'the Gemini stream sent a chunk that is not JSON');
          throw streamCutError('Gemini');
        }
        if (chunk.error) throw new AppError('PROVIDER_ERROR', 'The Gemini model provider reported an error mid-stream');
        const meta = chunk.usageMetadata;
        if (meta) {
          const thoughts = meta.thoughtsTokenCount ?? 0;
          report.usage({ inputTokens: meta.promptTokenCount ?? 0, outputTokens: (meta.candidatesTokenCount ?? 0) + thoughts, ...(thoughts ? { reasoningTokens: thoughts } : {}) });
        }
        const candidate = chunk.candidates?.[0];
        for (const part of candidate?.content?.parts ?? []) if (part.text && !part.thought) report.text(part.text);
        if (candidate?.finishReason) report.finish(FINISH[candidate.finishReason] ?? 'other');
        // A blocked prompt gets no candidate at all: an empty reply its content filter ended, not a cut stream.
        else if (!candidate && chunk.promptFeedback?.blockReason) report.finish('content-filter');
      },
      statusOf: (err) => (isGenaiApiError(err) ? geminiStatus(err) : undefined),
    });
  }
}

/**
 * The request of one reply, made apart from `stream()`: the closures that live as long as the
 * reply (`readChunk`) do not share a scope with the contents, so the conversation sent is not
 * kept while the reply streams.
 */
function generateRequest(model: GeminiChatModel, options: ModelCallOptions): () => Promise<Response | undefined> {
  const { owner, modelId } = model;
  const { signal } = options;
  const system = options.messages.filter((m) => m.role === 'system').map((m) => m.content);
  const contents = geminiContents(options.messages);
  const baseFetch = owner.transport.fetch ?? fetch;
  let captured: Response | undefined;
  const capture = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const response = await headWithin(baseFetch, owner.timeoutMs, input, init);
    if (!response.ok) return response; // the SDK reads the error body, maps the status and retries
    captured = response;
    return new Response(null, { status: response.status, headers: response.headers });
  };
  return async () =>
    (await owner.client).models
      .generateContentStream({
        model: modelId,
        contents,
        config: {
          abortSignal: signal,
          httpOptions: { fetch: capture },
          ...(system.length ? { systemInstruction: system.join('\n\n') } : {}),
          ...(options.maxTokens === undefined ? {} : { maxOutputTokens: options.maxTokens }),
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
          ...(options.stop?.length ? { stopSequences: [...options.stop] } : {}),
          ...(options.sampling?.topP === undefined ? {} : { topP: options.sampling.topP }),
          ...(options.sampling?.presencePenalty === undefined ? {} : { presencePenalty: options.sampling.presencePenalty }),
          ...(options.sampling?.frequencyPenalty === undefined ? {} : { frequencyPenalty: options.sampling.frequencyPenalty }),
          ...(options.sampling?.seed === undefined ? {} : { seed: options.sampling.seed }),
        },
      })
      .then(() => captured);
}

/**
 * The conversation as Gemini `contents`. Google refuses a whole request (400 INVALID_ARGUMENT,
 * "required oneof field 'data'") for one part with empty text, and a stored reply can be empty
 * (stopped or cut before its first token, a safety finish with no text): sent as it is, it
 * would fail every later turn of its conversation. Empty messages are left out, and what that
 * leaves side by side with the same role is joined into one content (its parts in order), so
 * the turns still alternate as they did.
 */
export function geminiContents(messages: readonly ModelMessage[]): Content[] {
  const contents: Content[] = [];
  for (const m of messages) {
    if (m.role === 'system' || m.content === '') continue;
    const role = m.role === 'assistant' ? 'model' : 'user';
    const last = contents.at(-1);
    if (last?.role === role) last.parts!.push({ text: m.content });
    else contents.push({ role, parts: [{ text: m.content }] });
  }
  return contents;
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * The OpenAI sampling value a Gemini model would refuse, if any, so the gateway can refuse it
 * itself, naming it, before any request: Google's answer (400 "Penalty is not enabled for
 * models/...", or an int32 error for the seed) reaches a client only as an opaque provider
 * error. The 2.5 models take no penalties at all, and which model takes them is Google's to
 * change, so a non-zero penalty is refused for every Gemini model.
 */
export function geminiSamplingIssue(sampling: Sampling | undefined): { field: keyof Sampling; message: string } | undefined {
  const seed = sampling?.seed;
  if (seed !== undefined && (seed < INT32_MIN || seed > INT32_MAX)) {
    return { field: 'seed', message: `must be a signed 32-bit integer (${INT32_MIN} to ${INT32_MAX}) for Gemini models` };
  }
  for (const field of ['presencePenalty', 'frequencyPenalty'] as const) {
    if (sampling?.[field]) return { field, message: 'Gemini models do not take presence or frequency penalties (send 0 or leave it out)' };
  }
  return undefined;
}

/**
 * One attempt of the SDK's, with PROVIDER_TIMEOUT_MS bounding the wait for the response head
 * only, as the OpenAI SDK's timeout does: the body of a reply is watched by the model layer's
 * first-byte and idle timers, and may stream for as long as text keeps coming. The SDK's own
 * signal (its attempt's, which the turn's abort aborts) still ends the request and, once the
 * head is in, its body. A timeout aborts without a reason, as the SDK's timer did: the fetch
 * fails with the same AbortError, which the SDK retries the same way.
 */
async function headWithin(fetchFn: typeof fetch, timeoutMs: number, input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const attempt = new AbortController();
  const caller = init?.signal ?? undefined;
  const onAbort = () => attempt.abort(caller!.reason);
  if (caller?.aborted) onAbort();
  else caller?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => attempt.abort(), timeoutMs);
  try {
    return await fetchFn(input, { ...init, signal: attempt.signal });
  } catch (err) {
    caller?.removeEventListener('abort', onAbort);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Gemini answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID; report it as the credential error it is. */
export function geminiStatus(err: ApiError): number {
  return err.status === 400 && err.message.includes('API_KEY_INVALID') ? 401 : err.status;
}
