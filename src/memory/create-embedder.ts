import { ConfigError } from '../config.js';
import type { Embedder } from './embedder.js';
import { GeminiEmbedder } from './gemini-embedder.js';
import { LOCAL_EMBEDDING_DIMENSIONS, LOCAL_EMBEDDING_MODEL, LocalEmbedder } from './local-embedder.js';
import { OpenAIEmbedder } from './openai-embedder.js';

export const EMBEDDING_PROVIDERS = ['local', 'openai', 'gemini'] as const;
export type EmbeddingProvider = (typeof EMBEDDING_PROVIDERS)[number];

export interface EmbedderOptions {
  provider: EmbeddingProvider;
  /** Default per provider: see {@link EMBEDDING_DEFAULTS}. */
  model?: string | undefined;
  /** Default per provider: see {@link EMBEDDING_DEFAULTS}. */
  dimensions?: number | undefined;
  openai?: { apiKey?: string | undefined; baseURL?: string | undefined } | undefined;
  gemini?: { apiKey?: string | undefined; baseUrl?: string | undefined } | undefined;
  maxRetries: number;
  timeoutMs: number;
}

export const EMBEDDING_DEFAULTS: Readonly<Record<EmbeddingProvider, { model: string; dimensions: number }>> = {
  local: { model: LOCAL_EMBEDDING_MODEL, dimensions: LOCAL_EMBEDDING_DIMENSIONS },
  openai: { model: 'text-embedding-3-small', dimensions: 1536 },
  gemini: { model: 'gemini-embedding-001', dimensions: 768 },
};

/**
 * The one place that turns embedding settings into an {@link Embedder}. Throws a ConfigError for
 * settings that cannot work (a remote provider without its key, a model the local embedder
 * does not have) and a RangeError for a dimension outside 1-65536.
 */
export function createEmbedder(options: EmbedderOptions): Embedder {
  const { provider, maxRetries, timeoutMs } = options;
  if (!(EMBEDDING_PROVIDERS as readonly string[]).includes(provider)) {
    throw new ConfigError([`EMBEDDING_PROVIDER: unknown provider "${String(provider)}"; use ${EMBEDDING_PROVIDERS.join(', ')}`]);
  }
  const defaults = EMBEDDING_DEFAULTS[provider];
  const model = options.model ?? defaults.model;
  const dimensions = options.dimensions ?? defaults.dimensions;
  switch (provider) {
    case 'local':
      if (model !== LOCAL_EMBEDDING_MODEL) {
        throw new ConfigError([`EMBEDDING_MODEL: the local embedder has one model, ${LOCAL_EMBEDDING_MODEL}; "${model}" needs another EMBEDDING_PROVIDER`]);
      }
      return new LocalEmbedder({ dimensions });
    case 'openai': {
      const apiKey = options.openai?.apiKey;
      if (!apiKey) throw new ConfigError(['EMBEDDING_PROVIDER: openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)']);
      return new OpenAIEmbedder({ apiKey, baseURL: options.openai?.baseURL, model, dimensions, maxRetries, timeoutMs });
    }
    case 'gemini': {
      const apiKey = options.gemini?.apiKey;
      if (!apiKey) throw new ConfigError(['EMBEDDING_PROVIDER: gemini needs GEMINI_API_KEY']);
      return new GeminiEmbedder({ apiKey, baseUrl: options.gemini?.baseUrl, model, dimensions, maxRetries, timeoutMs });
    }
  }
}
