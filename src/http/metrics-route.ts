import { Hono, type Context } from 'hono';
import { AppError, errorBody, toAppError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import { requestHeader } from './http-helpers.js';

/** What serves the exposition text (the Prometheus implementation of Metrics). */
export interface MetricsExposition {
  render(): Promise<string>;
  /** `text/plain; version=0.0.4; charset=utf-8` */
  readonly contentType: string;
}

export interface MetricsRouteOptions {
  exposition: MetricsExposition;
  /** METRICS_TOKEN: when set, scrapes must send `Authorization: Bearer <token>`. */
  token: string | undefined;
  /** Where a refused scrape is counted. */
  metrics: Pick<Metrics, 'error'>;
}

/**
 * GET /metrics. It takes no cookie, token or rate limit of the gateway's own: a scraper is not
 * a client, and is never given an anonymous session.
 */
export function metricsHandler(options: MetricsRouteOptions) {
  const expected = options.token === undefined ? undefined : digest(options.token);
  // Scrapes that arrive while one is being rendered share its text: a burst of them costs one
  // render (in a cluster, one round of questions to every worker), not one each.
  let rendering: Promise<string> | undefined;
  const render = () => (rendering ??= options.exposition.render().finally(() => (rendering = undefined)));
  return async (c: Context) => {
    if (expected && !(await bearerMatches(requestHeader(c, 'authorization'), await expected))) {
      const error = new AppError('UNAUTHORIZED', 'GET /metrics needs the metrics token: send Authorization: Bearer <METRICS_TOKEN>');
      options.metrics.error(error, 'http');
      return c.json(errorBody(error), 401, { 'WWW-Authenticate': 'Bearer realm="metrics"' });
    }
    const text = await render();
    return c.body(text, 200, { 'Content-Type': options.exposition.contentType, 'Cache-Control': 'no-store' });
  };
}

/** The METRICS_PORT listener's app: GET /metrics and coded errors, nothing else. */
export function createMetricsApp(options: MetricsRouteOptions): Hono {
  const app = new Hono();
  app.get('/metrics', metricsHandler(options));
  app.notFound((c) => c.json(errorBody(new AppError('NOT_FOUND', `No route for ${c.req.method} ${c.req.path}`)), 404));
  app.onError((err, c) => {
    const error = toAppError(err);
    return c.json(errorBody(error), error.status as 500);
  });
  return app;
}

/** Compares digests, so the comparison takes as long whatever the given token is. */
async function bearerMatches(header: string | undefined, expected: Uint8Array): Promise<boolean> {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return false;
  const given = await digest(match[1]!);
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected[i]! ^ given[i]!;
  return diff === 0;
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}
