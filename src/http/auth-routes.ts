import { Hono, type Context } from 'hono';
import { deleteCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import { decoyHash, hashPassword, verifyPassword } from '../auth/password.js';
import { TOKEN_COOKIE } from '../auth/token-sources.js';
import { describeIssues } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import { authLimit } from '../ratelimit/rate-limiter.js';
import type { Services } from '../services.js';
import { DuplicateEmailError, type User } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { authenticate } from './authenticate.js';
import { readJsonBody } from './http-helpers.js';

const email = z.string().trim().toLowerCase().pipe(z.email('must be a valid email address')).pipe(z.string().max(254));
const password = z.string().min(8, 'must be at least 8 characters').max(256, 'must be at most 256 characters');
const registerSchema = z.object({ email, password, name: z.string().trim().min(1).max(100).optional() });
const loginSchema = z.object({ email, password: z.string().min(1).max(256) });

const LOGIN_FAILED = 'Invalid email or password';

export function publicUser(u: User) {
  return { id: u.id, email: u.email, name: u.name, createdAt: new Date(u.createdAt).toISOString() };
}

/** /api/v2/auth: register, login, logout, me. */
export function authRoutes(services: Services): Hono<AppEnv> {
  const { store, tokens, config } = services;
  const routes = new Hono<AppEnv>();
  void decoyHash(); // computed ahead, so the first unknown-email login costs what every other does

  const parse = async <T>(c: Context<AppEnv>, schema: z.ZodType<T>): Promise<T> => {
    const parsed = schema.safeParse(await readJsonBody(c, config.chat.maxBodyBytes));
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    return parsed.data;
  };

  // Slows password guessing and account spraying; counted per client IP.
  const throttle = async (c: Context<AppEnv>) => {
    const { key, limit } = authLimit(c.get('clientIp'), config.rateLimit);
    const decision = await services.limiter.consume(key, limit);
    // The error handler sets Retry-After and RateLimit-* from the details.
    if (!decision.allowed) {
      throw new AppError('RATE_LIMIT', 'Too many sign-in attempts; try again later', { details: { rateLimit: decision } });
    }
  };

  const signIn = async (c: Context<AppEnv>, user: User, status: 200 | 201) => {
    const token = await tokens.issue(user);
    setCookie(c, TOKEN_COOKIE, token, {
      httpOnly: true,
      secure: config.auth.cookieSecure,
      sameSite: config.auth.cookieSameSite,
      path: '/',
      maxAge: tokens.ttlSeconds,
    });
    c.header('Cache-Control', 'no-store');
    return c.json({ user: publicUser(user), token }, status);
  };

  routes.post('/register', async (c) => {
    await throttle(c);
    const input = await parse(c, registerSchema);
    try {
      const user = await store.createUser({ email: input.email, name: input.name ?? null, passwordHash: await hashPassword(input.password) });
      c.get('logger').info({ userId: user.id }, 'user registered');
      return await signIn(c, user, 201);
    } catch (err) {
      if (err instanceof DuplicateEmailError) throw new AppError('BAD_REQUEST', 'An account with this email already exists', { status: 409 });
      throw err;
    }
  });

  routes.post('/login', async (c) => {
    await throttle(c);
    const input = await parse(c, loginSchema);
    const user = await store.findUserByEmail(input.email);
    // Unknown email and wrong password cost the same and answer the same.
    const ok = await verifyPassword(input.password, user?.passwordHash ?? (await decoyHash()));
    if (!user || !ok) throw new AppError('UNAUTHORIZED', LOGIN_FAILED);
    return signIn(c, user, 200);
  });

  routes.post('/logout', (c) => {
    deleteCookie(c, TOKEN_COOKIE, { path: '/', secure: config.auth.cookieSecure, sameSite: config.auth.cookieSameSite, httpOnly: true });
    return c.json({ ok: true });
  });

  routes.get('/me', authenticate(services, { requireUser: true }), async (c) => {
    const { userId } = c.get('principal');
    const user = userId ? await store.findUserById(userId) : undefined;
    if (user) return c.json({ user: publicUser(user) });
    // A valid token from the external identity provider names a user this server never stored.
    if (userId?.startsWith('ext:')) return c.json({ user: { id: userId, email: null, name: null, createdAt: null } });
    throw new AppError('UNAUTHORIZED', 'This account no longer exists');
  });

  return routes;
}
