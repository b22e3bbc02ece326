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
 */
export class StartGate {
  /** Starts let through in the current pass. */
  #admitted = 0;
  #passEnding = false;
  readonly #waiting: (() => void)[] = [];
  #draining = false;

  constructor(private readonly perPass: number) {}

  /** Resolves when this start may run; undefined (no wait) when the pass has room and nobody waits. */
  admit(): Promise<void> | undefined {
    if (typeof globalThis.setImmediate !== 'function' || this.perPass <= 0) return undefined;
    if (this.#waiting.length === 0 && this.#take()) return undefined;
    return new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      // From the poll phase a single setImmediate would still run in this pass: two.
      this.#drainNextPass(2);
    });
  }

  /** Starts queued for a later pass (a gauge). */
  get waiting(): number {
    return this.#waiting.length;
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
      });
    }
    return true;
  }

  /** `hops` setImmediates away: one from the check phase (a drain) reaches the next pass. */
  #drainNextPass(hops: 1 | 2): void {
    if (this.#draining) return;
    this.#draining = true;
    if (hops === 2) setImmediate(() => setImmediate(() => this.#drain()));
    else setImmediate(() => this.#drain());
  }

  #drain(): void {
    this.#draining = false;
    while (this.#waiting.length > 0 && this.#take()) this.#waiting.shift()!();
    if (this.#waiting.length > 0) this.#drainNextPass(1);
  }
}
