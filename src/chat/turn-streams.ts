import type { ChatTurnEvent } from './chat-pipeline.js';

/** One recorded event of a turn; `seq` counts from 1 within the turn. */
export interface LoggedEvent {
  seq: number;
  event: ChatTurnEvent;
}

/** Where a running turn records what it hands its client. */
export interface TurnLog {
  readonly turnId: string;
  /** Records an event (an `end` or `error` closes the log); returns its sequence number. */
  append(event: ChatTurnEvent): number;
}

/**
 * Every turn's outgoing events, kept for STREAM_RESUME_TTL_S after the turn ends, so a client
 * that lost its connection gets what it missed and then the rest live (on any node when the
 * log lives in Redis).
 */
export interface TurnStreams {
  readonly kind: string;
  open(conversationKey: string): TurnLog;
  /** The conversation's latest recorded turn, if still kept. */
  latest(conversationKey: string): Promise<{ turnId: string; ended: boolean } | undefined>;
  /** How far the turn's log goes: its last sequence number, and whether that event ended the turn. Undefined when the turn is not kept. */
  extent(conversationKey: string, turnId: string): Promise<{ lastSeq: number; ended: boolean } | undefined>;
  /** The turn's events after `afterSeq`, then live ones until its end (or `signal`). Empty when the turn is not kept. */
  follow(conversationKey: string, turnId: string, afterSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent>;
}

/** An SSE `id:` for an event: `<turnId>-<seq>`. */
export function eventId(turnId: string, seq: number): string {
  return `${turnId}-${seq}`;
}

/** A `Last-Event-ID` as the turn and the last event the client has; undefined when it is not one of ours. */
export function parseEventId(value: string | undefined): { turnId: string; seq: number } | undefined {
  const m = value === undefined ? null : /^([a-z0-9]{1,32})-(\d{1,9})$/.exec(value.trim());
  return m ? { turnId: m[1]!, seq: Number(m[2]) } : undefined;
}

/**
 * 48 random bits as 12 hex digits: the last group of a v4 UUID, all random. `randomUUID()`
 * draws from a pooled buffer; a `getRandomValues` call per turn cost ~30 µs of the turn.
 */
export function newTurnId(): string {
  return crypto.randomUUID().slice(24);
}

export function isTerminal(event: ChatTurnEvent): boolean {
  return event.type === 'end' || event.type === 'error';
}

/** What an event costs the in-process buffer, roughly (UTF-16 strings plus the object). */
function eventBytes(event: ChatTurnEvent): number {
  switch (event.type) {
    case 'delta':
      return 48 + event.text.length * 2;
    default:
      return 256 + event.content.length * 2;
  }
}

class Log {
  readonly events: ChatTurnEvent[] = [];
  /** Events appended so far; `events` stops growing once the log is dropped and nobody follows it. */
  seq = 0;
  /** Clients following this log now: a dropped log keeps recording for them until its end. */
  followers = 0;
  bytes = 0;
  ended = false;
  endedAt = 0;
  counted = true;
  #waiters: (() => void)[] = [];

  constructor(readonly conversationKey: string, readonly turnId: string) {}

  /** Called for every event: with nobody waiting, it allocates nothing. */
  wake(): void {
    if (this.#waiters.length === 0) return;
    for (const w of this.#waiters.splice(0)) w();
  }

  next(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

const SWEEP_EVERY_MS = 1_000;

/**
 * One node's turn logs, in memory: at most `maxBytes` in all (the oldest turns go first, ended
 * ones before running ones), each kept `ttlMs` after its end.
 */
export class InProcessTurnStreams implements TurnStreams {
  readonly kind = 'memory';
  readonly #logs = new Map<string, Log>();
  readonly #latest = new Map<string, string>();
  #bytes = 0;
  #sweptAt = 0;

  constructor(private readonly options: { ttlMs: number; maxBytes: number }) {}

  /** Bytes held now (for tests and gauges). */
  get bytes(): number {
    return this.#bytes;
  }

  open(conversationKey: string): TurnLog {
    this.#sweep();
    const log = new Log(conversationKey, newTurnId());
    this.#logs.set(key(conversationKey, log.turnId), log);
    this.#latest.set(conversationKey, log.turnId);
    return { turnId: log.turnId, append: (event) => this.#append(log, event) };
  }

  async latest(conversationKey: string): Promise<{ turnId: string; ended: boolean } | undefined> {
    this.#sweep();
    const turnId = this.#latest.get(conversationKey);
    const log = turnId === undefined ? undefined : this.#logs.get(key(conversationKey, turnId));
    return log ? { turnId: log.turnId, ended: log.ended } : undefined;
  }

  async extent(conversationKey: string, turnId: string): Promise<{ lastSeq: number; ended: boolean } | undefined> {
    this.#sweep();
    const log = this.#logs.get(key(conversationKey, turnId));
    return log ? { lastSeq: log.seq, ended: log.ended } : undefined;
  }

  async *follow(conversationKey: string, turnId: string, afterSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent> {
    const log = this.#logs.get(key(conversationKey, turnId));
    if (!log) return;
    let next = Math.max(0, afterSeq);
    log.followers++;
    try {
      for (;;) {
        while (next < log.events.length) {
          const event = log.events[next]!;
          next++;
          yield { seq: next, event };
        }
        if (log.ended || signal.aborted) return;
        await log.next(signal);
      }
    } finally {
      log.followers--;
    }
  }

  #append(log: Log, event: ChatTurnEvent): number {
    if (log.ended) return log.seq;
    const seq = ++log.seq;
    if (!log.counted && log.followers > 0) log.events.push(event);
    else if (log.counted) {
      log.events.push(event);
      const size = eventBytes(event);
      log.bytes += size;
      this.#bytes += size;
      if (this.#bytes > this.options.maxBytes) this.#evict();
    }
    if (isTerminal(event)) {
      log.ended = true;
      log.endedAt = Date.now();
    }
    log.wake();
    return seq;
  }

  #drop(log: Log): void {
    this.#logs.delete(key(log.conversationKey, log.turnId));
    if (this.#latest.get(log.conversationKey) === log.turnId) this.#latest.delete(log.conversationKey);
    if (log.counted) this.#bytes -= log.bytes;
    log.counted = false;
    // No new follower can find a dropped log: unless one follows it already, its events go now, not at its turn's end.
    if (log.followers === 0) log.events.length = 0;
    log.bytes = 0;
  }

  /** Oldest ended turns first, then the oldest running ones (they keep streaming to their own client, unrecorded). */
  #evict(): void {
    for (const pass of [true, false]) {
      for (const log of this.#logs.values()) {
        if (this.#bytes <= this.options.maxBytes) return;
        if (log.ended === pass) this.#drop(log);
      }
    }
  }

  #sweep(): void {
    const now = Date.now();
    if (now - this.#sweptAt < SWEEP_EVERY_MS) return;
    this.#sweptAt = now;
    for (const log of this.#logs.values()) if (log.ended && now - log.endedAt > this.options.ttlMs) this.#drop(log);
  }
}

function key(conversationKey: string, turnId: string): string {
  return `${conversationKey}\u0000${turnId}`;
}
