import type { GoogleGenAI } from '@google/genai';
import { genaiClient, isGenaiApiError } from '../models/genai-sdk.js';
import { geminiStatus } from '../models/gemini-model.js';
import { l2Normalise, type Embedder, type EmbeddingPurpose } from './embedder.js';
import { planBatches, prepareInputs } from './embedding-batches.js';
import { checkDimensions, embeddingAnswerError, embeddingFailure } from './embedding-error.js';

export interface GeminiEmbedderOptions {
  apiKey: string;
  baseUrl?: string | undefined;
  model: string;
  /** Sent as `outputDimensionality`; every returned vector must have exactly this many. */
  dimensions: number;
  maxRetries: number;
  timeoutMs: number;
}

/**
 * `batchEmbedContents` takes at most 100 texts. Each text is cut to 8 KiB of UTF-8 to bound the
 * request; the model reads at most 2048 tokens of it anyway.
 */
export const GEMINI_EMBEDDING_BATCH = { maxInputs: 100, maxInputBytes: 8192 } as const;

const TASK_TYPES: Record<EmbeddingPurpose, string> = {
  document: 'RETRIEVAL_DOCUMENT',
  query: 'RETRIEVAL_QUERY',
};

/**
 * Gemini embeddings (`gemini-embedding-001`). `models.embedContent` always calls
 * `:batchEmbedContents`. Vectors cut below the model's full 3072 dimensions are not unit length,
 * so they are normalised here.
 */
export class GeminiEmbedder implements Embedder {
  readonly kind = 'gemini';
  readonly model: string;
  readonly dimensions: number;
  readonly #client: Promise<GoogleGenAI>;

  constructor(options: GeminiEmbedderOptions) {
    this.model = options.model;
    this.dimensions = checkDimensions(options.dimensions);
    this.#client = genaiClient({ apiKey: options.apiKey, baseUrl: options.baseUrl, timeoutMs: options.timeoutMs, maxRetries: options.maxRetries });
  }

  async embed(texts: readonly string[], purpose: EmbeddingPurpose, signal?: AbortSignal): Promise<Float32Array[]> {
    signal?.throwIfAborted();
    const { maxInputs, maxInputBytes } = GEMINI_EMBEDDING_BATCH;
    const out: Array<Float32Array | undefined> = new Array(texts.length);
    for (const batch of planBatches(prepareInputs(texts, maxInputBytes), maxInputs, Number.POSITIVE_INFINITY)) {
      const vectors = await this.#request(
        batch.map((b) => b.text),
        purpose,
        signal,
      );
      batch.forEach((b, i) => (out[b.index] = vectors[i]));
    }
    // Blank texts were not sent: they get the zero vector.
    return Array.from(out, (v) => v ?? new Float32Array(this.dimensions));
  }

  async #request(contents: string[], purpose: EmbeddingPurpose, signal: AbortSignal | undefined): Promise<Float32Array[]> {
    let embeddings;
    try {
      const response = await (await this.#client).models.embedContent({
        model: this.model,
        contents,
        config: { taskType: TASK_TYPES[purpose], outputDimensionality: this.dimensions, abortSignal: signal },
      });
      embeddings = response.embeddings ?? [];
    } catch (err) {
      throw embeddingFailure('Gemini', signal, err, isGenaiApiError(err) ? geminiStatus(err) : undefined);
    }
    if (embeddings.length !== contents.length) {
      throw embeddingAnswerError('Gemini', `answered ${embeddings.length} embeddings for ${contents.length} inputs`);
    }
    return embeddings.map(({ values = [] }) => {
      if (values.length !== this.dimensions) {
        throw embeddingAnswerError('Gemini', `answered with ${values.length} dimensions where ${this.dimensions} are configured`);
      }
      return l2Normalise(Float32Array.from(values));
    });
  }
}
