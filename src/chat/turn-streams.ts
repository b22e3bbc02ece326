import type { ChatTurnEvent } from './chat-pipeline.js';

export type StartEvent = Extract<ChatTurnEvent, { type: 'start' }>;

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
  /** A new turn's log; `turnId` when the turn has one already (its lease's), else a new one. */
  open(conversationKey: string, turnId?: string): TurnLog;
  /** The conversation's latest recorded turn, if still kept. */
  latest(conversationKey: string): Promise<{ turnId: string; ended: boolean } | undefined>;
  /**
   * The turn's `start` event (recorded first), for telling which conversation under its key the
   * turn belongs to. Undefined when the turn is not kept or has recorded no start (yet).
   */
  startOf(conversationKey: string, turnId: string): Promise<StartEvent | undefined>;
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

/**
 * An ended turn's events, packed: its text deltas as one string and where each one ends (the
 * reply's own text when they add up to it, as they do unless the log was cut), the other events
 * (start, end) as they are. Unpacked, a kept turn holds an object and a string per token for
 * STREAM_RESUME_TTL_S: at thousands of turns a minute, hundreds of thousands of small objects
 * that every major GC walks.
 */
interface PackedEvents {
  readonly length: number;
  readonly text: string;
  /** `text` is the reply of the final event (one string, held once). */
  readonly shared: boolean;
  /** Event i's text is `text.slice(offsets[i], offsets[i + 1])` (empty for the other events). */
  readonly offsets: Int32Array;
  /** The events that are not deltas (start, end), by index. */
  readonly others: ReadonlyMap<number, ChatTurnEvent>;
}

function pack(texts: readonly string[], others: ReadonlyMap<number, ChatTurnEvent>): PackedEvents {
  const offsets = new Int32Array(texts.length + 1);
  let reply: string | undefined;
  for (const event of others.values()) if (event.type === 'end' || event.type === 'error') reply = event.content;
  for (let i = 0; i < texts.length; i++) offsets[i + 1] = offsets[i]! + texts[i]!.length;
  const joined = texts.join('');
  const shared = joined === reply;
  return { length: texts.length, text: shared ? reply! : joined, shared, offsets, others };
}

/** What a packed log costs the in-process buffer, roughly. */
function packedBytes(packed: PackedEvents): number {
  let bytes = 64 + (packed.shared ? 0 : packed.text.length * 2) + packed.offsets.byteLength;
  for (const event of packed.others.values()) bytes += eventBytes(event);
  return bytes;
}

class Log {
  /**
   * While the turn runs, each event's text: a delta's, or '' for the other events, which are in
   * `others` (an ended turn's are packed). A string per token, not an object: a running turn's
   * log is young, and every young-generation GC copies it while the reply streams.
   */
  texts: string[] = [];
  others = new Map<number, ChatTurnEvent>();
  packed: PackedEvents | undefined;
  /** Events appended so far; the log stops growing once it is dropped and nobody follows it. */
  seq = 0;
  /** Clients following this log now: a dropped log keeps recording for them until its end. */
  followers = 0;
  bytes = 0;
  ended = false;
  endedAt = 0;
  counted = true;
  #waiters: (() => void)[] = [];

  constructor(readonly conversationKey: string, readonly turnId: string) {}

  /** Events held (appended, unless the log was dropped). */
  get length(): number {
    return this.packed ? this.packed.length : this.texts.length;
  }

  eventAt(i: number): ChatTurnEvent {
    const packed = this.packed;
    if (!packed) return this.others.get(i) ?? { type: 'delta', text: this.texts[i]! };
    return packed.others.get(i) ?? { type: 'delta', text: packed.text.slice(packed.offsets[i], packed.offsets[i + 1]) };
  }

  record(event: ChatTurnEvent): void {
    if (event.type === 'delta') this.texts.push(event.text);
    else {
      this.others.set(this.texts.length, event);
      this.texts.push('');
    }
  }

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

  open(conversationKey: string, turnId?: string): TurnLog {
    this.#sweep();
    const log = new Log(conversationKey, turnId ?? newTurnId());
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

  async startOf(conversationKey: string, turnId: string): Promise<StartEvent | undefined> {
    this.#sweep();
    const log = this.#logs.get(key(conversationKey, turnId));
    const first = log && log.length > 0 ? log.eventAt(0) : undefined;
    return first?.type === 'start' ? first : undefined;
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
        while (next < log.length) {
          const event = log.eventAt(next);
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
    if (!log.counted && log.followers > 0) log.record(event);
    else if (log.counted) {
      log.record(event);
      const size = eventBytes(event);
      log.bytes += size;
      this.#bytes += size;
      if (this.#bytes > this.options.maxBytes) this.#evict();
    }
    if (isTerminal(event)) {
      log.ended = true;
      log.endedAt = Date.now();
      // Kept for resuming only from now on: packed, and counted at what it holds then.
      if (log.counted) {
        log.packed = pack(log.texts, log.others); // (which keeps `others`)
        log.texts = [];
        const bytes = packedBytes(log.packed);
        this.#bytes += bytes - log.bytes;
        log.bytes = bytes;
      }
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
    if (log.followers === 0) {
      log.texts = [];
      log.others.clear();
      log.packed = undefined;
    }
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
