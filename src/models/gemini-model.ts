import { ApiError, GoogleGenAI, type Content } from '@google/genai';
import type { LanguageModel, ModelCallOptions, ModelFinishReason, ModelStreamPart, TokenUsage } from './language-model.js';
import { finishPart, streamFailure } from './provider-error.js';

export interface GeminiProviderOptions {
  apiKey: string;
  baseUrl?: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  contextTokens: number;
}

export class GeminiProvider {
  readonly client: GoogleGenAI;
  readonly contextTokens: number;

  constructor(options: GeminiProviderOptions) {
    this.client = new GoogleGenAI({
      apiKey: options.apiKey,
      httpOptions: {
        ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}),
        timeout: options.timeoutMs,
        retryOptions: { attempts: options.maxRetries + 1 },
      },
    });
    this.contextTokens = options.contextTokens;
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
};

class GeminiChatModel implements LanguageModel {
  readonly provider = 'gemini';

  constructor(
    readonly owner: GeminiProvider,
    readonly modelId: string,
  ) {}

  get contextTokens(): number {
    return this.owner.contextTokens;
  }

  async *stream(options: ModelCallOptions): AsyncIterable<ModelStreamPart> {
    const { signal } = options;
    const system = options.messages.filter((m) => m.role === 'system').map((m) => m.content);
    const contents: Content[] = options.messages
      .filter((m) => m.role !== 'system')
      .map((m) => ({ role: m.role === 'assistant' ? 'model' : 'user', parts: [{ text: m.content }] }));
    let finishReason: ModelFinishReason | undefined;
    let usage: TokenUsage | undefined;
    let received = false;
    try {
      const stream = await this.owner.client.models.generateContentStream({
        model: this.modelId,
        contents,
        config: {
          abortSignal: signal,
          ...(system.length ? { systemInstruction: system.join('\n\n') } : {}),
          ...(options.maxTokens === undefined ? {} : { maxOutputTokens: options.maxTokens }),
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
        },
      });
      for await (const chunk of stream) {
        received = true;
        const meta = chunk.usageMetadata;
        if (meta) {
          usage = {
            inputTokens: meta.promptTokenCount ?? 0,
            outputTokens: (meta.candidatesTokenCount ?? 0) + (meta.thoughtsTokenCount ?? 0),
          };
        }
        const candidate = chunk.candidates?.[0];
        for (const part of candidate?.content?.parts ?? []) {
          if (part.text && !part.thought) yield { type: 'text-delta', text: part.text };
        }
        if (candidate?.finishReason) finishReason = FINISH[candidate.finishReason] ?? 'other';
      }
    } catch (err) {
      throw streamFailure('Gemini', signal, err, err instanceof ApiError ? geminiStatus(err) : undefined, received);
    }
    yield finishPart('Gemini', signal, finishReason, usage);
  }
}

/** Gemini answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID; report it as the credential error it is. */
export function geminiStatus(err: ApiError): number {
  return err.status === 400 && err.message.includes('API_KEY_INVALID') ? 401 : err.status;
}
