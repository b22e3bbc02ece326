import { withBindings } from '../logger.js';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { clientIp } from '../chat/principal.js';
import { AppError, errorBody } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { apiKeyRoutes } from './api-key-routes.js';
import { authRoutes } from './auth-routes.js';
import { authenticate } from './authenticate.js';
import { inArrivalOrder } from './arrival-order.js';
import { chatResumeHandler, chatStreamHandler } from './chat-stream-route.js';
import { conversationRoutes } from './conversation-routes.js';
import { memoryRoutes } from './memory-routes.js';
import { openaiError, openaiRoutes } from './openai-routes.js';
import { aiSdkRoutes } from './ai-sdk-routes.js';
import { realtimeUsageRoutes } from './realtime-usage-routes.js';
import { addDocsRoutes } from './docs-page.js';
import { openApiDocument, type RouteDoc } from './openapi.js';
import { applyHead, errorResponder, requestHeader, setHeader } from './http-helpers.js';
import { isAlreadySent } from './node-response.js';
import { readiness } from './readiness.js';

export interface AppOptions {
  /** The caller's IP as the runtime sees the connection (Node socket, Workers header). */
  connectionIp(c: Context): string;
  /** Routes the runtime entry adds beyond this app's (e.g. /v1/realtime, /metrics), for /openapi.json. */
  routeDocs?: readonly RouteDoc[] | undefined;
}

/**
 * The Hono app: web-standard only, so the same code serves Node and Workers.
 */
export function createApp(services: Services, options: AppOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use(platform(services, options));
  app.use(refuseCrossSiteWrites(services));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const report = await readiness(services);
    if (report.status === 'unavailable') c.get('logger').warn({ checks: report.checks }, 'not ready');
    return c.json(report, report.status === 'ready' || report.status === 'degraded' ? 200 : 503);
  });

  app.post('/api/v2/ai/chat/stream', inArrivalOrder(services), authenticate(services), chatStreamHandler(services));
  app.get('/api/v2/ai/chat/stream', authenticate(services), chatResumeHandler(services));
  app.route('/api/v2/auth', authRoutes(services));
  app.route('/api/v2/conversations', conversationRoutes(services));
  app.route('/api/v2/memory', memoryRoutes(services));
  app.route('/api/v2/keys', apiKeyRoutes(services));
  app.route('/api/v2/realtime', realtimeUsageRoutes(services));
  app.route('/v1', openaiRoutes(services));
  app.route('/api/chat', aiSdkRoutes(services));
  let document: Record<string, unknown> | undefined;
  app.get('/openapi.json', (c) => c.json((document ??= openApiDocument(services.config, options.routeDocs))));
  // Swagger UI's files (jsDelivr's copy of one npm release, or DOCS_ASSETS_URL) run in this
  // origin, next to the sign-in cookie: only if they are exactly that release's (SRI).
  addDocsRoutes(app, services.config.docsAssetsUrl, 'AI chat gateway API');

  app.notFound((c) => {
    c.set('unmatched', true);
    const error = new AppError('NOT_FOUND', `No route for ${c.req.method} ${c.req.path}`);
    services.metrics.error(error, 'http');
    // Under /v1 in OpenAI's shape, which OpenAI's SDKs read (`client.models.retrieve()` of a route this gateway lacks).
    return c.json(c.req.path.startsWith('/v1/') ? openaiError(error) : errorBody(error), 404);
  });
  const gatewayErrors = errorResponder(services, errorBody);
  // /v1 routes added to this app (the Node entry's /v1/realtime) answer in OpenAI's shape too.
  const openaiErrors = errorResponder(services, openaiError);
  app.onError((err, c) => (c.req.path.startsWith('/v1/') ? openaiErrors : gatewayErrors)(err, c));
  return app;
}


/**
 * A browser sends some cross-origin requests without asking first (a form's POST, a `no-cors`
 * fetch), with the user's cookies when their SameSite lets it (`COOKIE_SAMESITE=None`, or a
 * sibling site under `Lax`): the response is hidden from the page, but the request runs. A
 * request that changes something (any method but GET, HEAD, OPTIONS) from an origin the
 * origin rule does not allow is refused before its route runs (403), as the WebSocket upgrades
 * are. A request the browser marks `Sec-Fetch-Site: same-origin` is the gateway's own page (a
 * proxy in front may have changed its Host); clients other than browsers send no Origin.
 */
function refuseCrossSiteWrites(services: Services): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const method = c.req.method;
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
      const origin = requestHeader(c, 'origin');
      if (origin !== undefined && origin !== '' && requestHeader(c, 'sec-fetch-site') !== 'same-origin' && !services.origins(origin, requestHeader(c, 'host'), { quiet: true })) {
        throw new AppError('UNAUTHORIZED', 'Origin not allowed', { status: 403 });
      }
    }
    await next();
  };
}

/** Hono's secureHeaders() defaults. */
const SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Origin-Agent-Cluster', '?1'],
  ['Referrer-Policy', 'no-referrer'],
  ['Strict-Transport-Security', 'max-age=15552000; includeSubDomains'],
  ['X-Content-Type-Options', 'nosniff'],
  ['X-DNS-Prefetch-Control', 'off'],
  ['X-Download-Options', 'noopen'],
  ['X-Frame-Options', 'SAMEORIGIN'],
  ['X-Permitted-Cross-Domain-Policies', 'none'],
  ['X-XSS-Protection', '0'],
];
const CORS_ALLOW_METHODS = 'GET,HEAD,PUT,POST,DELETE,PATCH';
/** Allowed request headers when a preflight names none (or names them unreadably). */
const CORS_ALLOW_HEADERS = 'Content-Type,Authorization,X-Request-Id,X-Conversation-Id';
/**
 * A preflight's Access-Control-Request-Headers that is echoed: header names (RFC 9110 tokens),
 * comma-separated, bounded. Browser SDKs send headers of their own (the `openai` package: eight
 * `X-Stainless-*`, `OpenAI-Organization`, ...; apps: their `defaultHeaders`), so, as the `cors`
 * package does (and so Socket.IO's polling), the headers asked for are allowed. Only an allowed
 * origin gets `Access-Control-Allow-Origin`; for any other the browser refuses the request anyway.
 */
