import { AppError } from '../errors.js';
import { TextBatcher, responseBytes, type ByteSource, type NodeBodies } from './byte-source.js';
import type { ModelFinish, ModelFinishReason, ModelStream, TokenUsage } from './language-model.js';
import { streamCutError, streamFailure } from './provider-error.js';
import { SseDecoder } from './sse-decoder.js';

/** What one provider chunk said. */
export interface ChunkReport {
  text(text: string): void;
  finish(reason: ModelFinishReason): void;
  usage(usage: TokenUsage): void;
}

export interface SseModelStreamOptions {
  /** For error messages: "OpenAI", "Gemini". */
  provider: string;
  signal: AbortSignal;
  onText: (text: string) => void;
  /** The Node entry's way to the response's socket stream (the provider's transport). */
  bodies: NodeBodies;
  /**
   * Sends the request through the provider's SDK (its request building, retries and HTTP error
   * mapping); resolves with the successful streaming response, or undefined when none came.
   */
  request: () => Promise<Response | undefined>;
  /**
   * Reads one `data:` payload into `report`; throws an AppError to end the stream. Answers false
   * for a payload that is no chunk (OpenAI's `[DONE]`).
   */
  readChunk: (data: string, report: ChunkReport) => boolean | void;
  /** The HTTP status an SDK error carries, if any (for the client-safe error). */
  statusOf: (err: unknown) => number | undefined;
}

/**
 * A model reply streamed as Server-Sent Events, decoded here as the bytes arrive (straight
 * from the socket on Node), with the text of each network read handed over in one call. One
 * settle rule for every provider: an abort ends the turn at once with the signal's reason, the
 * first outcome wins, a failure cancels the body, and a stream that ends without a finish
 * reason (or mid-event) is a cut stream.
 */
export function sseModelStream(options: SseModelStreamOptions): ModelStream {
  const { provider, signal, onText, readChunk, bodies, statusOf } = options;
  // Sent here, where no closure below can see `options`: the request (and the conversation it
  // carries) is not kept for the stream's life.
  let sent: Promise<Response | undefined> | undefined;
  try {
    sent = signal.aborted ? undefined : options.request();
  } catch (err) {
    sent = Promise.reject(err as Error);
  }
  let source: ByteSource | undefined;
  let paused = false;

  const done = new Promise<ModelFinish>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: { ok: ModelFinish } | { err: unknown }) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if ('ok' in outcome) resolve(outcome.ok);
      else {
        source?.cancel();
        reject(outcome.err);
      }
    };
    // The abort must end the turn now, whatever the socket is doing.
    const onAbort = () => settle({ err: signal.reason });
    if (!sent) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });

    sent
      .then((response) => {
        if (settled) {
          void response?.body?.cancel().catch(() => {});
          return;
        }
        if (!response) {
          settle({ err: streamCutError(provider) });
          return;
        }
        let finishReason: ModelFinishReason | undefined;
        let usage: TokenUsage | undefined;
        let received = false;
        const batch = new TextBatcher((t) => {
          if (!settled) onText(t);
        });
        const report: ChunkReport = {
          text: (t) => batch.add(t),
          finish: (reason) => (finishReason = reason),
          usage: (u) => (usage = u),
        };
        const decoder = new SseDecoder((data) => {
          if (readChunk(data, report) !== false) received = true;
        });
        source = responseBytes(response, bodies);
        if (paused) source.pause();
        source.start({
          data: (bytes) => {
            if (settled) return;
            try {
              decoder.push(bytes);
            } catch (err) {
              batch.flush();
              settle({ err: err instanceof AppError ? err : streamCutError(provider, err) });
            }
          },
          flush: () => batch.flush(),
          end: () => {
            batch.flush();
            const clean = decoder.end();
            if (finishReason && clean) settle({ ok: { finishReason, usage } });
            else settle({ err: streamCutError(provider) });
          },
          error: (err) => {
            batch.flush();
            settle({ err: streamFailure(provider, signal, err, undefined, received) });
          },
        });
      })
      .catch((err: unknown) => settle({ err: streamFailure(provider, signal, err, statusOf(err), false) }));
  });
  return {
    done,
    pause: () => {
      paused = true;
      source?.pause();
    },
    resume: () => {
      paused = false;
      source?.resume();
    },
  };
}
