import { NextPass } from '../next-pass.js';

/**
 * Spreads a burst of turn starts over passes of the event loop. Starting a turn is the most
 * expensive thing a request does before its first token (admission, the store, the model
 * request: about a millisecond of CPU, mostly run straight through in microtasks), and a burst
 * of starts arrives in one pass of the event loop (hundreds of clients sending at once): run
 * back to back they hold the loop for hundreds of milliseconds, every other client's tokens,
 * /healthz and timers waiting behind them. The gate lets `perPass` starts through in a pass
 * and queues the rest, in arrival order, for the next passes, `perPass` each, with timers and
 * I/O running in between. Where there is no `setImmediate` (Workers: one request per isolate)
 * it lets everything through.
 *
 * The gateway has two (services.ts). The arrival gate is a chat request's first step: its
 * checks (token, body, rate limit) and its start then run in one pass, so the first requests
 * of a burst reach their model before the last ones are even checked. Checks of the whole
 * burst ahead of every start made every first token wait for all of them (200 at once on 2
 * cores: the median first token came ~10% later, the first tenth ~20%). The start gate is for
 * a turn whose checks outlived the pass its request was let through in (a shared limiter or
 * store, over the network: their answers to a burst come back together): those starts are
 * spread out too. A turn still in its pass starts at once.
 *
 * The price of arrival order: a flood of requests queues ahead of the requests that arrive
 * after it, each refused at its rate limit only when its pass comes (before, each was refused as
 * it arrived, in one long pass that held every running stream's tokens instead).
 */
export class StartGate {
  /** Starts let through in the current pass. */
  #admitted = 0;
  /** Counts the passes that let something through, as each ends. */
  #pass = 0;
  #passEnding = false;
  readonly #waiting: (() => void)[] = [];
  readonly #next = new NextPass(() => this.#drain());

  constructor(private readonly perPass: number) {}

  /** Resolves when this start may run; undefined (no wait) when the pass has room and nobody waits. */
  admit(): Promise<void> | undefined {
    if (typeof globalThis.setImmediate !== 'function' || this.perPass <= 0) return undefined;
    if (this.#waiting.length === 0 && this.#take()) return undefined;
    return new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      // From the poll phase a single setImmediate would still run in this pass: two.
      this.#next.schedule(2);
    });
  }

  /** Starts queued for a later pass (a gauge). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * The pass this gate is letting starts through in. Read just after an admission, and again
   * later: the same number means the same pass of the event loop (nothing was awaited on I/O
   * in between), a larger one that the pass has ended.
   */
  get pass(): number {
    return this.#pass;
  }

  #take(): boolean {
    if (this.#admitted >= this.perPass) return false;
    this.#admitted++;
    if (!this.#passEnding) {
      // The pass ends with this turn of the loop: the next one starts with room for perPass.
      this.#passEnding = true;
      setImmediate(() => {
        this.#passEnding = false;
        this.#admitted = 0;
        this.#pass++;
      });
    }
    return true;
  }

  #drain(): void {
    while (this.#waiting.length > 0 && this.#take()) this.#waiting.shift()!();
    if (this.#waiting.length > 0) this.#next.schedule(1);
  }
}
