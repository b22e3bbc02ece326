// @ts-check
/** Module hooks for register.mjs: reports the npm package of every module resolved in node_modules. */

/** @type {import('node:worker_threads').MessagePort | undefined} */
let port;

/** @param {{ port: import('node:worker_threads').MessagePort }} data */
export function initialize(data) {
  port = data.port;
}

/**
 * @param {string} specifier
 * @param {unknown} context
 * @param {(specifier: string, context: unknown) => Promise<{ url: string }>} next
 */
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(result.url);
  if (m) port?.postMessage(m[1]);
  return result;
}
