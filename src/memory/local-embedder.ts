import { l2Normalise, type Embedder, type EmbeddingPurpose } from './embedder.js';
import { checkDimensions } from './embedding-error.js';

export const LOCAL_EMBEDDING_MODEL = 'local-hash-v1';
export const LOCAL_EMBEDDING_DIMENSIONS = 384;
/** Only the start of a text is looked at, so one huge message costs at most a few milliseconds. */
export const LOCAL_MAX_CHARS = 8192;

export interface LocalEmbedderOptions {
  /** Vector size (default 384). Vectors of different sizes are not comparable. */
  dimensions?: number | undefined;
}

// Relative weight of each feature family. Character n-grams are many per word, so each
// counts less; together they carry spelling variants ("colour" / "colours").
const WORD_WEIGHT = 1;
const BIGRAM_WEIGHT = 0.7;
const GRAM_WEIGHT = 0.25;
const MIN_GRAM = 3;
const MAX_GRAM = 5;
// Word boundary markers for character n-grams: control characters never found inside a word.
const WORD_START = 0x02;
const WORD_END = 0x03;
const SEED_WORD = 0x5f3759df;
const SEED_BIGRAM = 0x27d4eb2f;
const SEED_GRAM = 0x165667b1;
const SEED_SIGN = 0x9e3779b9;
const WORD = /[\p{L}\p{M}\p{N}]+/gu;
/** Embedding a batch yields to the event loop after this much CPU time. */
const SLICE_MS = 8;

/**
 * The embedded default: feature hashing of word unigrams, word bigrams and character 3-5-grams
 * (with word boundary markers) of the NFKC-normalised, lower-cased text into a fixed number of
 * dimensions. Each feature lands in one dimension with a sign taken from a second hash, so
 * collisions cancel out on average; its weight grows with the logarithm of its count. No
 * weights, no download, deterministic across processes and versions of Node: the model name
 * must change whenever the features or the hashing do, since stored vectors depend on them.
 * Similarity is lexical (shared words and spellings), not semantic.
 */
export class LocalEmbedder implements Embedder {
  readonly kind = 'local';
  readonly model = LOCAL_EMBEDDING_MODEL;
  readonly dimensions: number;

  constructor(options: LocalEmbedderOptions = {}) {
    this.dimensions = checkDimensions(options.dimensions ?? LOCAL_EMBEDDING_DIMENSIONS);
  }

  /** Both purposes get the same vector: the features are symmetric. */
  async embed(texts: readonly string[], _purpose: EmbeddingPurpose, signal?: AbortSignal): Promise<Float32Array[]> {
    signal?.throwIfAborted();
    const out: Float32Array[] = [];
    let sliceStart = performance.now();
    for (const text of texts) {
      out.push(this.embedText(text));
      if (performance.now() - sliceStart > SLICE_MS) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        signal?.throwIfAborted();
        sliceStart = performance.now();
      }
    }
    return out;
  }

  /** One vector, synchronously. A text without letters or digits gives the zero vector. */
  embedText(text: string): Float32Array {
    const words = new Map<number, number>();
    const bigrams = new Map<number, number>();
    const grams = new Map<number, number>();
    const clipped = text.length > LOCAL_MAX_CHARS ? text.slice(0, LOCAL_MAX_CHARS) : text;
    let previous: number | undefined;
    for (const match of clipped.normalize('NFKC').toLowerCase().matchAll(WORD)) {
      const word = match[0];
      const hash = hashWord(word);
      count(words, fmix32(hash ^ SEED_WORD));
      if (previous !== undefined) count(bigrams, fmix32((Math.imul(previous, 0x01000193) ^ hash) + SEED_BIGRAM));
      previous = hash;
      countGrams(grams, word);
    }
    const vector = new Float32Array(this.dimensions);
    this.#add(vector, words, WORD_WEIGHT);
    this.#add(vector, bigrams, BIGRAM_WEIGHT);
    this.#add(vector, grams, GRAM_WEIGHT);
    return l2Normalise(vector);
  }

  #add(vector: Float32Array, features: Map<number, number>, weight: number): void {
    const size = this.dimensions;
    for (const [feature, n] of features) {
      const sign = fmix32(feature ^ SEED_SIGN) & 1 ? -1 : 1;
      vector[(feature >>> 0) % size]! += sign * weight * (1 + Math.log(n));
    }
  }
}

function count(features: Map<number, number>, feature: number): void {
  features.set(feature, (features.get(feature) ?? 0) + 1);
}

/** FNV-1a over UTF-16 code units. */
function hashWord(word: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193);
  return h;
}

/** Counts the 3-5-grams of WORD_START + word + WORD_END without building substrings. */
function countGrams(grams: Map<number, number>, word: string): void {
  const padded = word.length + 2;
  const codeAt = (i: number): number => (i === 0 ? WORD_START : i === padded - 1 ? WORD_END : word.charCodeAt(i - 1));
  for (let n = MIN_GRAM; n <= MAX_GRAM; n++) {
    for (let start = 0; start + n <= padded; start++) {
      let h = Math.imul(0x811c9dc5 ^ n, 0x01000193);
      for (let i = start; i < start + n; i++) h = Math.imul(h ^ codeAt(i), 0x01000193);
      count(grams, fmix32(h ^ SEED_GRAM));
    }
  }
}

/** MurmurHash3's finaliser: spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
