import OpenAI from 'openai';
import { l2Normalise, type Embedder, type EmbeddingPurpose } from './embedder.js';
import { planBatches, prepareInputs } from './embedding-batches.js';
import { checkDimensions, embeddingAnswerError, embeddingFailure } from './embedding-error.js';

export interface OpenAIEmbedderOptions {
  apiKey: string;
  /** An OpenAI-compatible server (Ollama, vLLM, llama.cpp) instead of api.openai.com. */
  baseURL?: string | undefined;
  model: string;
  /** Sent as `dimensions`; every returned vector must have exactly this many. */
  dimensions: number;
  maxRetries: number;
  timeoutMs: number;
}

/**
 * Request limits of `POST /embeddings`: at most 2048 inputs, 8192 tokens each and 300,000
 * tokens in all. A token covers at least one byte, so byte budgets keep within the token limits
 * without a tokenizer.
 */
export const OPENAI_EMBEDDING_BATCH = { maxInputs: 2048, maxInputBytes: 8192, maxRequestBytes: 300_000 } as const;

/**
 * OpenAI embeddings (`text-embedding-3-*`, or any OpenAI-compatible server). The SDK asks for
 * base64 and decodes float32 itself. Purpose is ignored: the model has one embedding space.
 */
export class OpenAIEmbedder implements Embedder {
  readonly kind = 'openai';
  readonly model: string;
  readonly dimensions: number;
  readonly #client: OpenAI;

  constructor(options: OpenAIEmbedderOptions) {
    this.model = options.model;
    this.dimensions = checkDimensions(options.dimensions);
    this.#client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      maxRetries: options.maxRetries,
      timeout: options.timeoutMs,
    });
  }

  async embed(texts: readonly string[], _purpose: EmbeddingPurpose, signal?: AbortSignal): Promise<Float32Array[]> {
    signal?.throwIfAborted();
    const { maxInputs, maxInputBytes, maxRequestBytes } = OPENAI_EMBEDDING_BATCH;
    const out: Array<Float32Array | undefined> = new Array(texts.length);
    for (const batch of planBatches(prepareInputs(texts, maxInputBytes), maxInputs, maxRequestBytes)) {
      const vectors = await this.#request(
        batch.map((b) => b.text),
        signal,
      );
      batch.forEach((b, i) => (out[b.index] = vectors[i]));
    }
    // Blank texts were not sent: they get the zero vector.
    return Array.from(out, (v) => v ?? new Float32Array(this.dimensions));
  }

  async #request(input: string[], signal: AbortSignal | undefined): Promise<Float32Array[]> {
    let response: OpenAI.CreateEmbeddingResponse;
    try {
      response = await this.#client.embeddings.create({ model: this.model, input, dimensions: this.dimensions }, { signal });
    } catch (err) {
      throw embeddingFailure('OpenAI', signal, err, err instanceof OpenAI.APIError ? err.status : undefined);
    }
    // The API may list results in any order; `index` says which input each one belongs to.
    const vectors: Array<Float32Array | undefined> = new Array(input.length);
    for (const item of response.data ?? []) {
      const { index, embedding } = item;
      if (!Number.isInteger(index) || index < 0 || index >= input.length || vectors[index]) {
        throw embeddingAnswerError('OpenAI', 'answered with an unexpected result index');
      }
      if (embedding.length !== this.dimensions) {
        throw embeddingAnswerError('OpenAI', `answered with ${embedding.length} dimensions where ${this.dimensions} are configured`);
      }
      vectors[index] = l2Normalise(Float32Array.from(embedding));
    }
    if (vectors.some((v) => v === undefined) || (response.data?.length ?? 0) !== input.length) {
      throw embeddingAnswerError('OpenAI', `answered ${response.data?.length ?? 0} embeddings for ${input.length} inputs`);
    }
    return vectors as Float32Array[];
  }
}
