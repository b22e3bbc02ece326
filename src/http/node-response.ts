import type { Context } from 'hono';
import type { AppEnv } from './app-env.js';
import { flattenHead } from './flat-head.js';
import { headValue } from './http-helpers.js';

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
  once(event: 'close' | 'drain' | 'finish', listener: () => void): unknown;
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
 * Starts `run` at once (the turn's upstream request does not wait for the middleware chain to
 * unwind), then writes the head from the headers recorded with `setHeader` (the platform
 * middleware's, authentication's cookie, rate limits: all set before a route runs) plus
 * `headers`. The head is built in this pass's check phase, after the turn's upstream request
 * has been written (its building and write run in microtasks and ticks from here), or at the
 * first write if that comes sooner: building it (~100 µs on a CPU that was idle, more with an
 * anonymous cookie to sign) is then done while the model thinks, not before it is asked.
 * Returns the marker response to hand back to Hono.
 */
export function writeNodeStream(
  c: Context<AppEnv>,
  outgoing: NodeOutgoing,
  headers: Record<string, string>,
  run: (stream: NodeStream) => Promise<void>,
): Response {
  const recorded = c.get('head') ?? [];
  // Written outside the route's error handling: a head Node refuses ends this response, not the process.
  // (The logger, not the context: nothing of the turn keeps the request's Hono context alive.)
  const logger = c.get('logger');
  const refused = (err: unknown) => logger?.error({ err }, 'the response head could not be written; the response is closed');
  const stream = new Writer(outgoing, refused, () => {
    const head: Record<string, string | string[]> = {};
    for (const [name, given, append] of recorded) {
      const key = name.toLowerCase();
      const value = headValue(given);
      const previous = append ? head[key] : undefined;
      head[key] = previous === undefined ? (append ? [value] : value) : [...(Array.isArray(previous) ? previous : [previous]), value];
    }
    return Object.assign(head, headers);
  });
  if (outgoing.destroyed) stream.closed();
  void run(stream);
  setImmediate(stream.writeHead);
  return (alreadySent ??= new Response(null, { headers: { 'x-hono-already-sent': 'true' } }));
}

class Writer implements NodeStream {
  #ended = false;
  /** Builds the head; undefined once it was written (or the client left first). */
  #head: (() => Record<string, string | string[]>) | undefined;
  /** Sends the head alone when no event came to travel with it. */
  #flush: ReturnType<typeof setTimeout> | undefined;
  #closeListeners: (() => void)[] = [];
  #gone = false;
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    // end() uncorks fully by itself.
    if (!this.#ended) this.outgoing.uncork();
  };

  constructor(
    private readonly outgoing: NodeOutgoing,
    private readonly refused: (err: unknown) => void,
    head: () => Record<string, string | string[]>,
  ) {
    this.#head = head;
    outgoing.once('close', () => {
      if (!outgoing.writableFinished) this.closed();
    });
  }

  /** Writes the head (once); it leaves with the first event (one write instead of two) unless that takes a while. */
  readonly writeHead = (): void => {
    const head = this.#head;
    if (!head) return;
    this.#head = undefined;
    if (this.#gone || this.outgoing.destroyed) return;
    try {
      this.outgoing.writeHead(200, head());
      flattenHead(this.outgoing);
    } catch (err) {
      // A value Node refuses (a header with a line break); the client's close then ends the turn.
      this.refused(err);
      this.outgoing.destroy();
      this.closed();
      return;
    }
    if (this.#ended) return;
    this.#flush = setTimeout(() => {
      this.#flush = undefined;
      if (!this.outgoing.destroyed) this.outgoing.flushHeaders();
    }, HEAD_ALONE_AFTER_MS);
  };

  closed(): void {
    if (this.#gone) return;
    this.#gone = true;
    for (const listener of this.#closeListeners.splice(0)) listener();
  }

  onClose(listener: () => void): void {
    if (this.#gone) listener();
    else this.#closeListeners.push(listener);
  }

  /** Before any body byte: the head is written, and travels with it. */
  #wrote(): void {
    if (this.#head) this.writeHead();
    if (this.#flush === undefined) return;
    clearTimeout(this.#flush);
    this.#flush = undefined;
  }

  write(text: string): boolean {
    if (this.#ended || this.#gone) return true;
    this.#wrote();
    if (this.#gone) return true; // its head was refused
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
    const outgoing = this.outgoing;
    outgoing.end(text);
    if (outgoing.writableFinished) return;
    // A client that stopped reading holds its socket with our last bytes in it: not forever.
    // The timer goes once the bytes are out: pending, it kept this response (and its request,
    // its Hono context, its turn's closures) alive for LINGER_MS after every turn, ~15 KB a turn.
    const timer = setTimeout(() => {
      if (!outgoing.writableFinished) outgoing.destroy();
    }, LINGER_MS);
    timer.unref?.();
    const settled = () => clearTimeout(timer);
    outgoing.once('finish', settled);
    outgoing.once('close', settled);
  }
}
