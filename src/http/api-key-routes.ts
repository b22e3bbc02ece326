import { Hono } from 'hono';
import { z } from 'zod';
import { describeIssues, labelSchema } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import { routeModel } from '../models/model-registry.js';
import type { Services } from '../services.js';
import type { ApiKeyRecord } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { authenticate } from './authenticate.js';
import { readJsonBody } from './http-helpers.js';

const modelName = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9._:/-]{1,128}$/, 'must be 1-128 characters of letters, digits and ._:/-')
  .refine((name) => routeModel(name) !== undefined, 'must be gpt-*, o*, gemini-*, local or provider:model');

/** Strict: a misspelt `models` or `rateLimitPerMinute` must not quietly create an unrestricted key. */
export const createKeySchema = z.strictObject({
  name: labelSchema(100),
  models: z
    .array(modelName)
    .min(1, 'must name at least one model (omit it for every model the server allows)')
    .max(50)
    .transform((names) => [...new Set(names)])
    .nullish(),
  rateLimitPerMinute: z.number().int().min(1).max(100_000).nullish(),
  expiresInDays: z.number().int().min(1).max(3650).nullish(),
});
const keyId = z.string().min(1).max(128);

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** What a client ever sees of a stored key: never its hash, and the secret only once, at creation. */
const keyJson = (k: ApiKeyRecord) => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  models: k.models,
  rateLimitPerMinute: k.rateLimitPerMinute,
  createdAt: iso(k.createdAt),
  expiresAt: iso(k.expiresAt),
  lastUsedAt: iso(k.lastUsedAt),
});

/**
 * /api/v2/keys: the signed-in user's gateway API keys. Create (the secret is in this answer
 * and nowhere else, ever), list, revoke. Only a sign-in session manages keys: an API key is
 * refused (403), and another user's key id is NOT_FOUND.
 */
export function apiKeyRoutes(services: Services): Hono<AppEnv> {
  const { apiKeys } = services;
  const routes = new Hono<AppEnv>();
  routes.use(authenticate(services, { requireUser: true }));
  // Before anything is read: a key or an identity-provider user is refused whatever it asks.
  routes.use(async (c, next) => {
    apiKeys.managerOf(c.get('principal'));
    await next();
  });

  routes.post('/', async (c) => {
    const parsed = createKeySchema.safeParse(await readJsonBody(c, services.config.chat));
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const { name, models, rateLimitPerMinute, expiresInDays } = parsed.data;
    const { key, secret } = await apiKeys.create(c.get('principal'), {
      name,
      models: models ?? null,
      rateLimitPerMinute: rateLimitPerMinute ?? null,
      expiresInDays: expiresInDays ?? null,
    });
    c.header('Cache-Control', 'no-store');
    return c.json({ ...keyJson(key), key: secret }, 201);
  });

  routes.get('/', async (c) => {
    const keys = await apiKeys.list(c.get('principal'));
    return c.json({ keys: keys.map(keyJson) });
  });

  routes.delete('/:id', async (c) => {
    const id = keyId.safeParse(c.req.param('id'));
    if (!id.success || !(await apiKeys.revoke(c.get('principal'), id.data))) throw new AppError('NOT_FOUND', 'API key not found');
    return c.json({ deleted: true, id: id.data });
  });

  return routes;
}