const REQUESTED_HEADERS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+){0,63}$/;
const MAX_REQUESTED_HEADERS_CHARS = 2_048;
const CORS_EXPOSE_HEADERS = 'X-Request-Id,RateLimit-Limit,RateLimit-Remaining,RateLimit-Reset,Retry-After';
const CORS_MAX_AGE = '600';
/** What Hono's requestId() accepts from a client; anything else gets a fresh id. */
const CLIENT_REQUEST_ID = /^[\w\-=]{1,255}$/;
/** The route label of requests no route matched, and of CORS preflights (answered before routing). */
const UNMATCHED = 'unmatched';
const PREFLIGHT = 'preflight';
/** Scrapes are not counted among the requests they report. */
const METRICS_ROUTE = '/metrics';

/**
 * The outermost middleware: request id, the request's logger and client address, security
 * headers, CORS (one origin rule, see origins.ts) and the request log line. It does what
 * hono/request-id, hono/secure-headers and hono/cors did here, with the same headers, but sets
 * all of them before the route runs: those set a header after the route, and every header set
 * on a finished response makes Hono copy the whole response, ≈ 100 µs a request on the chat
 * path (bench/profile.ts). A route that writes its own head (SSE on Node) takes the headers
 * recorded by `setHeader`.
 */
function platform(services: Services, options: AppOptions): MiddlewareHandler<AppEnv> {
  const { config, logger, origins, metrics } = services;
  return async (c, next) => {
    c.set('head', []);
    const given = requestHeader(c, 'x-request-id');
    const id = given !== undefined && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID();
    c.set('requestId', id);
    const reqLogger = withBindings(logger, { reqId: id });
    c.set('logger', reqLogger);
    c.set('clientIp', clientIp(options.connectionIp(c), requestHeader(c, 'x-forwarded-for'), config.trustProxy));
    setHeader(c, 'X-Request-Id', id);
    for (const [name, value] of SECURITY_HEADERS) setHeader(c, name, value);

    // CORS: with credentials a browser refuses "*", so an allowed origin is echoed. No Origin
    // (curl, servers) means no CORS headers, and nothing to log.
    const origin = requestHeader(c, 'origin');
    const allowed = origin !== undefined && origin !== '' && origins(origin, requestHeader(c, 'host'));
    setHeader(c, 'Vary', 'Origin', true);
    if (allowed) {
      setHeader(c, 'Access-Control-Allow-Origin', origin);
      setHeader(c, 'Access-Control-Allow-Credentials', 'true');
      setHeader(c, 'Access-Control-Expose-Headers', CORS_EXPOSE_HEADERS);
    }
    if (c.req.method === 'OPTIONS') {
      setHeader(c, 'Access-Control-Max-Age', CORS_MAX_AGE);
      setHeader(c, 'Access-Control-Allow-Methods', CORS_ALLOW_METHODS);
      const requested = requestHeader(c, 'access-control-request-headers')?.trim();
      const echo = requested !== undefined && requested.length <= MAX_REQUESTED_HEADERS_CHARS && REQUESTED_HEADERS.test(requested);
      setHeader(c, 'Access-Control-Allow-Headers', echo ? requested : CORS_ALLOW_HEADERS);
      setHeader(c, 'Vary', 'Access-Control-Request-Headers', true);
      const preflight = c.body(null, 204);
      applyHead(c.get('head'), preflight.headers);
      if (metrics.enabled) metrics.httpRequest('OPTIONS', PREFLIGHT, 204);
      return preflight;
    }

    const started = performance.now();
    await next();
    // A streamed head was written from the same record (node-response.ts); its marker is shared.
    const streamed = isAlreadySent(c.res);
    if (!streamed) {
      applyHead(c.get('head'), c.res.headers);
      // Hono answers HEAD with `new Response(null, <the GET response>)`, and @hono/node-server's
      // Response takes the headers that response was created with, not those set on it since:
      // a HEAD would go out without X-Request-Id, the security headers or CORS. A response made
      // from the final headers keeps them.
      if (c.req.method === 'HEAD') {
        // Headers first: reading another property of node-server's Response (statusText) rebuilds
        // it from the headers it was made with.
        const { headers, status } = c.res;
        c.res = new Response(null, { status, headers });
      }
    }
    // A streamed head went out as 200; reading the marker's status would build a web Response
    // under @hono/node-server (its lightweight Response has no cached status without a body).
    const status = streamed ? 200 : c.res.status;
    if (metrics.enabled) {
      // The pattern of the route that answered (bounded), never the raw path.
      const route = c.get('unmatched') ? UNMATCHED : routePath(c);
      if (route !== METRICS_ROUTE) metrics.httpRequest(c.req.method, route, status);
    }
    if (reqLogger.isLevelEnabled?.('info') === false) return;
    reqLogger.info({ method: c.req.method, path: c.req.path, status, ms: +(performance.now() - started).toFixed(2) }, 'request');
  };
}
