import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { PreparedTurn, TurnSink } from '../chat/chat-pipeline.js';
import { TurnAbort } from '../chat/turn-abort.js';
import type { AppError } from '../errors.js';
import type { TokenUsage } from '../models/language-model.js';
import type { FinishReason } from '../stores/conversation-store.js';
import type { AppEnv } from './app-env.js';
import { nodeResponse, writeNodeStream } from './node-response.js';

/** How a turn's end reaches a stream writer. */
export interface StreamEnd {
  messageId: string;
  finishReason: FinishReason;
  usage: TokenUsage | undefined;
  content: string;
  model: string;
}

/**
 * The bytes one HTTP streaming protocol sends for a turn's events (seed 002 SSE, OpenAI
 * chat-completion chunks, the AI SDK UI message stream). `content` is the per-token path;
 * `end` answers undefined when nothing more is sent (a turn whose client went away).
 */
export interface StreamFrames {
  content(text: string): string;
  end(e: StreamEnd): string | undefined;
  error(error: AppError): string;
}

export const SSE_HEADERS: Readonly<Record<string, string>> = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' };

/**
 * Streams a prepared turn as an HTTP response: on Node straight to the socket (the head
 * travels with the first frame), elsewhere (Workers) through Hono's streamSSE. The client
 * going away aborts the turn (its partial reply is stored as `aborted`).
 */
export function respondWithTurn(c: Context<AppEnv>, turn: PreparedTurn, frames: StreamFrames, headers: Record<string, string> = SSE_HEADERS): Response {
  const outgoing = nodeResponse(c);
  if (outgoing) {
    return writeNodeStream(c, outgoing, headers, (stream) => {
      const controller = new AbortController();
      stream.onClose(() => controller.abort(new TurnAbort('disconnect')));
      return turn.run(
        {
          start: () => undefined,
          delta: (text) => stream.write(frames.content(text)),
          drained: () => stream.drained(),
          end: (e) => stream.end(e.finishReason === 'aborted' ? undefined : frames.end(e)),
          error: (e) => stream.end(frames.error(e.error)),
        },
        controller,
      );
    });
  }
  return webStream(c, turn, frames, headers);
}

/** Workers: Hono's streamSSE over web streams; a write still pending means the client is behind. */
function webStream(c: Context<AppEnv>, turn: PreparedTurn, frames: StreamFrames, headers: Record<string, string>): Response {
  for (const [name, value] of Object.entries(headers)) if (name !== 'Content-Type') c.header(name, value);
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
        const last = e.finishReason === 'aborted' ? undefined : frames.end(e);
        if (last) write(last);
      },
      error: (e) => void write(frames.error(e.error)),
    };
    await turn.run(sink, controller);
    await pending;
  });
  // streamSSE sets `Connection: keep-alive`, which stops a server from advertising its
  // keep-alive timeout; without it clients drop the idle connection early and reconnect.
  response.headers.delete('Connection');
  if (headers['Content-Type']) response.headers.set('Content-Type', headers['Content-Type']);
  return response;
}

/** One SSE event carrying JSON. */
export function sse(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}
