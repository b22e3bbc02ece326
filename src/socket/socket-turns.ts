import { TurnAbort, type AbortCause } from '../chat/turn-abort.js';

interface Running {
  controller: AbortController;
  done: Promise<void>;
  /** The conversation the request named, while the turn is being admitted (cleared once it starts). */
  requested: string | undefined;
}

/**
 * The turns running on one socket, so a disconnect aborts them all and `/ai` can refuse a
 * second start (BUSY), stop the running one, and order a new start after a stopped one.
 */
export class SocketTurns {
  readonly #running = new Set<Running>();

  /** Turns still registered, including stopped ones whose partial reply is being stored. */
  get size(): number {
    return this.#running.size;
  }

  /** Turns that are streaming and were not asked to stop. */
  get streaming(): number {
    let n = 0;
    for (const r of this.#running) if (!r.controller.signal.aborted) n++;
    return n;
  }

  /** Resolves when every registered turn (stopped ones included) has ended. */
  settled(): Promise<void> {
    return Promise.all([...this.#running].map((r) => r.done)).then(() => undefined);
  }

  /**
   * Registers a turn; its `controller` is handed to the pipeline, which aborts it too (deletion,
   * shutdown). `conversationId`: the conversation the request names, so a stop naming it reaches
   * the turn while it is admitted (see abortRequested); `started()` once the pipeline tracks it.
   */
  begin(conversationId?: string): {
    controller: AbortController;
    signal: AbortSignal;
    done: Promise<void>;
    abort(kind: AbortCause): void;
    started(): void;
    end(): void;
  } {
    let resolve!: () => void;
    const entry: Running = { controller: new AbortController(), done: new Promise<void>((r) => (resolve = r)), requested: conversationId };
    this.#running.add(entry);
    return {
      controller: entry.controller,
      signal: entry.controller.signal,
      done: entry.done,
      abort: (kind) => entry.controller.abort(new TurnAbort(kind)),
      started: () => {
        entry.requested = undefined;
      },
      end: () => {
        this.#running.delete(entry);
        resolve();
      },
    };
  }

  /** Stops this socket's turns still being admitted for that conversation (they start stopped); how many. */
  abortRequested(conversationId: string): number {
    let n = 0;
    for (const r of this.#running) {
      if (r.requested !== conversationId || r.controller.signal.aborted) continue;
      r.controller.abort(new TurnAbort('stop'));
      n++;
    }
    return n;
  }

  abortAll(kind: AbortCause): number {
    const n = this.#running.size;
    for (const r of this.#running) r.controller.abort(new TurnAbort(kind));
    return n;
  }
}
