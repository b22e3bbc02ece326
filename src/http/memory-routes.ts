import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { describeIssues } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import { InvalidCursorError } from '../memory/memory-store-error.js';
import type { LongTermMemory } from '../memory/long-term-memory.js';
import type { MemoryRecord } from '../memory/memory-store.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { authenticate } from './authenticate.js';
import { pageQuery } from './conversation-routes.js';
import { readJsonBody } from './http-helpers.js';

export const settingsSchema = z.object({ enabled: z.boolean({ error: 'must be true or false' }) });
const memoryId = z.string().min(1).max(128);

const memoryJson = (m: MemoryRecord) => ({
  id: m.id,
  conversationId: m.conversationId,
  messageId: m.messageId,
  role: m.role,
  text: m.text,
  createdAt: new Date(m.createdAt).toISOString(),
});

/**
 * /api/v2/memory: the signed-in user's long-term memories. List (newest first, paginated),
 * forget one, erase all, and opt out or back in. Another user's memory id is NOT_FOUND.
 */
export function memoryRoutes(services: Services): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.use(authenticate(services, { requireUser: true }));

  const memory = (): LongTermMemory => {
    if (!services.memory) {
      // Switched off by the operator, or not available where this runs (Workers has no memory store).
      const why = services.config.memory.enabled ? 'is not available on this deployment (it needs the Node entry)' : 'is switched off on this server (MEMORY_ENABLED=false)';
      throw new AppError('NOT_FOUND', `Long-term memory ${why}`);
    }
    return services.memory;
  };
  const userId = (c: Context<AppEnv>) => c.get('principal').userId!;
  /** Runs a store operation; a store that cannot answer is a 503 with a reason, not a stack. */
  const guarded = async <T>(c: Context<AppEnv>, work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (err instanceof InvalidCursorError) throw new AppError('BAD_REQUEST', err.message);
      c.get('logger').error({ err }, 'long-term memory operation failed');
      throw new AppError('INTERNAL', 'Long-term memory is unavailable right now; try again shortly', { status: 503, details: { retryAfterSeconds: 30 } });
    }
  };

  routes.get('/', async (c) => {
    const parsed = pageQuery.safeParse({ limit: c.req.query('limit'), cursor: c.req.query('cursor') });
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const m = memory();
    const [page, enabled] = await guarded(c, () => Promise.all([m.list(userId(c), parsed.data), m.isEnabledFor(userId(c))]));
    return c.json({ memories: page.items.map(memoryJson), nextCursor: page.nextCursor, enabled });
  });

  routes.get('/settings', async (c) => c.json({ enabled: await guarded(c, () => memory().isEnabledFor(userId(c))) }));

  routes.put('/settings', async (c) => {
    const parsed = settingsSchema.safeParse(await readJsonBody(c, services.config.chat));
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    await guarded(c, () => memory().setEnabled(userId(c), parsed.data.enabled));
    return c.json({ enabled: parsed.data.enabled });
  });

  routes.delete('/:id', async (c) => {
    const id = memoryId.safeParse(c.req.param('id'));
    const found = id.success && (await guarded(c, () => memory().forget(userId(c), id.data)));
    if (!found) throw new AppError('NOT_FOUND', 'Memory not found');
    return c.json({ deleted: true, id: id.data });
  });

  routes.delete('/', async (c) => {
    await guarded(c, () => memory().erase(userId(c)));
    return c.json({ deleted: true });
  });

  return routes;
}
