import type { ReadScheduler } from './read-scheduler.js';

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
  /**
   * Everything read so far has been handed to `data`: pass on what is batched now. Called after a
   * stream held by the read scheduler has had its turn, so that turn's writes are done within it.
   */
  flush?(): void;
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
  /** In paused mode: everything buffered, also emitted as `data` (or null when nothing is). */
  read(): Uint8Array | null;
  destroy(err?: Error): unknown;
  readonly readableEnded: boolean;
}

/** Finds the Node stream behind a Response made by the Node entry's fetch, if it made it. */
export type NodeBodyLookup = (response: Response) => NodeReadableLike | undefined;

/** How the Node entry reads provider response bodies (absent elsewhere: the web body is read). */
export interface NodeBodies {
  /** The socket's own stream behind a Response the entry's fetch made. */
  nodeBody?: NodeBodyLookup | undefined;
  /** Shares the event loop between those streams' reads under load. */
  reads?: ReadScheduler | undefined;
}

export function responseBytes(response: Response, bodies: NodeBodies = {}): ByteSource {
  const node = bodies.nodeBody?.(response);
  return node ? nodeBytes(node, bodies.reads) : webBytes(response);
}

/**
 * What a stream waiting for its turn in the read scheduler may hold before its socket is paused
 * (the provider then waits on TCP). Below it, the reads go on arriving and are kept: pausing and
 * resuming a socket costs more than keeping a pass's worth of tokens.
 */
const HOLD_BYTES = 16 * 1024;

function nodeBytes(stream: NodeReadableLike, reads: ReadScheduler | undefined): ByteSource {
  let settled = false;
  let handlers: ByteHandlers | undefined;
  /** Paused by the consumer (a slow client). */
  let paused = false;
  /** Waiting for its turn in `reads`, with the reads it holds. */
  let queued = false;
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  /** Paused while it waits, having held HOLD_BYTES. */
  let stalled = false;
  /** Handing over a turn's bytes: they pass straight through. */
  let releasing = false;
  /** While set, `data` events collect here (a read() from an `error` or `close` handler). */
  let collecting: Uint8Array[] | undefined;
  /** The stream's end, when it came while the stream waited: its turn hands over what it held, then ends. */
  let endOfTurn: (() => void) | undefined;

  /** Leaves the scheduler's queue (its turn, or earlier); set while `queued`. */
  let leave: (() => void) | undefined;
  const unqueue = () => {
    queued = false;
    leave?.();
    leave = undefined;
  };
  const handOverHeld = (h: ByteHandlers) => {
    unqueue();
    heldBytes = 0;
    for (let i = 0; i < held.length && !settled; i++) h.data(held[i]!);
    held.length = 0;
  };
  // Its turn: what it held (and, if that paused it, what its stream buffered since), as one batch.
  const turn = () => {
    const h = handlers;
    if (!queued || settled || !h) return;
    releasing = true;
    try {
      handOverHeld(h);
      if (stalled) while (!paused && !settled && stream.read() !== null);
      h.flush?.();
    } catch (err) {
      if (!settled) {
        settled = true;
        h.error(err);
      }
      return;
    } finally {
      releasing = false;
    }
    if (endOfTurn) return endOfTurn();
    if (!stalled) return;
    stalled = false;
    if (!paused && !settled) stream.resume();
  };
  // Nothing read is lost or reordered when the stream ends or fails: what it held, then what its
  // stream buffered while it waited (for its turn, or for a paused consumer), before the end.
  const beforeTheEnd = (h: ByteHandlers) => {
    const rest: Uint8Array[] = [];
    collecting = rest;
    try {
      for (;;) {
        const before = rest.length;
        const chunk = stream.read();
        if (chunk === null) break;
        // Once `error` or `close` was emitted, read() returns what it took without a `data` event.
        if (rest.length === before) rest.push(chunk);
      }
    } catch {
      // A stream torn down past reading: what was collected is all there is.
    } finally {
      collecting = undefined;
    }
    if (!queued && rest.length === 0) return;
    handOverHeld(h);
    for (let i = 0; i < rest.length && !settled; i++) h.data(rest[i]!);
    h.flush?.();
  };

  return {
    start(h) {
      handlers = h;
      stream.on('data', (chunk) => {
        if (collecting) return void collecting.push(chunk);
        if (settled) return;
        if (releasing || !reads || (!queued && reads.admit())) {
          h.data(chunk);
          return;
        }
        held.push(chunk);
        heldBytes += chunk.byteLength;
        if (!queued) {
          queued = true;
          leave = reads.wait(turn);
        }
        if (heldBytes >= HOLD_BYTES && !stalled) {
          stalled = true;
          stream.pause();
        }
      });
      stream.on('end', () => {
        if (settled || endOfTurn) return;
        const end = () => {
          if (settled) return;
          settled = true;
          h.end();
        };
        // Many streams end together (same pace, same start): their last reads wait their turn
        // like any other, in order, instead of all being handed over in this pass.
        if (queued) endOfTurn = end;
        else end();
      });
      stream.on('error', (err) => {
        if (settled) return;
        beforeTheEnd(h);
        if (settled) return;
        settled = true;
        h.error(err);
      });
      // A socket that closes without `end` was cut.
      stream.on('close', () => {
        // After `end` (the normal close), or once settled, there is nothing to say.
        if (settled || endOfTurn) return;
        beforeTheEnd(h);
        if (settled) return;
        settled = true;
        h.error(new Error('the connection closed before the response ended'));
      });
    },
    pause: () => {
      paused = true;
      stream.pause();
    },
    resume: () => {
      paused = false;
      if (!stalled) stream.resume();
    },
    cancel(reason) {
      settled = true;
      unqueue();
      held.length = 0;
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

/** Settled once: the text batcher's flushes are its reactions. */
const RESOLVED = Promise.resolve();

/**
 * Collects text decoded within one turn of the event loop and hands it over once: an HTTP
 * parser emits one `data` event per chunk even when one socket read held many, and the tokens
 * of one read should leave as one frame.
 */
export class TextBatcher {
  #text = '';
  #scheduled = false;
  readonly #flushTask = () => this.flush();

  constructor(private readonly onText: (text: string) => void) {}

  add(text: string): void {
    this.#text += text;
    if (this.#scheduled) return;
    this.#scheduled = true;
    // A reaction on a settled promise, not queueMicrotask: Node wraps each queueMicrotask
    // callback in an AsyncResource and a bound function (~130 ns more, and three objects, per token).
    RESOLVED.then(this.#flushTask);
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
