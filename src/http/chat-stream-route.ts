import type { Context } from 'hono';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { findResumable, hasEventsToSend } from '../chat/resume-target.js';
import { parseEventId } from '../chat/turn-streams.js';
import { AppError } from '../errors.js';
import type { Config } from '../config.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { readJsonBody, requestHeader, setRateLimitHeaders } from './http-helpers.js';
import { respondWithReplay, respondWithTurn, sse, type StreamFrames } from './turn-stream.js';

/** POST /api/v2/ai/chat/stream (PROTOCOLS.md section 1, seed 002). */
export function chatStreamSchema(config: Config) {
  return z.object({ ...chatFieldsSchema(config.chat.maxMessageChars), sessionId: conversationIdSchema.optional() });
}

export function chatStreamHandler(services: Services) {
  const schema = chatStreamSchema(services.config);

  return async (c: Context<AppEnv>) => {
    const body = await readJsonBody(c, services.config.chat);
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const req = parsed.data;

    // A re-POST with Last-Event-ID (a client retrying the request it lost) resumes that turn
    // instead of starting another. With nothing left to send (the turn ended and the client has
    // its end, or that turn is no longer kept while the conversation has a newer one) it is
    // answered as the GET resume is, 204: the retry of a message already answered, which must
    // not become a second turn (a library that re-POSTs whenever a stream closes would start
    // one after another), nor an empty stream with no end.
    const last = parseEventId(requestHeader(c, 'last-event-id'));
    if (last && req.sessionId) {
      const target = await findResumable(services.streams, services.store, c.get('principal'), req.sessionId, last);
      if (target) {
        if (!(await hasEventsToSend(services.streams!, target))) return c.body(null, 204);
        return respondWithReplay(c, services.streams!, target, sseFrames(req.sessionId));
      }
    }

    const turn = await services.pipeline.prepare({
      principal: c.get('principal'),
      message: req.message,
      conversationId: req.sessionId,
      model: req.model,
      maxTokens: req.maxTokens,
      temperature: req.temperature,
      protocol: 'sse',
      arrivedInPass: c.get('arrivedInPass'),
    });
    setRateLimitHeaders(c, turn.rateLimit);
    return respondWithTurn(c, turn, sseFrames(turn.conversation.id));
  };
}

/**
 * GET /api/v2/ai/chat/stream?sessionId= (PROTOCOLS.md 3b): with Last-Event-ID, the events
 * after it, else the latest turn from its start; then the rest live. 204 when there is nothing
 * to send: no turn kept, or it has ended and the client has its last event (which also tells
 * an EventSource to stop reconnecting).
 */
export function chatResumeHandler(services: Services) {
  return async (c: Context<AppEnv>) => {
    const sessionId = conversationIdSchema.safeParse(c.req.query('sessionId'));
    if (!sessionId.success) throw new AppError('BAD_REQUEST', `sessionId: ${describeIssues(sessionId.error)}`);
    const last = parseEventId(requestHeader(c, 'last-event-id') ?? c.req.query('lastEventId'));
    const target = await findResumable(services.streams, services.store, c.get('principal'), sessionId.data, last);
    if (!target || !(await hasEventsToSend(services.streams!, target))) return c.body(null, 204);
    return respondWithReplay(c, services.streams!, target, sseFrames(sessionId.data));
  };
}

/** The seed 002 wire format: `data: {...}\n\n` events, the content one hand-built (the per-token path). */
function sseFrames(sessionId: string): StreamFrames {
  const prefix = `data: {"content":`;
  const suffix = `,"sessionId":${JSON.stringify(sessionId)}}\n\n`;
  return {
    ids: true,
    content: (text) => prefix + JSON.stringify(text) + suffix,
    end: (e) => sse({ done: true, sessionId, messageId: e.messageId, finishReason: e.finishReason, usage: e.usage }),
    error: (error) => sse({ error: error.message, code: error.code, sessionId }),
  };
}
