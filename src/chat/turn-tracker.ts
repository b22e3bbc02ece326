import { TurnAbort, type AbortCause } from './turn-abort.js';

interface ActiveTurn {
  controller: AbortController;
  conversationKey: string;
  ownerId: string;
  done: Promise<void>;
}

interface PendingTurn {
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Knows every running chat turn, by conversation: a gauge for monitoring, the handle that
 * stops a conversation's turn from outside its connection (delete, stop by id), and what
 * graceful shutdown uses to let streams finish, then abort the rest and wait until their
 * replies are stored.
 */
export class TurnTracker {
  readonly #active = new Set<ActiveTurn>();
  readonly #byConversation = new Map<string, Set<ActiveTurn>>();
  /**
   * Conversations whose cluster-wide slot this node holds, from its claim to the turn's end, and
   * whether a stop came for one before its turn was tracked (see stopWhenStarted).
   */
  readonly #leased = new Map<string, { stop: boolean }>();
  /**
   * Turns asked for in a conversation and not tracked yet (their request is being admitted: the
   * caller's principal, the store, the rate limit), by conversation key: a stop meanwhile aborts
   * them through their controller (see pending).
   */
  readonly #pending = new Map<string, Set<PendingTurn>>();
  /** Owners whose accounts are being deleted: no new turn of theirs starts (see closeOwner). */
  readonly #closedOwners = new Map<string, number>();
  #closing = false;

  get active(): number {
    return this.#active.size;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Registers a turn; returns the signal it must honour, a way to abort it, and a function to call when it is over. */
  /**
   * `outer` is the caller's way to abort the turn: a controller of its own is adopted as the
   * turn's (one AbortController per turn, not one per layer: each costs ≈ 10 µs on Node 20);
   * a signal is followed.
   */
  track(
    outer: AbortController | AbortSignal | undefined,
    conversation: { key: string; ownerId: string },
  ): { signal: AbortSignal; abort(reason: unknown): void; finish: () => void } {
    const adopted = outer instanceof AbortController;
    const controller = adopted ? outer : new AbortController();
    const signal = adopted ? undefined : outer;
    const onOuterAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) controller.abort(signal.reason);
    else signal?.addEventListener('abort', onOuterAbort, { once: true });
    let resolve!: () => void;
    const turn: ActiveTurn = { controller, conversationKey: conversation.key, ownerId: conversation.ownerId, done: new Promise<void>((r) => (resolve = r)) };
    this.#active.add(turn);
    const leased = this.#leased.get(conversation.key);
    if (leased?.stop) {
      leased.stop = false;
      controller.abort(new TurnAbort('stop'));
    }
    let peers = this.#byConversation.get(conversation.key);
    if (!peers) this.#byConversation.set(conversation.key, (peers = new Set()));
    peers.add(turn);
    return {
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      finish: () => {
        signal?.removeEventListener('abort', onOuterAbort);
        this.#active.delete(turn);
        peers.delete(turn);
        if (peers.size === 0) this.#byConversation.delete(conversation.key);
        resolve();
      },
    };
  }

  /**
   * This node holds the conversation's cluster-wide slot (its lock) until the returned function
   * is called. Between the claim and the turn's start (the rate limit, the start gate), a stop
   * sent from another node finds the lock but no turn here: {@link stopWhenStarted} keeps it.
   */
  leased(conversationKey: string): () => void {
    const entry = { stop: false };
    this.#leased.set(conversationKey, entry);
    return () => {
      if (this.#leased.get(conversationKey) === entry) this.#leased.delete(conversationKey);
    };
  }

  /**
   * A turn requested in these conversations (the keys its owner may mean) whose request is being
   * admitted; `controller` is the one the turn will run with, `done` resolves when the request is
   * over (its turn ended, or it was refused). Until the returned function is called, a stop for
   * one of these conversations aborts it: the turn then starts stopped (its message and an empty
   * reply stored as `stopped`), as a stop sent a moment later would have had it.
   */
  pending(conversationKeys: readonly string[], controller: AbortController, done: Promise<void>): () => void {
    const entry: PendingTurn = { controller, done };
    for (const key of conversationKeys) {
      let set = this.#pending.get(key);
      if (!set) this.#pending.set(key, (set = new Set()));
      set.add(entry);
    }
    return () => {
      for (const key of conversationKeys) {
        const set = this.#pending.get(key);
        set?.delete(entry);
        if (set?.size === 0) this.#pending.delete(key);
      }
    };
  }

  /** Aborts the conversation's requested turns not tracked yet; returns their ends to wait for (one per turn). */
  stopPending(conversationKey: string): Promise<void>[] {
    const set = this.#pending.get(conversationKey);
    if (!set) return [];
    const stopped = [...set].filter((t) => !t.controller.signal.aborted);
    for (const t of stopped) t.controller.abort(new TurnAbort('stop'));
    return stopped.map((t) => t.done);
  }

  /**
   * A stop for a conversation: its running turn is aborted; a turn this node holds the slot for
   * or is admitting but has not started yet is aborted as it starts (stored as `stopped`, as any stop).
   */
  stopWhenStarted(conversationKey: string): void {
    if (this.#byConversation.has(conversationKey)) {
      void this.abortConversation(conversationKey, 'stop');
      return;
    }
    this.stopPending(conversationKey);
    const leased = this.#leased.get(conversationKey);
    if (leased) leased.stop = true;
  }

  /** True while a turn of this conversation runs. */
  isRunning(conversationKey: string): boolean {
    return this.#byConversation.has(conversationKey);
  }

  /** Aborts the conversation's running turns and resolves once their replies are stored; the count aborted. */
  async abortConversation(conversationKey: string, cause: AbortCause): Promise<number> {
    return this.#abort([...(this.#byConversation.get(conversationKey) ?? [])], cause);
  }

  /**
   * Refuses new turns of an owner (its account is being deleted) until the returned function is
   * called: a turn that started while the deletion ran would write messages and memories
   * after they were erased.
   */
  closeOwner(ownerId: string): () => void {
    this.#closedOwners.set(ownerId, (this.#closedOwners.get(ownerId) ?? 0) + 1);
    let open = false;
    return () => {
      if (open) return;
      open = true;
      const n = this.#closedOwners.get(ownerId)! - 1;
      if (n > 0) this.#closedOwners.set(ownerId, n);
      else this.#closedOwners.delete(ownerId);
    };
  }

  isOwnerClosed(ownerId: string): boolean {
    return this.#closedOwners.has(ownerId);
  }

  /** Aborts every running turn of an owner (account deletion) and waits for them. */
  async abortOwner(ownerId: string, cause: AbortCause): Promise<number> {
    return this.#abort([...this.#active].filter((t) => t.ownerId === ownerId), cause);
  }

  async #abort(turns: ActiveTurn[], cause: AbortCause): Promise<number> {
    for (const t of turns) t.controller.abort(new TurnAbort(cause));
    await Promise.all(turns.map((t) => t.done));
    return turns.length;
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
    if (timedOut) await this.#abort(remaining, 'shutdown');
    return { finished: initial - remaining.length, aborted: timedOut ? remaining.length : 0 };
  }
}
