import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { GeminiProvider } from './gemini-model.js';
import type { LanguageModel } from './language-model.js';
import { LocalModel } from './local-model.js';
import { OpenAIProvider } from './openai-model.js';

export const PROVIDERS = ['local', 'openai', 'gemini'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

const MODEL_NAME = /^[A-Za-z0-9._:/-]{1,128}$/;

interface ModelFactory {
  model(modelId: string): LanguageModel;
}

/**
 * Routes a requested model name to a provider (PROTOCOLS.md section 0):
 * `gpt-*` and `o<digit>*` go to OpenAI (or the OpenAI-compatible base URL), `gemini-*` to
 * Gemini, `local` to the embedded model, and `provider:model` names the provider outright.
 */
export class ModelRegistry {
  readonly #factories = new Map<ProviderName, ModelFactory>();
  readonly #allowed: ReadonlySet<string> | undefined;
  readonly defaultModel: string;

  constructor(options: { factories: Partial<Record<ProviderName, ModelFactory>>; defaultModel: string; allowedModels?: string[] | undefined }) {
    for (const name of PROVIDERS) {
      const factory = options.factories[name];
      if (factory) this.#factories.set(name, factory);
    }
    this.#allowed = options.allowedModels ? new Set(options.allowedModels) : undefined;
    this.defaultModel = options.defaultModel;
  }

  /** Providers that are configured, for /readyz and logs. */
  get providers(): ProviderName[] {
    return [...this.#factories.keys()];
  }

  /** Throws INVALID_MODEL for a name that is malformed, not allowed, or has no configured provider. */
  resolve(requested: string | undefined): LanguageModel {
    const name = requested ?? this.defaultModel;
    if (!MODEL_NAME.test(name)) throw new AppError('INVALID_MODEL', 'Model names are 1-128 characters of letters, digits and ._:/-');
    const route = routeModel(name);
    if (!route) throw new AppError('INVALID_MODEL', `Unknown model "${name}": use gpt-*, o*, gemini-*, local or provider:model`);
    if (this.#allowed && !this.#allowed.has(name) && !this.#allowed.has(`${route.provider}:${route.modelId}`)) {
      throw new AppError('INVALID_MODEL', `Model "${name}" is not allowed on this server`);
    }
    const factory = this.#factories.get(route.provider);
    if (!factory) throw new AppError('INVALID_MODEL', `Model "${name}" needs the ${route.provider} provider, which is not configured`);
    return factory.model(route.modelId);
  }
}

export function routeModel(name: string): { provider: ProviderName; modelId: string } | undefined {
  const colon = name.indexOf(':');
  if (colon > 0) {
    const provider = name.slice(0, colon);
    const modelId = name.slice(colon + 1);
    if (!(PROVIDERS as readonly string[]).includes(provider) || !modelId) return undefined;
    return { provider: provider as ProviderName, modelId };
  }
  if (name === 'local') return { provider: 'local', modelId: 'local' };
  if (name.startsWith('gpt-') || /^o\d/.test(name)) return { provider: 'openai', modelId: name };
  if (name.startsWith('gemini-')) return { provider: 'gemini', modelId: name };
  return undefined;
}

/** The one place that turns configuration into providers. */
export function createModelRegistry(config: Config): ModelRegistry {
  const m = config.models;
  const local = new LocalModel({ tokenDelayMs: m.local.tokenDelayMs, contextTokens: m.local.contextTokens });
  const factories: Partial<Record<ProviderName, ModelFactory>> = {
    local: { model: (id) => (id === 'local' ? local : new LocalModel({ ...m.local, modelId: id })) },
  };
  if (m.openai.apiKey) {
    factories.openai = new OpenAIProvider({
      apiKey: m.openai.apiKey,
      baseURL: m.openai.baseURL,
      organization: m.openai.organization,
      maxRetries: m.maxRetries,
      timeoutMs: m.timeoutMs,
      contextTokens: m.contextTokens,
    });
  }
  if (m.gemini.apiKey) {
    factories.gemini = new GeminiProvider({
      apiKey: m.gemini.apiKey,
      baseUrl: m.gemini.baseUrl,
      maxRetries: m.maxRetries,
      timeoutMs: m.timeoutMs,
      contextTokens: m.contextTokens,
    });
  }
  const registry = new ModelRegistry({ factories, defaultModel: config.chat.defaultModel, allowedModels: config.chat.allowedModels });
  registry.resolve(undefined); // a default model that cannot be served is a start-up error, not a per-request one
  return registry;
}
