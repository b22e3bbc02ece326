/**
 * After a call gave up on a service, how long callers skip it before one tries it again (a
 * reply that comes late ends the skipping at once: the service answers again). One value for
 * the Redis cluster's commands and the rate limiter.
 */
export const STALL_COOL_MS = 5_000;

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

/** What a call that gave up on its service rejects with: no answer within `ms`, or skipped while the service is stalled. */
export class StalledError extends Error {
  constructor(
    readonly service: string,
    readonly ms?: number,
  ) {
    super(ms === undefined ? `${service} is not answering; skipped until it does` : `${service} did not answer within ${ms} ms`);
    this.name = 'StalledError';
  }
}

/**
 * `reply`, or a rejection with `timeout` once `ms` pass without it (a timer, not an
 * AbortSignal: this runs per request). `late` is called if the reply comes after all.
 */
export function withDeadline<T>(reply: Promise<T>, ms: number, timeout: Error, late?: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(timeout);
      if (late) reply.then(late, () => undefined);
    }, ms);
  });
  return Promise.race([reply, deadline]).finally(() => clearTimeout(timer));
}

/** A service that requests wait on, each call with a deadline, behind a {@link StallBreaker}. */
export class GuardedService {
  /** For a caller whose service reports its own timeouts (and so needs no deadline here): it settles the breaker itself. */
  readonly breaker: StallBreaker;

  constructor(
    private readonly name: string,
    coolMs: number,
    /** Told when a stall starts (what was waited on, how long) and when it ends. */
    private readonly onChange: (stalled: boolean, detail: { ms: number; waiting: string }) => void = () => undefined,
  ) {
    this.breaker = new StallBreaker(coolMs);
  }

  /**
   * `send()`'s reply within `ms`; a {@link StalledError} when the service is being skipped (then
   * `send` is not called) or does not answer in time. A reply that comes later ends the stall.
   * Only silence counts against the service: another failure (a connection closed or refused)
   * says nothing of a stall.
   */
  call<T>(send: () => Promise<T>, ms: number, waiting: string): Promise<T> {
    if (this.breaker.skip()) return Promise.reject(new StalledError(this.name));
    const timeout = new StalledError(this.name, ms);
    return withDeadline(send(), ms, timeout, () => this.#answered(ms, waiting)).then(
      (value) => {
        this.#answered(ms, waiting);
        return value;
      },
      (err: unknown) => {
        if (err !== timeout) this.breaker.released();
        else if (this.breaker.failed()) this.onChange(true, { ms, waiting });
        throw err;
      },
    );
  }

  #answered(ms: number, waiting: string): void {
    if (this.breaker.succeeded()) this.onChange(false, { ms, waiting });
  }
}
