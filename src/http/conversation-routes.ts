import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { conversationIdSchema, describeIssues, labelSchema } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { decodeCursor, type Conversation, type StoredMessage } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { readJsonBody } from './http-helpers.js';
import { authenticate } from './authenticate.js';
import { stopConversationTurn } from '../chat/stop-turn.js';

export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(300).optional(),
});

/** A page of what the conversation store keeps: its cursors (encodeCursor) only, so a page request with another is refused, not answered with page one. */
export const storePageQuery = pageQuery.extend({
  cursor: z
    .string()
    .max(300)
    .refine((c) => decodeCursor(c) !== undefined, 'not a cursor this server gave out')
    .optional(),
});

export const renameSchema = z.object({ title: labelSchema(200) });

const conversationJson = (c: Conversation) => ({
  id: c.id,
  title: c.title,
  createdAt: new Date(c.createdAt).toISOString(),
  updatedAt: new Date(c.updatedAt).toISOString(),
});

const messageJson = (m: StoredMessage) => ({
  id: m.id,
  role: m.role,
  content: m.content,
  createdAt: new Date(m.createdAt).toISOString(),
  ...(m.model ? { model: m.model } : {}),
  ...(m.finishReason ? { finishReason: m.finishReason } : {}),
  ...(m.usage ? { usage: m.usage } : {}),
});

/** /api/v2/conversations: the caller's own conversations only; anything else is NOT_FOUND. */
export function conversationRoutes(services: Services): Hono<AppEnv> {
  const { store } = services;
  const routes = new Hono<AppEnv>();
  routes.use(authenticate(services, { requireUser: true }));

  const page = (c: Context<AppEnv>) => {
    const parsed = storePageQuery.safeParse({ limit: c.req.query('limit'), cursor: c.req.query('cursor') });
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    return parsed.data;
  };

  /** The caller's conversation with this id; NOT_FOUND otherwise, never revealing that another owner has one. */
  const owned = async (c: Context<AppEnv>) => {
    const id = conversationIdSchema.safeParse(c.req.param('id'));
    const conversation = id.success ? await store.getConversation(c.get('principal').userId!, id.data) : undefined;
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    return conversation;
  };

  routes.get('/', async (c) => {
    const { limit, cursor } = page(c);
    const result = await store.listConversations(c.get('principal').userId!, { limit, before: cursor });
    return c.json({ conversations: result.items.map(conversationJson), nextCursor: result.nextCursor });
  });

  routes.get('/:id/messages', async (c) => {
    const conversation = await owned(c);
    const { limit, cursor } = page(c);
    const result = await store.listMessages(conversation.key, { limit, after: cursor });
    return c.json({ conversation: conversationJson(conversation), messages: result.items.map(messageJson), nextCursor: result.nextCursor });
  });

  routes.patch('/:id', async (c) => {
    const conversation = await owned(c);
    const parsed = renameSchema.safeParse(await readJsonBody(c, services.config.chat));
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const renamed = await store.renameConversation(conversation.ownerId, conversation.id, parsed.data.title);
    if (!renamed) throw new AppError('NOT_FOUND', 'Conversation not found');
    return c.json({ conversation: conversationJson(renamed) });
  });

  /** Stops the conversation's running turn on whichever node runs it (partial reply stored as `stopped`). */
  routes.post('/:id/stop', async (c) => {
    const conversation = await owned(c);
    const stopped = await stopConversationTurn(services, conversation.key);
    return c.json({ stopped, id: conversation.id });
  });

  routes.delete('/:id', async (c) => {
    const conversation = await owned(c);
    // A reply still streaming ends first (its client is told, with a code), then nothing is left to write.
    const stopped = await services.turns.abortConversation(conversation.key, 'deleted');
    // Its memories go first: if the memory store cannot answer, nothing is deleted and the client
    // may retry. Memory switched off still deletes what was remembered while it was on.
    const memories = services.memoryDeletions;
    if (memories) await forgetOrRefuse(() => memories.forgetConversation(conversation.ownerId, conversation.id), c);
    const deleted = await store.deleteConversation(conversation.ownerId, conversation.id);
    // Once more now that its queued memory writes are gone with it: a write under way (the
    // stopped turn's end wakes the writer) may have stored a memory after the first pass.
    if (services.memory) {
      await services.memory
        .forgetConversation(conversation.ownerId, conversation.id)
        .catch((err: unknown) => c.get('logger').error({ err, conversationId: conversation.id }, 'conversation deleted; its memories could not be checked again'));
    }
    c.get('logger').info({ conversationId: conversation.id, messages: deleted.length, stoppedTurns: stopped }, 'conversation deleted');
    return c.json({ deleted: true, id: conversation.id, messages: deleted.length });
  });

  return routes;
}

async function forgetOrRefuse(forget: () => Promise<void>, c: Context<AppEnv>): Promise<void> {
  try {
    await forget();
  } catch (err) {
    c.get('logger').error({ err }, 'could not delete the conversation\'s memories; the conversation was kept');
    throw new AppError('INTERNAL', 'Long-term memory is unavailable, so the conversation was not deleted; try again shortly', {
      status: 503,
      details: { retryAfterSeconds: 30 },
    });
  }
}
