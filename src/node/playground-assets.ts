import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Hono } from 'hono';
import type { AppEnv } from '../http/app-env.js';
import { requestHeader, setHeader } from '../http/http-helpers.js';

/** One file of the built playground, read once at start-up. */
export interface PlaygroundAsset {
  readonly body: Uint8Array;
  readonly type: string;
  readonly etag: string;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
};

/**
 * The playground's own policy: scripts, styles, workers and the audio worklet only from this
 * origin (the Socket.IO client included, from /socket.io/), fetches and sockets to it, no
 * inline script, no framing by others.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "media-src 'self' blob:",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'self'",
].join('; ');

/** The prefix every playground file but index.html is served under. */
export const PLAYGROUND_PREFIX = '/playground/';

/**
 * Where `npm run build` puts the playground: `dist/playground/`, beside `dist/node/` when this
 * runs compiled, and the same folder when it runs from `src/` (tsx, tests).
 */
export function findPlaygroundDir(): string | undefined {
  for (const candidate of ['../playground/', '../../dist/playground/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return undefined;
}

/**
 * Reads the built playground into memory, by file name: what is served is exactly this map,
 * so no request path ever reaches the file system. Only known content types are kept.
 */
export function loadPlaygroundAssets(dir: string): Map<string, PlaygroundAsset> {
  const assets = new Map<string, PlaygroundAsset>();
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (!type) continue;
    const body = readAsset(join(dir, name));
    if (!body) continue;
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    assets.set(name, { body, type, etag });
  }
  return assets;
}

/** A file's bytes; undefined for a folder or a file that went away (a rebuild swapping the folder). */
function readAsset(path: string): Uint8Array | undefined {
  try {
    return statSync(path).isFile() ? new Uint8Array(readFileSync(path)) : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * `GET /` (index.html) and `GET /playground/:file`. Caches may keep a copy but revalidate it
 * (`no-cache` with an ETag: a rebuilt playground is seen at once, an unchanged one costs a 304).
 * The platform middleware's security headers apply as on every route.
 */
export function addPlaygroundRoutes(app: Hono<AppEnv>, assets: ReadonlyMap<string, PlaygroundAsset>): void {
  const serve = (c: Context<AppEnv>, name: string) => {
    const asset = assets.get(name);
    if (!asset) return c.notFound();
    setHeader(c, 'Content-Security-Policy', CONTENT_SECURITY_POLICY);
    setHeader(c, 'Cache-Control', 'no-cache');
    setHeader(c, 'ETag', asset.etag);
    if (requestHeader(c, 'if-none-match')?.split(',').some((tag) => tag.trim() === asset.etag)) return c.body(null, 304);
    setHeader(c, 'Content-Type', asset.type);
    return c.body(asset.body as Uint8Array<ArrayBuffer>, 200);
  };
  app.get('/', (c) => serve(c, 'index.html'));
  app.get(`${PLAYGROUND_PREFIX}:file`, (c) => serve(c, c.req.param('file')));
}
