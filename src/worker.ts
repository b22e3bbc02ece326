import type { Hono } from 'hono';
import { loadConfig, type Env } from './config.js';
import type { AppEnv } from './http/app-env.js';
import { createApp } from './http/app.js';
import { createConsoleLogger } from './logger.js';
import { createRateLimiter } from './ratelimit/create-rate-limiter.js';
import { createServices } from './services.js';
import { NoblePasswordHasher } from './auth/noble-password-hasher.js';
import { MemoryConversationStore } from './stores/memory-conversation-store.js';

/**
 * Cloudflare Workers entry: the same Hono app as on Node. Bindings arrive with the first
 * request, so the app is built then and reused by that isolate. Conversations live in
 * memory per isolate (the SQLite and MongoDB adapters need Node); rate limits use Upstash
 * when configured; models are the local one unless provider keys are set.
 */
let app: Hono<AppEnv> | undefined;

function build(env: Env): Hono<AppEnv> {
  const config = loadConfig(env);
  const logger = createConsoleLogger(config.logLevel === 'silent' ? 'error' : config.logLevel);
  if (!config.auth.jwtSecret) logger.warn({}, 'JWT_SECRET is not set: tokens are signed with a per-isolate key and stop working when it restarts');
  const services = createServices(config, {
    logger,
    store: new MemoryConversationStore(),
    limiter: createRateLimiter(config, logger),
    jwtSecret: config.auth.jwtSecret ? new TextEncoder().encode(config.auth.jwtSecret) : crypto.getRandomValues(new Uint8Array(48)),
    hasher: new NoblePasswordHasher(),
    // Each isolate has its own memory store: a session row written by one is unknown to the next.
    revocableTokens: false,
  });
  return createApp(services, { connectionIp: (c) => c.req.header('cf-connecting-ip') ?? 'unknown' });
}

export default {
  fetch(request: Request, env: Record<string, unknown>, ctx: unknown): Response | Promise<Response> {
    app ??= build(stringBindings(env));
    return app.fetch(request, env, ctx as never);
  },
};

/** Only string bindings are configuration; KV, D1 and other bindings are objects. */
function stringBindings(env: Record<string, unknown>): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) if (typeof v === 'string') out[k] = v;
  return out;
}
