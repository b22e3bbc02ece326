import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { PreparedTurn, TurnSink } from '../chat/chat-pipeline.js';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { TurnAbort } from '../chat/turn-abort.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';
import { readJsonBody, setHeader, setRateLimitHeaders } from './http-helpers.js';
import { nodeResponse, writeNodeStream } from './node-response.js';

/** POST /api/v2/ai/chat/stream (PROTOCOLS.md section 1, seed 002). */
export function chatStreamHandler(services: Services) {
  const schema = z.object({ ...chatFieldsSchema(services.config.chat.maxMessageChars), sessionId: conversationIdSchema.optional() });

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
      protocol: 'sse',
    });
    setRateLimitHeaders(c, turn.rateLimit);
    setHeader(c, 'X-Accel-Buffering', 'no');
    const frames = sseFrames(turn.conversation.id);

    // On Node, frames go straight to the socket; elsewhere (Workers) through Hono's streamSSE.
    const outgoing = nodeResponse(c);
    if (outgoing) {
      return writeNodeStream(c, outgoing, SSE_HEADERS, (stream) => {
        const controller = new AbortController();
        stream.onClose(() => controller.abort(new TurnAbort('disconnect')));
        return turn.run(
          {
            start: () => undefined,
            delta: (text) => stream.write(frames.content(text)),
            drained: () => stream.drained(),
            end: (e) => stream.end(e.finishReason === 'aborted' ? undefined : frames.done(e)),
            error: (e) => stream.end(frames.error(e.error)),
          },
          controller,
        );
      });
    }
    return webStream(c, turn, frames);
  };
}

const SSE_HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' };

/** The seed 002 wire format: `data: {...}\n\n` events, the content one hand-built (the per-token path). */
function sseFrames(sessionId: string) {
  const prefix = `data: {"content":`;
  const suffix = `,"sessionId":${JSON.stringify(sessionId)}}\n\n`;
  return {
    content: (text: string) => prefix + JSON.stringify(text) + suffix,
    done: (e: { messageId: string; finishReason: string; usage: unknown }) =>
      sse({ done: true, sessionId, messageId: e.messageId, finishReason: e.finishReason, usage: e.usage }),
    error: (error: AppError) => sse({ error: error.message, code: error.code, sessionId }),
  };
}

/** Workers: Hono's streamSSE over web streams; a write still pending means the client is behind. */
function webStream(c: Context<AppEnv>, turn: PreparedTurn, frames: ReturnType<typeof sseFrames>): Response {
  const response = streamSSE(c, async (stream) => {
    const controller = new AbortController();
    // The runtime cancels the response stream when the client goes away.
    stream.onAbort(() => controller.abort(new TurnAbort('disconnect')));
    let pending = Promise.resolve();
    let outstanding = 0;
    const write = (text: string) => {
      outstanding++;
      pending = stream.write(text).then(() => {
        outstanding--;
      });
      return outstanding < 8;
    };
    const sink: TurnSink = {
      start: () => undefined,
      delta: (text) => write(frames.content(text)),
      drained: () => pending,
      end: (e) => {
        if (e.finishReason !== 'aborted') write(frames.done(e));
      },
      error: (e) => void write(frames.error(e.error)),
    };
    await turn.run(sink, controller);
    await pending;
  });
  // streamSSE sets `Connection: keep-alive`, which stops a server from advertising its
  // keep-alive timeout; without it clients drop the idle connection early and reconnect.
  response.headers.delete('Connection');
  return response;
}

function sse(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}
