import type { MiddlewareHandler } from 'hono';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';

/**
 * Resolves the caller from the Bearer header or the `token` cookie (and, for browsers
 * opening /v1/realtime, a `token` query parameter). A bad token is a 401, never anonymous.
 */
export function authenticate(services: Services, options: { requireUser?: boolean; queryToken?: boolean } = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = await services.auth.authenticate(
      {
        authorization: c.req.header('authorization'),
        cookie: c.req.header('cookie'),
        payloadToken: options.queryToken ? c.req.query('token') : undefined,
      },
      c.get('clientIp'),
    );
    if (options.requireUser && principal.userId === null) throw new AppError('UNAUTHORIZED', 'Sign in to use this route');
    c.set('principal', principal);
    await next();
  };
}
