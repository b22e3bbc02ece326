/**
 * The body of a streaming HTTP response, pushed as it arrives, with flow control. On Node the
 * entry's fetch hands over the socket's own stream (`NodeBodyLookup`), so a model stream reads
 * bytes with no web-stream layer in between; elsewhere (Workers) the web body is read.
 */
export interface ByteSource {
  start(handlers: ByteHandlers): void;
  /** Stop reading (the sender then waits on TCP). */
  pause(): void;
  resume(): void;
  /** Stop reading for good and release the connection. */
  cancel(reason?: unknown): void;
}

export interface ByteHandlers {
  data(chunk: Uint8Array): void;
  end(): void;
  error(err: unknown): void;
}

/** The subset of a Node readable stream (an `IncomingMessage`) used here. */
export interface NodeReadableLike {
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  destroy(err?: Error): unknown;
  readonly readableEnded: boolean;
}

/** Finds the Node stream behind a Response made by the Node entry's fetch, if it made it. */
export type NodeBodyLookup = (response: Response) => NodeReadableLike | undefined;

export function responseBytes(response: Response, nodeBody?: NodeBodyLookup): ByteSource {
  const node = nodeBody?.(response);
  return node ? nodeBytes(node) : webBytes(response);
}

function nodeBytes(stream: NodeReadableLike): ByteSource {
  let settled = false;
  return {
    start(h) {
      stream.on('data', (chunk) => {
        if (!settled) h.data(chunk);
      });
      stream.on('end', () => {
        if (settled) return;
        settled = true;
        h.end();
      });
      stream.on('error', (err) => {
        if (settled) return;
        settled = true;
        h.error(err);
      });
      // A socket that closes without `end` was cut.
      stream.on('close', () => {
        if (settled) return;
        settled = true;
        h.error(new Error('the connection closed before the response ended'));
      });
    },
    pause: () => void stream.pause(),
    resume: () => void stream.resume(),
    cancel(reason) {
      settled = true;
      stream.destroy(reason instanceof Error ? reason : undefined);
    },
  };
}

function webBytes(response: Response): ByteSource {
  const reader = response.body?.getReader();
  let paused = false;
  let reading = false;
  let done = false;
  let handlers: ByteHandlers | undefined;
  const pump = async () => {
    if (reading || !reader || !handlers) return;
    reading = true;
    try {
      while (!paused && !done) {
        const { done: finished, value } = await reader.read();
        if (done) return;
        if (finished) {
          done = true;
          handlers.end();
          return;
        }
        handlers.data(value);
      }
    } catch (err) {
      if (!done) {
        done = true;
        handlers.error(err);
      }
    } finally {
      reading = false;
    }
  };
  return {
    start(h) {
      handlers = h;
      if (!reader) {
        done = true;
        h.error(new Error('the response has no body'));
        return;
      }
      void pump();
    },
    pause() {
      paused = true;
    },
    resume() {
      if (!paused) return;
      paused = false;
      void pump();
    },
    cancel(reason) {
      done = true;
      void reader?.cancel(reason).catch(() => {});
    },
  };
}

/**
 * Collects text decoded within one turn of the event loop and hands it over once: an HTTP
 * parser emits one `data` event per chunk even when one socket read held many, and the tokens
 * of one read should leave as one frame.
 */
export class TextBatcher {
  #text = '';
  #scheduled = false;

  constructor(private readonly onText: (text: string) => void) {}

  add(text: string): void {
    this.#text += text;
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Hands over what is pending now (before the stream settles). */
  flush(): void {
    this.#scheduled = false;
    if (this.#text === '') return;
    const text = this.#text;
    this.#text = '';
    this.onText(text);
  }
}
