import type { Context, MiddlewareHandler } from 'hono';
import { anonymousCookieLine } from '../auth/anonymous-sessions.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { requestHeader, setHeader } from './http-helpers.js';

/**
 * Resolves the caller from the Bearer header or the `token` cookie (and, for browsers
 * opening /v1/realtime, a `token` query parameter or the `openai-insecure-api-key.<token>`
 * subprotocol). A bad token is a 401, never anonymous.
 * An anonymous caller without the anonymous-session cookie gets one, so its next requests
 * are told apart from everyone else's on the same IP.
 */
export function authenticate(
  services: Services,
  options: { requireUser?: boolean; queryToken?: boolean; subprotocolToken?: boolean; refuseApiKeys?: boolean } = {},
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = await services.auth.authenticate(
      {
        authorization: requestHeader(c, 'authorization'),
        cookie: requestHeader(c, 'cookie'),
        payloadToken: (options.queryToken ? c.req.query('token') : undefined) ?? (options.subprotocolToken ? subprotocolToken(requestHeader(c, 'sec-websocket-protocol')) : undefined),
      },
      c.get('clientIp'),
    );
    if (options.requireUser && principal.userId === null) throw new AppError('UNAUTHORIZED', 'Sign in to use this route');
    // Account management is for the account's own sign-in, not for a tool's key.
    if (options.refuseApiKeys && principal.apiKey) throw new AppError('UNAUTHORIZED', 'An API key cannot manage the account; sign in with your account', { status: 403 });
    if (principal.userId === null && principal.anonymousId === null && !options.requireUser) giveAnonymousCookie(c, services);
    c.set('principal', principal);
    await next();
  };
}

/** Made when the head is: this request is still served as its IP's; the cookie tells its next ones apart. */
function giveAnonymousCookie(c: Context<AppEnv>, services: Services): void {
  const { cookieSecure, cookieSameSite } = services.config.auth;
  setHeader(c, 'Set-Cookie', () => anonymousCookieLine(services.auth.anonymous.issue().value, { secure: cookieSecure, sameSite: cookieSameSite }), true);
}

/** OpenAI's browser clients cannot set headers on a WebSocket, so they offer `openai-insecure-api-key.<key>` as a subprotocol. */
const INSECURE_KEY_PROTOCOL = 'openai-insecure-api-key.';

export function subprotocolToken(header: string | undefined): string | undefined {
  for (const protocol of header?.split(',') ?? []) {
    const p = protocol.trim();
    if (p.startsWith(INSECURE_KEY_PROTOCOL) && p.length > INSECURE_KEY_PROTOCOL.length) return p.slice(INSECURE_KEY_PROTOCOL.length);
  }
  return undefined;
}
