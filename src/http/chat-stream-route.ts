import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { chatFieldsSchema, conversationIdSchema, describeIssues } from '../chat/chat-request.js';
import { TurnAbort } from '../chat/turn-abort.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { readJsonBody, setRateLimitHeaders } from './http-helpers.js';
import type { AppEnv } from './app-env.js';

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
    });
    setRateLimitHeaders(c, turn.rateLimit);
    c.header('X-Accel-Buffering', 'no');
    const sessionId = turn.conversation.id;
    const prefix = `data: {"content":`;
    const suffix = `,"sessionId":${JSON.stringify(sessionId)}}\n\n`;

    const response = streamSSE(c, async (stream) => {
      const controller = new AbortController();
      const abort = () => controller.abort(new TurnAbort('disconnect'));
      // The runtime cancels the response stream when the client goes away (Node and workerd alike);
      // reading c.req.raw.signal instead would build a full web Request for every turn.
      stream.onAbort(abort);
      // A write waits while the client does not read (so the model is not pulled meanwhile);
      // one that waits past SLOW_CLIENT_TIMEOUT_MS ends the turn.
      const slowReader = new PendingWriteWatch(services.config.slowClientTimeoutMs, () => {
        controller.abort(new TurnAbort('slow-client'));
        // Releases the stuck write, so the turn ends and stores its partial reply now.
        stream.abort();
      });

      try {
        for await (const event of turn.run(controller.signal)) {
          if (stream.aborted || stream.closed) break;
          switch (event.type) {
            case 'delta':
              // Hand-built line: this is the hot path of every token.
              await slowReader.watch(stream.write(prefix + JSON.stringify(event.text) + suffix));
              break;
            case 'end':
              // An `aborted` end means the client left: there is nobody to tell.
              if (event.finishReason === 'aborted') break;
              await stream.write(
                sse({ done: true, sessionId, messageId: event.messageId, finishReason: event.finishReason, usage: event.usage }),
              );
              break;
            case 'error':
              await stream.write(sse({ error: event.error.message, code: event.error.code, sessionId }));
              break;
            case 'start':
              break;
          }
        }
      } finally {
        slowReader.stop();
      }
    });
    // streamSSE sets `Connection: keep-alive`, which stops Node from advertising its
    // keep-alive timeout; without it clients drop the idle connection early and reconnect.
    response.headers.delete('Connection');
    return response;
  };
}

function sse(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

/** Calls `onStuck` when one watched promise stays pending longer than `timeoutMs`; one timer per stream. */
class PendingWriteWatch {
  #pendingSince = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly onStuck: () => void,
  ) {}

  async watch<T>(write: Promise<T>): Promise<T> {
    this.#pendingSince = performance.now();
    this.#timer ??= setInterval(() => {
      if (this.#pendingSince && performance.now() - this.#pendingSince > this.timeoutMs) {
        this.stop();
        this.onStuck();
      }
    }, Math.min(1000, this.timeoutMs));
    try {
      return await write;
    } finally {
      this.#pendingSince = 0;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
