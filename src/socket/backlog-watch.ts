import { outgoingBytes } from './backpressure.js';

/** The part of a namespace's socket read here. */
export interface WatchedSocket {
  readonly id: string;
  readonly conn: unknown;
  readonly connected?: boolean;
}

/**
 * Bounds the backlog of sockets that receive what they did not ask for: the copies of a user's
 * turns sent to the user's other tabs. A socket's own turn waits for it to read (and ends after
 * SLOW_CLIENT_TIMEOUT_MS); a copy cannot make the turn wait, so a tab over the bound is left out
 * of the copies (`over`), and one that stays over it for `timeoutMs` is cut (`cut`). One timer
 * per namespace looks at every socket, so copies from other nodes (through the adapter, which
 * never asks) are bounded too; it runs only while the namespace has sockets.
 */
export class BacklogWatch<S extends WatchedSocket> {
  /** Sockets over the bound, and since when (ms, performance.now()). */
  #since = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #intervalMs: number;

  constructor(
    private readonly sockets: ReadonlyMap<string, S>,
    private readonly options: {
      maxBytes: number;
      timeoutMs: number;
      /** Sockets bounded by something else meanwhile (their own turn or replay waits for them, and gives up itself). */
      exempt(socket: S): boolean;
      cut(socket: S, bytes: number): void;
    },
  ) {
    this.#intervalMs = Math.max(50, Math.min(1000, Math.floor(options.timeoutMs / 4)));
  }

  /** Whether the socket's backlog is over the bound now (it is then left out of the copies). */
  over(socket: S): boolean {
    if (outgoingBytes(socket) <= this.options.maxBytes) return false;
    if (!this.#since.has(socket.id)) this.#since.set(socket.id, performance.now());
    return true;
  }

  /** A socket joined: the timer runs while there are sockets to watch. */
  watch(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#check(), this.#intervalMs);
    this.#timer.unref?.();
  }

  #check(): void {
    if (this.sockets.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#since.clear();
      return;
    }
    const now = performance.now();
    const next = new Map<string, number>();
    for (const socket of this.sockets.values()) {
      if (socket.connected === false || this.options.exempt(socket)) continue;
      const bytes = outgoingBytes(socket);
      if (bytes <= this.options.maxBytes) continue;
      const since = this.#since.get(socket.id) ?? now;
      if (now - since >= this.options.timeoutMs) this.options.cut(socket, bytes);
      else next.set(socket.id, since);
    }
    this.#since = next;
  }
}
