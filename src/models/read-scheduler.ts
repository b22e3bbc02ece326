import { NextPass } from '../next-pass.js';

/**
 * Shares each pass of the event loop between model streams. Under load a pass finds hundreds of
 * upstream sockets readable at once (1,000 streams at 50 tokens a second each), and handling
 * every read back to back (decode, batch, write to the client) holds the loop for tens of
 * milliseconds: timers, new requests, /healthz and Socket.IO heartbeats wait behind it.
 *
 * The scheduler lets reads run until they have spent `sliceMs` of the pass. A read after that is
 * held: its bytes are kept, and once a stream holds 16 KiB its socket is paused (the provider
 * then waits on TCP; nothing grows without bound here). Held streams are served in the order
 * they were held, for `sliceMs` in each later pass,
 * with timers and I/O running in between. While any stream waits, new reads queue behind it,
 * so none is starved. Below the load that fills a slice it costs one clock read per network read
 * and changes nothing. Where there is no `setImmediate` (Workers: one request per isolate) or
 * `sliceMs` is 0 it lets everything through.
 *
 * A turn hands over everything its stream has buffered (not one network read), so a stream that
 * waited catches up in one frame.
 */
export class ReadScheduler {
  /** When the current pass's reads started (performance.now()), or -1 before its first read. */
  #sliceStart = -1;
  readonly #waiting: (() => void)[] = [];
  /** Streams in `#waiting` that have not left it (a stream cancelled while it waits leaves at once). */
  #held = 0;
  readonly #next = new NextPass(() => this.#drain());
  readonly #enabled: boolean;

  constructor(private readonly sliceMs: number) {
    this.#enabled = sliceMs > 0 && typeof globalThis.setImmediate === 'function';
  }

  /** Whether a read may be handled now; when false, the caller holds it and calls `wait`. */
  admit(): boolean {
    if (!this.#enabled) return true;
    if (this.#waiting.length > 0) return false;
    const now = performance.now();
    if (this.#sliceStart < 0) {
      this.#sliceStart = now;
      setImmediate(this.#endSlice);
      return true;
    }
    return now - this.#sliceStart < this.sliceMs;
  }

  /**
   * Queues `turn`, run in a later pass when the streams held before it have had theirs. Answers
   * `leave`, for a stream that stops waiting before its turn (it ended or was cancelled): the
   * gauge stops counting it at once and its turn is skipped. Both `leave` and the turn leave once.
   */
  wait(turn: () => void): () => void {
    let waiting = true;
    const leave = () => {
      if (!waiting) return false;
      waiting = false;
      this.#held--;
      return true;
    };
    this.#held++;
    this.#waiting.push(() => leave() && turn());
    // Held in the poll phase: that pass has had its slice; the next one serves the queue (from
    // the poll phase a single setImmediate would still run in this pass: two).
    this.#next.schedule(2);
    return leave;
  }

  /** Streams held now (a gauge): not those that ended or were cancelled while they waited. */
  get waiting(): number {
    return this.#held;
  }

  readonly #endSlice = () => {
    this.#sliceStart = -1;
  };

  #drain(): void {
    if (this.#waiting.length === 0) return;
    const start = performance.now();
    // At least one turn a pass, however slow: the queue always moves.
    do this.#waiting.shift()!();
    while (this.#waiting.length > 0 && performance.now() - start < this.sliceMs);
    if (this.#waiting.length > 0) this.#next.schedule(1);
  }
}
