import OpenAI from 'openai';
import type { Logger } from '../logger.js';
import type { LanguageModel, ModelCallOptions, ModelFinishReason, ModelStreamPart, TokenUsage } from './language-model.js';
import { finishPart, streamFailure } from './provider-error.js';

export interface OpenAIProviderOptions {
  apiKey: string;
  baseURL?: string | undefined;
  organization?: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  contextTokens: number;
  /** The SDK's own diagnostics go here instead of the console. */
  logger: Logger;
}

/** One SDK client per process: it keeps the connection pool warm across requests. */
export class OpenAIProvider {
  readonly client: OpenAI;
  /** OpenAI-compatible servers (Ollama, vLLM, llama.cpp) know `max_tokens`, not `max_completion_tokens`. */
  readonly compatible: boolean;
  readonly contextTokens: number;

  constructor(options: OpenAIProviderOptions) {
    this.client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      organization: options.organization ?? null,
      maxRetries: options.maxRetries,
      timeout: options.timeoutMs,
      // Never below warn: the SDK's debug lines describe whole requests.
      logLevel: 'warn',
      logger: sdkLogger(options.logger),
    });
    this.compatible = options.baseURL !== undefined;
    this.contextTokens = options.contextTokens;
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

class OpenAIChatModel implements LanguageModel {
  readonly provider = 'openai';

  constructor(
    readonly owner: OpenAIProvider,
    readonly modelId: string,
  ) {}

  get contextTokens(): number {
    return this.owner.contextTokens;
  }

  async *stream(options: ModelCallOptions): AsyncIterable<ModelStreamPart> {
    const { signal } = options;
    const limit =
      options.maxTokens === undefined
        ? {}
        : this.owner.compatible
          ? { max_tokens: options.maxTokens }
          : { max_completion_tokens: options.maxTokens };
    let finishReason: ModelFinishReason | undefined;
    let usage: TokenUsage | undefined;
    let received = false;
    try {
      const stream = await this.owner.client.chat.completions.create(
        {
          model: this.modelId,
          messages: options.messages,
          stream: true,
          stream_options: { include_usage: true },
          ...limit,
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
        },
        { signal },
      );
      for await (const chunk of stream) {
        received = true;
        if (chunk.usage) {
          usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
        }
        const choice = chunk.choices[0];
        if (!choice) continue;
        const text = choice.delta?.content;
        if (text) yield { type: 'text-delta', text };
        if (choice.finish_reason) finishReason = FINISH[choice.finish_reason] ?? 'other';
      }
    } catch (err) {
      // The SDK surfaces a connection cut mid-stream as a bare fetch TypeError, not an APIError.
      throw streamFailure('OpenAI', signal, err, err instanceof OpenAI.APIError ? err.status : undefined, received);
    }
    yield finishPart('OpenAI', signal, finishReason, usage);
  }
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
