import { TurnAbort } from './turn-abort.js';

interface ActiveTurn {
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Knows every running chat turn: a gauge for monitoring, and the handle graceful shutdown
 * uses to let streams finish, then abort the rest and wait until their replies are stored.
 */
export class TurnTracker {
  readonly #active = new Set<ActiveTurn>();
  #closing = false;

  get active(): number {
    return this.#active.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Registers a turn; returns the signal it must honour and a function to call when it is over. */
  track(outer: AbortSignal | undefined): { signal: AbortSignal; finish: () => void } {
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    let resolve!: () => void;
    const turn: ActiveTurn = { controller, done: new Promise<void>((r) => (resolve = r)) };
    this.#active.add(turn);
    return {
      signal: controller.signal,
      finish: () => {
        outer?.removeEventListener('abort', onOuterAbort);
        this.#active.delete(turn);
        resolve();
      },
    };
  }

  /** Waits up to `graceMs` for running turns, then aborts the rest and waits for them to persist. */
  async drain(graceMs: number): Promise<{ finished: number; aborted: number }> {
    this.#closing = true;
    const initial = this.#active.size;
    const all = () => Promise.all([...this.#active].map((t) => t.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
    ]);
    clearTimeout(timer);
    const remaining = [...this.#active];
    if (timedOut) {
      for (const t of remaining) t.controller.abort(new TurnAbort('aborted', true));
      await all();
    }
    return { finished: initial - remaining.length, aborted: timedOut ? remaining.length : 0 };
  }
}
