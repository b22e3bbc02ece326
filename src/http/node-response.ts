import type { Context } from 'hono';
import type { AppEnv } from './app-env.js';

/**
 * Streaming straight to the Node response on the Node entry: no web streams and no
 * TransformStream between a token and the socket, and no web Response built for the head.
 * The handler returns a response marked as already sent, which `@hono/node-server` leaves alone.
 */

/** The subset of Node's `ServerResponse` used here. */
export interface NodeOutgoing {
  writeHead(status: number, headers: Record<string, string | string[]>): unknown;
  flushHeaders(): void;
  write(chunk: string): boolean;
  cork(): void;
  uncork(): void;
  end(chunk?: string): unknown;
  destroy(): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  off(event: 'close' | 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
}

export function nodeResponse(c: Context): NodeOutgoing | undefined {
  const outgoing = (c.env as { outgoing?: NodeOutgoing } | undefined)?.outgoing;
  return outgoing && typeof outgoing.writeHead === 'function' && typeof globalThis.setImmediate === 'function' ? outgoing : undefined;
}

export interface NodeStream {
  /** Queues text; false when the socket's buffer is over its high-water mark (wait for `drained`). */
  write(text: string): boolean;
  drained(): Promise<void>;
  /** Ends the response, with a last piece of text. */
  end(text?: string): void;
  /** Called once if the client goes away before the response ended. */
  onClose(listener: () => void): void;
}

/** What `@hono/node-server` leaves alone (its own `RESPONSE_ALREADY_SENT` is this, shared the same way). */
let alreadySent: Response | undefined;

/** The marker a route that wrote its own response returns (never to be changed: it is shared). */
export function isAlreadySent(res: Response): boolean {
  return res === alreadySent;
}
/** How long the response head may wait for the first event to travel with it. */
const HEAD_ALONE_AFTER_MS = 50;
/** A response still unflushed this long after it ended belongs to a client that stopped reading. */
const LINGER_MS = 10_000;

/**
 * Writes the head now, from the headers recorded with `setHeader` (the platform middleware's,
 * authentication's cookie, rate limits: all are set before a route runs) plus `headers`, and
 * starts `run` at once: the turn's upstream request does not wait for the middleware chain to
 * unwind. Headers set after this call are not sent. Returns the marker response to hand back
 * to Hono.
 */
export function writeNodeStream(
  c: Context<AppEnv>,
  outgoing: NodeOutgoing,
  headers: Record<string, string>,
  run: (stream: NodeStream) => Promise<void>,
): Response {
  const head: Record<string, string | string[]> = {};
  for (const [name, value, append] of c.get('head') ?? []) {
    const key = name.toLowerCase();
    const previous = append ? head[key] : undefined;
    head[key] = previous === undefined ? (append ? [value] : value) : [...(Array.isArray(previous) ? previous : [previous]), value];
  }
  Object.assign(head, headers);
  const stream = new Writer(outgoing);
  if (outgoing.destroyed) stream.closed();
  else {
    outgoing.writeHead(200, head);
    // The head leaves with the first event (one write instead of two) unless that takes a while.
    const flush = setTimeout(() => {
      if (!outgoing.destroyed) outgoing.flushHeaders();
    }, HEAD_ALONE_AFTER_MS);
    stream.onFirstWrite(() => clearTimeout(flush));
  }
  void run(stream);
  return (alreadySent ??= new Response(null, { headers: { 'x-hono-already-sent': 'true' } }));
}

class Writer implements NodeStream {
  #ended = false;
  #onFirstWrite: (() => void) | undefined;
  #closeListeners: (() => void)[] = [];
  #gone = false;
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    // end() uncorks fully by itself.
    if (!this.#ended) this.outgoing.uncork();
  };

  constructor(private readonly outgoing: NodeOutgoing) {
    outgoing.once('close', () => {
      if (!outgoing.writableFinished) this.closed();
    });
  }

  closed(): void {
    if (this.#gone) return;
    this.#gone = true;
    for (const listener of this.#closeListeners.splice(0)) listener();
  }

  onClose(listener: () => void): void {
    if (this.#gone) listener();
    else this.#closeListeners.push(listener);
  }

  onFirstWrite(listener: () => void): void {
    this.#onFirstWrite = listener;
  }

  #wrote(): void {
    const listener = this.#onFirstWrite;
    if (!listener) return;
    this.#onFirstWrite = undefined;
    listener();
  }

  write(text: string): boolean {
    if (this.#ended || this.#gone) return true;
    this.#wrote();
    // Frames written in the same tick leave in one syscall (a model that hands over several
    // tokens at once, each its own frame); the remote adapters already hand over the text of
    // one network read in one call (TextBatcher), so this is one write in the usual case.
    if (!this.#corked) {
      this.#corked = true;
      this.outgoing.cork();
      process.nextTick(this.#uncork);
    }
    return this.outgoing.write(text);
  }

  drained(): Promise<void> {
    if (this.#gone || this.#ended) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.outgoing.off('drain', done);
        this.outgoing.off('close', done);
        resolve();
      };
      this.outgoing.once('drain', done);
      this.outgoing.once('close', done);
    });
  }

  end(text?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#wrote();
    if (this.#gone) return;
    this.outgoing.end(text);
    // A client that stopped reading holds its socket with our last bytes in it: not forever.
    const timer = setTimeout(() => {
      if (!this.outgoing.writableFinished) this.outgoing.destroy();
    }, LINGER_MS);
    timer.unref?.();
  }
}
