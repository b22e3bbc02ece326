import type { Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import { routeModel } from '../models/model-registry.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';

const MINUTE_MS = 60_000;

/** One spelling per model: `gpt-4o-mini` and `openai:gpt-4o-mini` are the same model, `local` is `local`. */
export function canonicalModelName(name: string): string {
  const route = routeModel(name);
  if (!route) return name;
  return route.provider === 'local' && route.modelId === 'local' ? 'local' : `${route.provider}:${route.modelId}`;
}

/**
 * Whether a key's model allow-list admits a turn: the model as asked for, or the model that
 * actually serves it (`provider:modelId`; on a server with no provider, the local model stands
 * in for every name). Null allows whatever the server allows (ALLOWED_MODELS still applies).
 */
export function apiKeyAllowsModel(models: readonly string[] | null, requested: string, served?: string): boolean {
  if (models === null) return true;
  const allowed = new Set(models.map(canonicalModelName));
  return allowed.has(canonicalModelName(requested)) || (served !== undefined && allowed.has(canonicalModelName(served)));
}

/**
 * What an API key adds to admitting a chat turn or a realtime session, after the model
 * resolved (so ALLOWED_MODELS and unknown names are refused first) and before the user's own
 * rate limit: its model allow-list (INVALID_MODEL, like ALLOWED_MODELS) and its own per-minute
 * limit (RATE_LIMIT, counted under `chat:key:<id>`). A refusal here consumes nothing of the
 * user's limit, so a runaway tool on a limited key leaves the user's other clients their
 * budget. Does nothing for callers without a key.
 */
export async function admitApiKey(principal: Principal, model: { requested: string; served: { provider: string; modelId: string } }, limiter: RateLimiter): Promise<void> {
  const key = principal.apiKey;
  if (!key) return;
  if (!apiKeyAllowsModel(key.models, model.requested, `${model.served.provider}:${model.served.modelId}`)) {
    throw new AppError('INVALID_MODEL', `Model "${model.requested}" is not allowed for this API key; it may use ${key.models!.join(', ')}`);
  }
  if (key.rateLimitPerMinute === null) return;
  const rateLimit = await limiter.consume(`chat:key:${key.id}`, key.rateLimitPerMinute, MINUTE_MS);
  if (rateLimit.allowed) return;
  const retryAfterSeconds = Math.max(1, Math.ceil((rateLimit.reset - Date.now()) / 1000));
  throw new AppError('RATE_LIMIT', `Too many requests for this API key (${key.rateLimitPerMinute} a minute); retry in ${retryAfterSeconds} s`, {
    details: { rateLimit, retryAfterSeconds },
  });
}
