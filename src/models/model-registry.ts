import { ConfigError, type Config } from '../config.js';
import { silentLogger, type Logger } from '../logger.js';
import { AppError } from '../errors.js';
import { GeminiProvider } from './gemini-model.js';
import type { LanguageModel } from './language-model.js';
import { LocalModel } from './local-model.js';
import { OpenAIProvider, type ProviderTransport } from './openai-model.js';

export const PROVIDERS = ['local', 'openai', 'gemini'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

const MODEL_NAME = /^[A-Za-z0-9._:/-]{1,128}$/;

interface ModelFactory {
  /** `requested`: the name the client asked for, when the local model stands in for it. */
  model(modelId: string, requested?: string): LanguageModel;
}

/** What a server with a provider key and no DEFAULT_MODEL answers with. */
export const PROVIDER_DEFAULT_MODELS = { openai: 'gpt-4o-mini', gemini: 'gemini-2.5-flash' } as const;

/**
 * Routes a requested model name to a provider (PROTOCOLS.md section 0):
 * `gpt-*` and `o<digit>*` go to OpenAI (or the OpenAI-compatible base URL), `gemini-*` to
 * Gemini, `local` to the embedded model, and `provider:model` names the provider outright.
 * With no remote provider configured at all, every well-formed name is served by the local
 * model (so a client that asks for `gpt-4` still works on a zero-config server), and the
 * model reported back is `local`.
 */
export class ModelRegistry {
  readonly #factories = new Map<ProviderName, ModelFactory>();
  readonly #allowed: ReadonlySet<string> | undefined;
  readonly #localOnly: boolean;
  readonly defaultModel: string;
  /** Names offered in `GET /v1/models` besides the default: each provider's well-known model, where it has one. */
  readonly suggested: readonly string[];

  constructor(options: {
    factories: Partial<Record<ProviderName, ModelFactory>>;
    defaultModel: string;
    allowedModels?: string[] | undefined;
    /** Default: `local` and each configured remote provider's PROVIDER_DEFAULT_MODELS name. */
    suggested?: readonly string[] | undefined;
  }) {
    for (const name of PROVIDERS) {
      const factory = options.factories[name];
      if (factory) this.#factories.set(name, factory);
    }
    this.#allowed = options.allowedModels ? new Set(options.allowedModels) : undefined;
    this.#localOnly = this.providers.every((p) => p === 'local');
    this.defaultModel = options.defaultModel;
    this.suggested = options.suggested ?? this.providers.map((p) => (p === 'local' ? 'local' : PROVIDER_DEFAULT_MODELS[p]));
  }

  /** Providers that are configured, for /readyz and logs. */
  get providers(): ProviderName[] {
    return [...this.#factories.keys()];
  }

  /**
   * Throws INVALID_MODEL for a name that is malformed, not allowed, or has no configured
   * provider. `strict` turns off the zero-config stand-in (for DEFAULT_MODEL, which an
   * operator chose on purpose).
   */
  resolve(requested: string | undefined, options: { strict?: boolean } = {}): LanguageModel {
    const name = requested ?? this.defaultModel;
    if (!MODEL_NAME.test(name)) throw new AppError('INVALID_MODEL', 'Model names are 1-128 characters of letters, digits and ._:/-');
    const route = routeModel(name);
    if (this.#allowed && !this.#allowed.has(name) && !(route && this.#allowed.has(`${route.provider}:${route.modelId}`))) {
      throw new AppError('INVALID_MODEL', `Model "${name}" is not allowed on this server`);
    }
    const local = this.#factories.get('local');
    if (this.#localOnly && local && route?.provider !== 'local' && !options.strict) return local.model('local', name);
    if (!route) throw new AppError('INVALID_MODEL', `Unknown model "${name}": use gpt-*, o*, gemini-*, local or provider:model`);
    const factory = this.#factories.get(route.provider);
    if (!factory) throw new AppError('INVALID_MODEL', `Model "${name}" needs the ${route.provider} provider, which is not configured`);
    return factory.model(route.modelId);
  }
}

/**
 * The model names a client can ask for (`GET /v1/models`): ALLOWED_MODELS when set, else the
 * default model and the registry's suggestions (`local`, OpenAI's and Gemini's well-known
 * models; none for an OpenAI-compatible server, whose names are its own). An API key with a
 * list of its own gets the names on it that a request with that name would be served with.
 */
export function listModels(registry: ModelRegistry, allowedModels: readonly string[] | undefined, keyModels?: readonly string[] | null): string[] {
  const byKey = keyModels !== undefined && keyModels !== null;
  const candidates = byKey ? keyModels : allowedModels?.length ? allowedModels : [registry.defaultModel, ...registry.suggested];
  const names: string[] = [];
  for (const name of candidates) {
    if (!name || names.includes(name)) continue;
    try {
      registry.resolve(name, { strict: !byKey });
      names.push(name);
    } catch {
      // not servable here: not listed
    }
  }
  return names;
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

/**
 * The default model when DEFAULT_MODEL is unset: OpenAI's, else Gemini's, else the local one.
 * An OpenAI-compatible server (Ollama, vLLM...) has no standard model name, so the Node entry
 * asks it (`discoverCompatibleModel`) and passes the answer in.
 */
export function chooseDefaultModel(config: Config, discovered?: string): string {
  if (config.chat.defaultModel) return config.chat.defaultModel;
  if (config.models.openai.apiKey) return discovered ?? (config.models.openai.baseURL ? 'openai:default' : PROVIDER_DEFAULT_MODELS.openai);
  if (config.models.gemini.apiKey) return PROVIDER_DEFAULT_MODELS.gemini;
  return 'local';
}

/**
 * Asks an OpenAI-compatible server for its models (`GET /models`) and returns the first as
 * `openai:<id>`; used only when OPENAI_BASE_URL is set and DEFAULT_MODEL is not. Throws a
 * ConfigError naming the variables when the server cannot be asked.
 */
export async function discoverCompatibleModel(config: Config, timeoutMs = 5_000): Promise<string | undefined> {
  const { baseURL, apiKey } = config.models.openai;
  if (config.chat.defaultModel || !baseURL) return undefined;
  const url = new URL(baseURL);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/models`;
  // Printed in errors: never with credentials or a query string (either can hold a secret).
  const shown = `${url.protocol}//${url.host}${url.pathname}`;
  const fix = 'start that server, or set DEFAULT_MODEL=openai:<model> to skip this lookup';
  if (url.username || url.password) {
    throw new ConfigError([`OPENAI_BASE_URL: credentials do not belong in the URL (${shown}); set OPENAI_API_KEY for the key, or ${fix}`]);
  }
  let ids: string[];
  try {
    const res = await fetch(url, { headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = (await res.json()) as { data?: { id?: unknown }[] };
    ids = (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string' && MODEL_NAME.test(id));
  } catch (err) {
    throw new ConfigError([`OPENAI_BASE_URL: could not list the models at ${shown} (${describe(err)}); ${fix}`]);
  }
  if (!ids.length) throw new ConfigError([`OPENAI_BASE_URL: the server at ${shown} lists no models; pull one (e.g. \`ollama pull llama3.2\`) or set DEFAULT_MODEL`]);
  return `openai:${ids[0]}`;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err.cause as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string') return code;
    if (err.name === 'TimeoutError') return 'no answer in time';
    if (/^HTTP \d+$/.test(err.message)) return err.message;
    if (err instanceof SyntaxError) return 'the answer was not JSON';
  }
  return 'the request failed';
}

/** The one place that turns configuration into providers. Throws ConfigError for a default model that cannot be served. */
export function createModelRegistry(config: Config, logger: Logger = silentLogger, discoveredDefault?: string, transport?: ProviderTransport): ModelRegistry {
  const m = config.models;
  const remote = Boolean(m.openai.apiKey || m.gemini.apiKey);
  const localOptions = { ...m.local, remoteConfigured: remote };
  const local = new LocalModel(localOptions);
  const factories: Partial<Record<ProviderName, ModelFactory>> = {
    local: {
      model: (id, requested) => (id === 'local' && !requested ? local : new LocalModel({ ...localOptions, modelId: id, requested })),
    },
  };
  if (m.openai.apiKey) {
    factories.openai = new OpenAIProvider({
      apiKey: m.openai.apiKey,
      baseURL: m.openai.baseURL,
      organization: m.openai.organization,
      maxRetries: m.maxRetries,
      timeoutMs: m.timeoutMs,
      contextTokens: m.contextTokens,
      logger,
      transport: timed(transport, 'openai'),
    });
  }
  if (m.gemini.apiKey) {
    factories.gemini = new GeminiProvider({
      apiKey: m.gemini.apiKey,
      baseUrl: m.gemini.baseUrl,
      maxRetries: m.maxRetries,
      timeoutMs: m.timeoutMs,
      contextTokens: m.contextTokens,
      logger,
      transport: timed(transport, 'gemini'),
    });
  }
  const defaultModel = chooseDefaultModel(config, discoveredDefault);
  // An OpenAI-compatible server (OPENAI_BASE_URL) does not offer OpenAI's model names: only its own default is listed.
  const suggested = [
    'local',
    ...(factories.openai && !m.openai.baseURL ? [PROVIDER_DEFAULT_MODELS.openai] : []),
    ...(factories.gemini ? [PROVIDER_DEFAULT_MODELS.gemini] : []),
  ];
  const registry = new ModelRegistry({ factories, defaultModel, allowedModels: config.chat.allowedModels, suggested });
  try {
    registry.resolve(undefined, { strict: true }); // a default model that cannot be served is a start-up error, not a per-request one
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const route = routeModel(defaultModel);
    // The fix for why it was refused: a model ALLOWED_MODELS leaves out needs no key.
    const notAllowed = config.chat.allowedModels !== undefined && reason.includes('is not allowed');
    const hint = notAllowed
      ? `add it to ALLOWED_MODELS (now ${config.chat.allowedModels!.join(',')})`
      : route?.provider === 'openai'
        ? 'set OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)'
        : route?.provider === 'gemini'
          ? 'set GEMINI_API_KEY'
          : !route
            ? 'name a model the server knows'
            : 'configure its provider';
    throw new ConfigError([`DEFAULT_MODEL=${defaultModel}: ${reason}; ${hint}, or choose another DEFAULT_MODEL`]);
  }
  return registry;
}

/**
 * The transport with its fetch timed for `provider`: request sent to response head (each try of
 * an SDK's retries on its own). The Response passes through untouched (`nodeBody` finds it).
 */
function timed(transport: ProviderTransport | undefined, provider: string): ProviderTransport | undefined {
  const observe = transport?.onResponseHead;
  if (!observe) return transport;
  const base = transport.fetch ?? globalThis.fetch;
  const fetchTimed = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const sent = performance.now();
    return base(input, init).then((response) => {
      observe(provider, (performance.now() - sent) / 1000);
      return response;
    });
  };
  return { ...transport, fetch: fetchTimed as typeof fetch };
}
