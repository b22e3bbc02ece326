import { Hono } from 'hono';
import { describeIssues } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { RealtimeSessionRecord } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { authenticate } from './authenticate.js';
import { storePageQuery } from './conversation-routes.js';

const sessionJson = (r: RealtimeSessionRecord) => ({
  id: r.id,
  provider: r.provider,
  startedAt: new Date(r.startedAt).toISOString(),
  endedAt: new Date(r.endedAt).toISOString(),
  durationMs: r.endedAt - r.startedAt,
  endReason: r.endReason,
  usage: r.usage,
});

/** `GET /api/v2/realtime/sessions`: the caller's ended realtime (voice) sessions with their token usage, newest first. */
export function realtimeUsageRoutes(services: Services): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.get('/sessions', authenticate(services, { requireUser: true }), async (c) => {
    const parsed = storePageQuery.safeParse({ limit: c.req.query('limit'), cursor: c.req.query('cursor') });
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const page = await services.store.listRealtimeSessions(c.get('principal').userId!, { limit: parsed.data.limit, before: parsed.data.cursor });
    return c.json({ sessions: page.items.map(sessionJson), nextCursor: page.nextCursor });
  });
  return routes;
}
