/**
 * Turns text into vectors for long-term memory. Adapters: `local` (feature hashing, the
 * embedded default), `openai`, `gemini`. Every adapter returns L2-normalised vectors of
 * exactly `dimensions` numbers, so cosine similarity is a dot product.
 */
export type EmbeddingPurpose = 'document' | 'query';

export interface Embedder {
  /** `local`, `openai` or `gemini`. */
  readonly kind: string;
  /** The embedding model's name (`local-hash-v1`, `text-embedding-3-small`, `gemini-embedding-001`). */
  readonly model: string;
  readonly dimensions: number;
  /**
   * One vector per text, in order, in as few upstream calls as the provider allows.
   * `document` when storing a memory, `query` when searching (providers that distinguish
   * the two, such as Gemini's task types, get the right one). Throws on failure; an abort of
   * `signal` ends the upstream request.
   */
  embed(texts: readonly string[], purpose: EmbeddingPurpose, signal?: AbortSignal): Promise<Float32Array[]>;
}

/** Scales `v` to unit length in place (a zero vector stays zero) and returns it. */
export function l2Normalise(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  if (sum === 0) return v;
  const inv = 1 / Math.sqrt(sum);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
  return v;
}
