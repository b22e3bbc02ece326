import OpenAI from 'openai';
import type { Logger } from '../logger.js';
import type { NodeBodies } from './byte-source.js';
import type { LanguageModel, ModelCallOptions, ModelFinishReason, ModelStream, Sampling } from './language-model.js';
import { AppError } from '../errors.js';
import { streamCutError } from './provider-error.js';
import { sseModelStream } from './sse-model-stream.js';

/** How the SDKs reach the network: the Node entry passes its own fetch, which keeps each response's socket stream (`nodeBody`). */
export interface ProviderTransport extends NodeBodies {
  fetch?: typeof fetch | undefined;
  /** Told how long each provider request took to bring its response head (the registry wraps `fetch` per provider). */
  onResponseHead?: ((provider: string, seconds: number) => void) | undefined;
}

export interface OpenAIProviderOptions {
  apiKey: string;
  baseURL?: string | undefined;
  organization?: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  contextTokens: number;
  /** The SDK's own diagnostics go here instead of the console. */
  logger: Logger;
  transport?: ProviderTransport | undefined;
}

/** Distinct request URLs kept: one per API path the gateway calls. */
const URL_CACHE_MAX = 32;
/** Distinct header sets kept: one per retry count, per-request timeout and body type in use. */
const HEADERS_CACHE_MAX = 16;

type BuildHeadersArgs = { options: { headers?: unknown; timeout?: number | undefined }; method: string; bodyHeaders: unknown; retryCount: number };

/**
 * The SDK, with what it rebuilds identically for every request made once (what is sent is the
 * same, byte for byte):
 * - the request headers are handed to fetch as a plain record. Every request, the SDK formats
 *   its details for a debug line whatever the log level (`formatRequestDetails`), which iterates
 *   a web `Headers` (sorting, lower-casing, a copy): ~0.1-0.2 ms per request in profiles; the
 *   same headers as a record cost a plain `Object.entries`.
 * - the URL of a path without a query: the SDK parses base URL + path with `new URL` and reads
 *   its search parameters each time (~40 µs on a CPU that was idle, bench/profile.ts at c=1).
 * - the merged request headers (the authorization header among them), and their record, while
 *   what they are made of is the same: the retry count, the per-request timeout, the body's
 *   content type and the key. The SDK merges six sources into a new web `Headers` per request (generators, Sets, a validation of
 *   each name and value: ~20 KB allocated a request, the largest single part of the SDK's
 *   allocation). A request with headers of its own, or an idempotency key, is merged as always.
 */
class LeanOpenAI extends OpenAI {
  readonly #urls = new Map<string, string>();
  /** Merged headers by what they were made of, for `#headersKey`; their records, frozen: shared by every request. */
  readonly #headers = new Map<string, Headers>();
  readonly #records = new WeakMap<Headers, Readonly<Record<string, string>>>();
  #headersKey: string | undefined;

  /**
   * The SDK's own merge (a private method of its class, so typed here by hand), made once per
   * set of inputs that decide its result. Read by the SDK's `buildRequest` only.
   */
  async #buildHeaders(superBuild: (args: BuildHeadersArgs) => Promise<Headers>, args: BuildHeadersArgs): Promise<Headers> {
    const { options, bodyHeaders, retryCount, method } = args;
    const plainBody = bodyHeaders === undefined || (typeof bodyHeaders === 'object' && bodyHeaders !== null && Object.getPrototypeOf(bodyHeaders) === Object.prototype);
    if (options.headers !== undefined || !plainBody || (this.idempotencyHeader && method !== 'get')) return superBuild.call(this, args);
    if (this.#headersKey !== this.apiKey) {
      this.#headers.clear();
      this.#headersKey = this.apiKey;
    }
    let body = '';
    for (const name in bodyHeaders as Record<string, unknown> | undefined) body += `${name}=${String((bodyHeaders as Record<string, unknown>)[name])};`;
    const key = `${retryCount} ${String(options.timeout)} ${body}`;
    let headers = this.#headers.get(key);
    if (headers === undefined) {
      headers = await superBuild.call(this, args);
      if (this.#headers.size < HEADERS_CACHE_MAX) this.#headers.set(key, headers);
    }
    return headers;
  }

