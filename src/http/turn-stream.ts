import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { ChatTurnEvent, PreparedTurn, TurnSink } from '../chat/chat-pipeline.js';
import type { ResumeTarget } from '../chat/resume-target.js';
import { eventId, type TurnStreams } from '../chat/turn-streams.js';
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
  /** The provider's content filter ended the reply (its stored finish reason is `stop`). */
  filtered?: boolean | undefined;
}

/**
 * The bytes one HTTP streaming protocol sends for a turn's events (seed 002 SSE, OpenAI
 * chat-completion chunks, the AI SDK UI message stream). `content` is the per-token path;
 * `end` answers undefined when nothing more is sent (a turn whose client went away).
 */
export interface StreamFrames {
  /** Each event carries its resumable `id:` (one SSE event per frame). */
  ids?: boolean;
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
      // STREAM_ON_DISCONNECT=continue: the turn runs to its end, stored and resumable.
      if (!turn.continueOnDisconnect) stream.onClose(() => controller.abort(new TurnAbort('disconnect')));
      const ids = frames.ids === true;
      return turn.run(
        {
          start: () => undefined,
          delta: (text, id) => stream.write(ids && id ? `id: ${id}\n${frames.content(text)}` : frames.content(text)),
          drained: () => stream.drained(),
          end: (e, id) => stream.end(e.finishReason === 'aborted' ? undefined : withId(frames.end(e), ids ? id : undefined)),
          error: (e, id) => stream.end(withId(frames.error(e.error), ids ? id : undefined)),
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
    if (!turn.continueOnDisconnect) stream.onAbort(() => controller.abort(new TurnAbort('disconnect')));
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

function withId(frame: string | undefined, id: string | undefined): string | undefined {
  return frame !== undefined && id ? `id: ${id}\n${frame}` : frame;
}

/** A recorded event as the bytes the original stream sent for it (nothing for `start`). */
function frameOf(frames: StreamFrames, event: ChatTurnEvent, id: string): string | undefined {
  const frame =
    event.type === 'delta' ? frames.content(event.text) : event.type === 'end' ? frames.end(event) : event.type === 'error' ? frames.error(event.error) : undefined;
  return frames.ids ? withId(frame, id) : frame;
}

/**
 * Resumes a recorded turn as an HTTP stream: its events after `target.afterSeq`, byte for byte
 * as first sent, then the rest live until the turn's end. A turn that ended as `aborted` ends
 * here with its usual last frame.
 */
export function respondWithReplay(c: Context<AppEnv>, streams: TurnStreams, target: ResumeTarget, frames: StreamFrames, headers: Record<string, string> = SSE_HEADERS): Response {
  const controller = new AbortController();
  const events = streams.follow(target.conversationKey, target.turnId, target.afterSeq, controller.signal);
  const render = (seq: number, event: ChatTurnEvent) => frameOf(frames, event, eventId(target.turnId, seq));
  const outgoing = nodeResponse(c);
  if (outgoing) {
    return writeNodeStream(c, outgoing, headers, async (stream) => {
      stream.onClose(() => controller.abort());
      try {
        for await (const { seq, event } of events) {
          const frame = render(seq, event);
          if (frame === undefined) continue;
          if (event.type === 'end' || event.type === 'error') return stream.end(frame);
          if (!stream.write(frame)) await stream.drained();
        }
      } catch {
        // The shared log went away mid-replay (Redis lost): end the stream; the client may retry.
      }
      stream.end();
    });
  }
  for (const [name, value] of Object.entries(headers)) if (name !== 'Content-Type') c.header(name, value);
  const response = streamSSE(c, async (stream) => {
    stream.onAbort(() => controller.abort());
    for await (const { seq, event } of events) {
      const frame = render(seq, event);
      if (frame !== undefined) await stream.write(frame);
    }
  });
  response.headers.delete('Connection');
  if (headers['Content-Type']) response.headers.set('Content-Type', headers['Content-Type']);
  return response;
}
