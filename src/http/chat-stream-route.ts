import type { Context } from 'hono';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { AppError } from '../errors.js';
import type { Config } from '../config.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { readJsonBody, setRateLimitHeaders } from './http-helpers.js';
import { respondWithTurn, sse, type StreamFrames } from './turn-stream.js';

/** POST /api/v2/ai/chat/stream (PROTOCOLS.md section 1, seed 002). */
export function chatStreamSchema(config: Config) {
  return z.object({ ...chatFieldsSchema(config.chat.maxMessageChars), sessionId: conversationIdSchema.optional() });
}

export function chatStreamHandler(services: Services) {
  const schema = chatStreamSchema(services.config);

  return async (c: Context<AppEnv>) => {
    const body = await readJsonBody(c, services.config.chat.maxBodyBytes);
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new AppError('BAD_REQUEST', describeIssues(parsed.error));
    const req = parsed.data;

    const turn = await services.pipeline.prepare({
      principal: c.get('principal'),
      message: req.message,
      conversationId: req.sessionId,
      model: req.model,
      maxTokens: req.maxTokens,
      temperature: req.temperature,
    });
    setRateLimitHeaders(c, turn.rateLimit);
    return respondWithTurn(c, turn, sseFrames(turn.conversation.id));
  };
}

/** The seed 002 wire format: `data: {...}\n\n` events, the content one hand-built (the per-token path). */
function sseFrames(sessionId: string): StreamFrames {
  const prefix = `data: {"content":`;
  const suffix = `,"sessionId":${JSON.stringify(sessionId)}}\n\n`;
  return {
    content: (text) => prefix + JSON.stringify(text) + suffix,
    end: (e) => sse({ done: true, sessionId, messageId: e.messageId, finishReason: e.finishReason, usage: e.usage }),
    error: (error) => sse({ error: error.message, code: error.code, sessionId }),
  };
}
