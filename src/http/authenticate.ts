import type { Context, MiddlewareHandler } from 'hono';
import { setCookie } from 'hono/cookie';
import { ANONYMOUS_COOKIE, ANONYMOUS_COOKIE_MAX_AGE } from '../auth/anonymous-sessions.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';

/**
 * Resolves the caller from the Bearer header or the `token` cookie (and, for browsers
 * opening /v1/realtime, a `token` query parameter). A bad token is a 401, never anonymous.
 * An anonymous caller without the anonymous-session cookie gets one, so its next requests
 * are told apart from everyone else's on the same IP.
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
    if (principal.userId === null && principal.anonymousId === null && !options.requireUser) await giveAnonymousCookie(c, services);
    c.set('principal', principal);
    await next();
  };
}

async function giveAnonymousCookie(c: Context<AppEnv>, services: Services): Promise<void> {
  const { value } = await services.auth.anonymous.issue();
  setCookie(c, ANONYMOUS_COOKIE, value, {
    httpOnly: true,
    secure: services.config.auth.cookieSecure,
    sameSite: services.config.auth.cookieSameSite,
    path: '/',
    maxAge: ANONYMOUS_COOKIE_MAX_AGE,
  });
}