  static {
    // `buildHeaders` is private in the SDK's types: wrapped on the prototype rather than overridden.
    const proto = OpenAI.prototype as unknown as { buildHeaders: (args: BuildHeadersArgs) => Promise<Headers> };
    const superBuild = proto.buildHeaders;
    if (typeof superBuild === 'function') {
      Object.defineProperty(LeanOpenAI.prototype, 'buildHeaders', {
        value(this: LeanOpenAI, args: BuildHeadersArgs) {
          return this.#buildHeaders(superBuild, args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  override buildURL(path: string, query: Record<string, unknown> | null | undefined, defaultBaseURL?: string): string {
    // A query (given, or the client's default query) is merged in per request: not cached.
    if ((query !== undefined && query !== null) || this._options.defaultQuery !== undefined) return super.buildURL(path, query, defaultBaseURL);
    const key = `${defaultBaseURL ?? ''} ${path}`;
    let url = this.#urls.get(key);
    if (url === undefined) {
      url = super.buildURL(path, query, defaultBaseURL);
      if (this.#urls.size < URL_CACHE_MAX) this.#urls.set(key, url);
    }
    return url;
  }

  override async buildRequest(...args: Parameters<OpenAI['buildRequest']>): ReturnType<OpenAI['buildRequest']> {
    const built = await super.buildRequest(...args);
    const headers = built.req.headers;
    if (headers instanceof Headers) {
      let record = this.#records.get(headers);
      if (record === undefined) {
        const fresh: Record<string, string> = {};
        headers.forEach((value, name) => {
          fresh[name] = value;
        });
        record = Object.freeze(fresh);
        this.#records.set(headers, record);
      }
      (built.req as { headers: HeadersInit }).headers = record;
    }
    return built;
  }
}

// The SDK names itself in User-Agent after its class (`${constructor.name}/JS <version>`): as itself.
Object.defineProperty(LeanOpenAI, 'name', { value: OpenAI.name });

/** One SDK client per process: it keeps the connection pool warm across requests. */
export class OpenAIProvider {
  readonly client: OpenAI;
  /** OpenAI-compatible servers (Ollama, vLLM, llama.cpp) know `max_tokens`, not `max_completion_tokens`. */
  readonly compatible: boolean;
  readonly contextTokens: number;
  readonly logger: Logger;
  readonly transport: ProviderTransport;

  constructor(options: OpenAIProviderOptions) {
    this.client = new LeanOpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      organization: options.organization ?? null,
      maxRetries: options.maxRetries,
      timeout: options.timeoutMs,
      // Never below warn: the SDK's debug lines describe whole requests.
      logLevel: 'warn',
      logger: sdkLogger(options.logger),
      ...(options.transport?.fetch ? { fetch: options.transport.fetch } : {}),
    });
    this.compatible = options.baseURL !== undefined;
    this.contextTokens = options.contextTokens;
    this.logger = options.logger;
    this.transport = options.transport ?? {};
  }

  model(modelId: string): LanguageModel {
    return new OpenAIChatModel(this, modelId);
  }
}

const FINISH: Record<string, ModelFinishReason> = {
  stop: 'stop',
  length: 'length',
  content_filter: 'content-filter',
};

interface ChatChunk {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; completion_tokens_details?: { reasoning_tokens?: number } | null } | null;
  error?: unknown;
}

/**
 * Chat completions through the official SDK (request building, retries, HTTP errors), with
 * the streamed body decoded here: straight from the socket on Node, one SSE decoder, and the
 * text of each network read handed over in one call.
 */
class OpenAIChatModel implements LanguageModel {
  readonly provider = 'openai';

  constructor(
    readonly owner: OpenAIProvider,
    readonly modelId: string,
  ) {}

  get contextTokens(): number {
    return this.owner.contextTokens;
  }

  stream(options: ModelCallOptions, onText: (text: string) => void): ModelStream {
    return sseModelStream({
      provider: 'OpenAI',
      signal: options.signal,
      onText,
      bodies: this.owner.transport,
      request: chatRequest(this, options),
      readChunk: (data, report) => {
        if (data === '[DONE]') return false;
        let chunk: ChatChunk;
        try {
          chunk = JSON.parse(data) as ChatChunk;
        } catch {
          this.owner.logger.error({ sdk: 'openai', detail: clip(data) }, 'the OpenAI stream sent a chunk that is not JSON');
          throw streamCutError('OpenAI');
        }
        if (chunk.error) {
          this.owner.logger.error({ sdk: 'openai', detail: clip(JSON.stringify(chunk.error)) }, 'the OpenAI stream reported an error');
          throw new AppError('PROVIDER_ERROR', 'The OpenAI model provider reported an error mid-stream');
        }
        if (chunk.usage) {
          const reasoning = chunk.usage.completion_tokens_details?.reasoning_tokens;
          report.usage({ inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens, ...(reasoning ? { reasoningTokens: reasoning } : {}) });
        }
        const choice = chunk.choices?.[0];
        if (!choice) return;
        const content = choice.delta?.content;
        if (content) report.text(content);
        if (choice.finish_reason) report.finish(FINISH[choice.finish_reason] ?? 'other');
      },
      statusOf: (err) => (err instanceof OpenAI.APIError ? err.status : undefined),
    });
  }
}

/**
 * The request of one reply, made apart from `stream()`: the closures that live as long as the
 * reply (`readChunk`) do not share a scope with the messages, so the conversation sent is not
 * kept while the reply streams (a suspended or captured scope keeps every variable in it).
 */
function chatRequest(model: OpenAIChatModel, options: ModelCallOptions): () => Promise<Response> {
  const { owner } = model;
  const limit = options.maxTokens === undefined ? {} : owner.compatible ? { max_tokens: options.maxTokens } : { max_completion_tokens: options.maxTokens };
  return () =>
    owner.client.chat.completions
      .create(
        {
          model: model.modelId,
          messages: options.messages,
          stream: true,
          stream_options: { include_usage: true },
          ...limit,
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
          ...(options.stop?.length ? { stop: [...options.stop] } : {}),
          ...openaiSampling(options.sampling),
        },
        { signal: options.signal },
      )
      .asResponse();
}

function openaiSampling(s: Sampling | undefined) {
  if (!s) return {};
  return {
    ...(s.topP === undefined ? {} : { top_p: s.topP }),
    ...(s.presencePenalty === undefined ? {} : { presence_penalty: s.presencePenalty }),
    ...(s.frequencyPenalty === undefined ? {} : { frequency_penalty: s.frequencyPenalty }),
    ...(s.seed === undefined ? {} : { seed: s.seed }),
  };
}

/** The SDK's (message, ...details) calls as structured log records, details clipped. */
function sdkLogger(logger: Logger): NonNullable<ConstructorParameters<typeof OpenAI>[0]>['logger'] {
  const log = (level: 'error' | 'warn' | 'info' | 'debug') => (message: string, ...details: unknown[]) =>
    logger[level]({ sdk: 'openai', details: details.map((d) => clip(typeof d === 'string' ? d : safeJson(d))) }, clip(String(message)));
  return { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug') };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function clip(text: string): string {
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
