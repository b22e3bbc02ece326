import OpenAI from 'openai';
import type { LanguageModel, ModelCallOptions, ModelFinishReason, ModelStreamPart, TokenUsage } from './language-model.js';
import { finishPart, streamFailure } from './provider-error.js';

export interface OpenAIProviderOptions {
  apiKey: string;
  baseURL?: string | undefined;
  organization?: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  contextTokens: number;
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
