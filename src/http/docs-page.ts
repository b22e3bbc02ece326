import type { Hono } from 'hono';
import type { AppEnv } from './app-env.js';
import { setHeader } from './http-helpers.js';
import { SWAGGER_UI_FILES } from './swagger-ui-release.js';

/** Starts Swagger UI on the document (a file of this origin: the page has no inline script). */
const INIT_SCRIPT = "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });\n";

const escapeAttribute = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * `GET /docs` (Swagger UI on /openapi.json) and `GET /docs/init.js`. The page's policy lets
 * scripts run only from this origin and from the one file of the release it names (not the
 * rest of the assets' origin: a CDN serves every package there), that file only with its
 * integrity hash; fetches go only to this origin (the document and "Try it out"); only this
 * origin may frame it. Swagger UI styles its elements inline, hence `'unsafe-inline'` for
 * styles (never scripts).
 */
export function addDocsRoutes(app: Hono<AppEnv>, assetsUrl: string, title: string): void {
  const base = assetsUrl.replace(/\/+$/, '');
  const { css, js } = SWAGGER_UI_FILES;
  // A CSP source with a path that does not end in "/" matches that file alone.
  const source = (name: string) => new URL(`${base}/${name}`).href.replace(/[;,\s]/g, encodeURIComponent);
  const policy = [
    "default-src 'none'",
    `script-src 'self' ${source(js.name)}`,
    `style-src ${source(css.name)} 'unsafe-inline'`,
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'self'",
  ].join('; ');
  const page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${escapeAttribute(title)}</title>
    <link rel="stylesheet" href="${escapeAttribute(`${base}/${css.name}`)}" integrity="${css.integrity}" crossorigin="anonymous" />
    <script src="${escapeAttribute(`${base}/${js.name}`)}" integrity="${js.integrity}" crossorigin="anonymous" defer></script>
    <script src="/docs/init.js" defer></script>
  </head>
  <body>
    <div id="swagger-ui"></div>
  </body>
</html>
`;
  app.get('/docs', (c) => {
    setHeader(c, 'Content-Security-Policy', policy);
    setHeader(c, 'Cache-Control', 'no-cache');
    return c.html(page);
  });
  app.get('/docs/init.js', (c) => {
    setHeader(c, 'Content-Type', 'text/javascript; charset=utf-8');
    setHeader(c, 'Cache-Control', 'no-cache');
    return c.body(INIT_SCRIPT, 200);
  });
}
