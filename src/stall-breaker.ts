/**
 * Stops waiting on a shared service that stopped answering (a Redis that accepts commands
 * and replies to none): after a call gave up on it, callers skip it for `coolMs` and decide
 * without it, so a stall costs one deadline, not one per request. After that the next caller
 * is the trial: if the service answers it, everyone uses it again; if not, another `coolMs`.
 * No timers (it runs on Workers too); a trial that never reports back would keep it open, so
 * every caller that was not told to skip must call `succeeded`, `failed` or `released`.
 */
export class StallBreaker {
  #openUntil = 0;
  #trial = false;

  constructor(private readonly coolMs: number) {}

  /** True while the service is being skipped (stalled recently, or another caller is the trial). */
  get open(): boolean {
    return this.#openUntil !== 0;
  }

  /** Whether this caller should skip the service; false makes it the trial once the cool-off is over. */
  skip(now = Date.now()): boolean {
    if (this.#openUntil === 0) return false;
    if (now < this.#openUntil || this.#trial) return true;
    this.#trial = true;
    return false;
  }

  /** The service answered: it is used again. True when that ends a stall. */
  succeeded(): boolean {
    const ended = this.#openUntil !== 0;
    this.#openUntil = 0;
    this.#trial = false;
    return ended;
  }

  /** The call ended without telling either way (a connection closed on purpose): a later caller is the next trial. */
  released(): void {
    this.#trial = false;
  }

  /** The service gave no answer in time: skipped for the next `coolMs`. True when that starts a stall. */
  failed(now = Date.now()): boolean {
    const started = this.#openUntil === 0;
    this.#openUntil = now + this.coolMs;
    this.#trial = false;
    return started;
  }
}
