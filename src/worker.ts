import type { Hono } from 'hono';
import { ConfigError, loadConfig, type Env } from './config.js';
import { AppError, errorBody } from './errors.js';
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
/** Set once the bindings were found invalid: every request is refused, and they are not parsed again. */
let misconfigured = false;

function build(env: Env): Hono<AppEnv> {
  // The client's address is CF-Connecting-IP, set by Cloudflare: an X-Forwarded-For the client
  // sent itself would otherwise pick its own rate-limit budget and IP-owned conversations.
  const config = { ...loadConfig(env), trustProxy: false };
  const logger = createConsoleLogger(config.logLevel === 'silent' ? 'error' : config.logLevel);
  if (env.TRUST_PROXY) logger.warn({}, 'TRUST_PROXY does not apply on Workers: the client address is CF-Connecting-IP');
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
    if (!app && !misconfigured) {
      try {
        app = build(stringBindings(env));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        // Named once in the log (the variables and what is wrong with them, never their values);
        // the client gets a coded error, not the runtime's page with a stack.
        misconfigured = true;
        createConsoleLogger('error').error({}, err.message);
      }
    }
    if (!app) return misconfiguredResponse();
    return app.fetch(request, env, ctx as never);
  },
};

function misconfiguredResponse(): Response {
  return new Response(JSON.stringify(errorBody(new AppError('INTERNAL', 'The server is misconfigured'))), {
    status: 503,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  });
}

/**
 * Configuration is the plain bindings: `[vars]` written as TOML strings, numbers or booleans
 * (`AUTH_REQUIRED = true` must not be dropped for want of quotes), and secrets. KV, D1 and the
 * other bindings are objects.
 */
function stringBindings(env: Record<string, unknown>): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) {
    if (typeof v === 'string') out[k] = v;
    else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') out[k] = String(v);
  }
  return out;
}
