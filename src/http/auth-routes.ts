import { Hono, type Context } from 'hono';
import { deleteCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import { TOKEN_COOKIE } from '../auth/token-sources.js';
import { describeIssues, labelSchema } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { User } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { authenticate } from './authenticate.js';
import { readJsonBody, requestHeader } from './http-helpers.js';

const email = z.string().trim().toLowerCase().pipe(z.email('must be a valid email address')).pipe(z.string().max(254));
const newPassword = z.string().min(8, 'must be at least 8 characters').max(256, 'must be at most 256 characters');
const givenPassword = z.string().min(1, 'is required').max(256);
export const registerSchema = z.object({ email, password: newPassword, name: labelSchema(100).optional() });
export const loginSchema = z.object({ email, password: givenPassword });
export const passwordChangeSchema = z.object({ currentPassword: givenPassword, newPassword });
export const confirmSchema = z.object({ password: givenPassword });

export function publicUser(u: User) {
  return { id: u.id, email: u.email, name: u.name, createdAt: new Date(u.createdAt).toISOString() };
}

/** /api/v2/auth: register, login, logout (this session or everywhere), password change, me, account deletion. */
export function authRoutes(services: Services): Hono<AppEnv> {
  const { store, tokens, config, accounts } = services;
  const routes = new Hono<AppEnv>();
  accounts.warmUp();
  const signedIn = authenticate(services, { requireUser: true });
  const accountOwner = authenticate(services, { requireUser: true, refuseApiKeys: true });

  const parse = async <T>(c: Context<AppEnv>, schema: z.ZodType<T>): Promise<T> => {
    const parsed = schema.safeParse(await readJsonBody(c, config.chat));
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    return parsed.data;
  };

  const cookieOptions = { path: '/', secure: config.auth.cookieSecure, sameSite: config.auth.cookieSameSite, httpOnly: true } as const;
  const answerSignedIn = (c: Context<AppEnv>, result: { user: User; token: string }, status: 200 | 201) => {
    setCookie(c, TOKEN_COOKIE, result.token, { ...cookieOptions, maxAge: tokens.ttlSeconds });
    c.header('Cache-Control', 'no-store');
    return c.json({ user: publicUser(result.user), token: result.token }, status);
  };
  const signedOut = (c: Context<AppEnv>, body: Record<string, unknown>) => {
    deleteCookie(c, TOKEN_COOKIE, cookieOptions);
    return c.json({ ok: true, ...body });
  };

  routes.post('/register', async (c) => {
    const input = await parse(c, registerSchema);
    return answerSignedIn(c, await accounts.register({ email: input.email, password: input.password, name: input.name ?? null }, c.get('clientIp')), 201);
  });

  routes.post('/login', async (c) => answerSignedIn(c, await accounts.login(await parse(c, loginSchema), c.get('clientIp')), 200));

  // Logging out revokes this token everywhere it is used; a missing or already-bad token just clears the cookie.
  routes.post('/logout', async (c) => {
    const principal = await services.auth
      .authenticate({ authorization: requestHeader(c, 'authorization'), cookie: requestHeader(c, 'cookie') }, c.get('clientIp'))
      .catch(() => undefined);
    if (principal) await accounts.logout(principal);
    return signedOut(c, {});
  });

  routes.post('/logout-all', accountOwner, async (c) => signedOut(c, await accounts.logoutEverywhere(c.get('principal'))));

  routes.post('/password', accountOwner, async (c) => {
    const input = await parse(c, passwordChangeSchema);
    return answerSignedIn(c, await accounts.changePassword(c.get('principal'), input.currentPassword, input.newPassword), 200);
  });

  routes.get('/me', signedIn, async (c) => {
    const { userId } = c.get('principal');
    const user = userId ? await store.findUserById(userId) : undefined;
    if (user) return c.json({ user: publicUser(user) });
    // A valid token from the external identity provider names a user this server never stored.
    if (userId?.startsWith('ext:')) return c.json({ user: { id: userId, email: null, name: null, createdAt: null } });
    throw new AppError('UNAUTHORIZED', 'This account no longer exists');
  });

  routes.delete('/me', accountOwner, async (c) => {
    const { password } = await parse(c, confirmSchema);
    await accounts.deleteAccount(c.get('principal'), password);
    return signedOut(c, { deleted: true });
  });

  return routes;
}
