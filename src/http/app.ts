import { withBindings } from '../logger.js';
import { Hono, type Context } from 'hono';
import { cors } from 'hono/cors';
import { requestId } from 'hono/request-id';
import { secureHeaders } from 'hono/secure-headers';
import { clientIp } from '../chat/principal.js';
import type { OriginPolicy } from '../origins.js';
import { AppError, errorBody, toAppError } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { authRoutes } from './auth-routes.js';
import { authenticate } from './authenticate.js';
import { chatStreamHandler } from './chat-stream-route.js';
import { conversationRoutes } from './conversation-routes.js';
import { memoryRoutes } from './memory-routes.js';
import { setRateLimitHeaders, setRetryAfter } from './http-helpers.js';
import { readiness } from './readiness.js';
import type { RateLimitDecision } from '../ratelimit/rate-limiter.js';

export interface AppOptions {
  /** The caller's IP as the runtime sees the connection (Node socket, Workers header). */
  connectionIp(c: Context): string;
}

/**
 * The Hono app: web-standard only, so the same code serves Node and Workers.
 */
export function createApp(services: Services, options: AppOptions): Hono<AppEnv> {
  const { config, logger } = services;
  const app = new Hono<AppEnv>();

  app.use(requestId({ headerName: 'X-Request-Id' }));
  app.use(async (c, next) => {
    const reqLogger = withBindings(logger, { reqId: c.get('requestId') });
    c.set('logger', reqLogger);
    c.set('clientIp', clientIp(options.connectionIp(c), c.req.header('x-forwarded-for'), config.trustProxy));
    const started = performance.now();
    await next();
    reqLogger.info({ method: c.req.method, path: c.req.path, status: c.res.status, ms: +(performance.now() - started).toFixed(2) }, 'request');
  });
  app.use(secureHeaders());
  app.use(corsMiddleware(services.origins));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const report = await readiness(services);
    if (report.status === 'unavailable') c.get('logger').warn({ checks: report.checks }, 'not ready');
    return c.json(report, report.status === 'ready' || report.status === 'degraded' ? 200 : 503);
  });

  app.post('/api/v2/ai/chat/stream', authenticate(services), chatStreamHandler(services));
  app.route('/api/v2/auth', authRoutes(services));
  app.route('/api/v2/conversations', conversationRoutes(services));
  app.route('/api/v2/memory', memoryRoutes(services));

  app.notFound((c) => c.json(errorBody(new AppError('NOT_FOUND', `No route for ${c.req.method} ${c.req.path}`)), 404));
  app.onError((err, c) => {
    const error = toAppError(err);
    const log = c.get('logger') ?? logger;
    if (error.code === 'INTERNAL') log.error({ err }, 'unhandled error');
    else log.debug({ code: error.code, msg: error.message }, 'request refused');
    const rateLimit = error.details?.rateLimit as RateLimitDecision | undefined;
    if (rateLimit) setRateLimitHeaders(c, rateLimit);
    const retryAfter = error.details?.retryAfterSeconds;
    if (!rateLimit && typeof retryAfter === 'number') setRetryAfter(c, retryAfter);
    return c.json(errorBody(error), error.status as 400);
  });
  return app;
}

function corsMiddleware(allowed: OriginPolicy) {
  return cors({
    // With credentials the browser refuses "*", so a "*" setting reflects the caller's origin.
    // Hono asks even when there is no Origin (curl, servers): no CORS headers then, and nothing to log.
    origin: (origin, c) => (origin !== '' && allowed(origin, c.req.header('host')) ? origin : null),
    credentials: true,
    allowHeaders: ['Content-Type', 'Authorization', 'X-Request-Id'],
    exposeHeaders: ['X-Request-Id', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'Retry-After'],
    maxAge: 600,
  });
}
