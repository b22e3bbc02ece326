/**
 * One realtime voice session per client connection, whatever the client protocol (Socket.IO
 * `realtime-*` events, the `/v1/realtime` WebSocket) and whatever the provider. The protocol
 * adapter feeds client events and audio in and wires the callbacks out; this class owns the
 * rules of PROTOCOLS.md 2d: lazy upstream, bounded queue, beta → GA translation, GA allow-list,
 * audio chunk cap, idle and length limits, backpressure both ways, usage, safe errors.
 */
import { AppError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import { toGaClientEvent } from './beta-to-ga.js';
import {
  isRealtimeClientEventType,
  type RealtimeClientEvent,
  type RealtimeProvider,
  type RealtimeProviderKind,
  type RealtimeServerEvent,
  type RealtimeUpstream,
  type RealtimeUpstreamClose,
} from './realtime-provider.js';
import { addUsage, emptyUsage, usageOfResponseDone, type RealtimeUsage } from './realtime-usage.js';
import { safeProviderText } from './redact-secrets.js';

export interface RealtimeSessionLimits {
  /** Largest binary audio chunk, or decoded `input_audio_buffer.append` audio. */
  maxAudioChunkBytes: number;
  /** Largest JSON client event (serialized). */
  maxEventBytes: number;
  /** Client events held while the upstream connects: by count and by bytes. */
  maxQueuedEvents: number;
  maxQueuedBytes: number;
  /** Session closes after this long without a client event or audio chunk. */
  idleTimeoutMs: number;
  /** Session closes this long after its upstream connection was started, however busy. */
  maxSessionMs: number;
  /** Client events are dropped (with an error) while the upstream socket holds more than this unsent. */
  maxUpstreamBufferedBytes: number;
  /** Upstream reading pauses while the client's outgoing buffer holds more than this. */
  maxClientBacklogBytes: number;
  /** A client that keeps the backlog over the bound this long is disconnected. */
  maxClientStallMs: number;
  /**
   * A response the upstream started (`response.created`) and then left without an event this long
   * (not counting while it is paused for the client) ends the session with PROVIDER_ERROR, as a
   * chat reply that goes quiet does (PROVIDER_IDLE_TIMEOUT_MS). 0: not watched.
   */
  upstreamIdleMs: number;
}

export const DEFAULT_REALTIME_LIMITS: Readonly<RealtimeSessionLimits> = {
  maxAudioChunkBytes: 262_144,
  maxEventBytes: 1024 * 1024,
  maxQueuedEvents: 512,
  maxQueuedBytes: 4 * 1024 * 1024,
  idleTimeoutMs: 5 * 60_000,
  maxSessionMs: 30 * 60_000,
  maxUpstreamBufferedBytes: 4 * 1024 * 1024,
  maxClientBacklogBytes: 4 * 1024 * 1024,
  maxClientStallMs: 30_000,
  upstreamIdleMs: 30_000,
};

/** What the session reports to the client adapter. Messages are safe to show. */
export interface RealtimeSessionError {
  code: ErrorCode;
  message: string;
  /**
   * True when this reports an upstream `error` event, which `onServerEvent` delivered as well:
   * a verbatim relay need not send it twice; Socket.IO emits both (`realtime-response` and
   * `realtime-error`).
   */
  fromUpstreamEvent: boolean;
  /** The `event_id` of the client event this is about, when known. */
  eventId?: string;
}

export interface RealtimeSessionCloseReason {
  /** `client`: `close()` was called; `upstream`: the provider ended or failed; `server`: a limit or configuration. */
  initiator: 'client' | 'upstream' | 'server';
  /** Absent for a client close. */
  code?: ErrorCode;
  message: string;
  /** The server is stopping (`shutdown()`): a client may reconnect, to another node or later. */
  shutdown?: true;
}

export interface RealtimeSessionOptions {
  /** `null`/`undefined` when no provider is configured: first use answers REALTIME_UNAVAILABLE. */
  provider: RealtimeProvider | null | undefined;
  logger: Logger;
  /** Every server event as a JSON object, except audio deltas when `onAudio` is given. */
  onServerEvent(event: RealtimeServerEvent): void;
  /**
   * Decoded audio of `response.output_audio.delta` (and beta `response.audio.delta`). When
   * omitted, audio deltas go to `onServerEvent` verbatim (a protocol relay wants that).
   */
  onAudio?(chunk: Buffer): void;
  /** Refusals (session lives on), upstream `error` events, and the reason before a failure close. */
  onError(error: RealtimeSessionError): void;
  /** Exactly once, however the session ends (also after `close()`): release per-client counters here. */
  onClose(reason: RealtimeSessionCloseReason): void;
  /** After each `response.done` with usage: that response's usage and the session total. */
  onUsage?(usage: RealtimeUsage, total: RealtimeUsage): void;
  /** Bytes queued towards the client and not yet written (e.g. the socket's `bufferedAmount`). */
  clientBacklogBytes?(): number;
  limits?: Partial<RealtimeSessionLimits>;
}

export type RealtimeSessionState = 'idle' | 'connecting' | 'open' | 'closed';

/** The longest client `event_id` echoed back (OpenAI's own are ~30 characters). */
const MAX_EVENT_ID_CHARS = 256;

/** How often a paused upstream checks whether the client has caught up. */
const BACKLOG_POLL_MS = 50;

const AUDIO_DELTA_TYPES = new Set(['response.output_audio.delta', 'response.audio.delta']);

export class RealtimeSession {
  readonly limits: Readonly<RealtimeSessionLimits>;
  private readonly provider: RealtimeProvider | null | undefined;
  private readonly logger: Logger;
  private readonly options: RealtimeSessionOptions;
  private current: RealtimeSessionState = 'idle';
  private upstream: RealtimeUpstream | undefined;
  private connectAbort: AbortController | undefined;
  private queue: Array<{ event: RealtimeClientEvent; bytes: number }> = [];
  private queuedBytes = 0;
  private queueOverflowReported = false;
  /** Since when client events have been dropped because the upstream socket is full (undefined: it is not). */
  private upstreamStalledSince: number | undefined;
  private clientOverflowReported = false;
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private lengthTimer: NodeJS.Timeout | undefined;
  private pausedSince: number | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  /** A response of the upstream's is under way (between its `response.created` and `response.done`). */
  private responding = false;
  private lastUpstreamAt = 0;
  private responseTimer: NodeJS.Timeout | undefined;
  private total: RealtimeUsage = emptyUsage();

  constructor(options: RealtimeSessionOptions) {
    this.options = options;
    this.provider = options.provider;
    this.limits = { ...DEFAULT_REALTIME_LIMITS, ...options.limits };
    this.logger = options.logger.child({ realtime: options.provider?.kind ?? 'none' });
  }

  get state(): RealtimeSessionState {
    return this.current;
  }

  get providerKind(): RealtimeProviderKind | undefined {
    return this.provider?.kind;
  }

  /** Usage accumulated from every `response.done` so far. */
  get usage(): RealtimeUsage {
    return { ...this.total };
  }

  /**
   * Opens the upstream now instead of on first use. A GA client waits for `session.created`
   * before it sends anything, so the `/v1/realtime` relay opens eagerly; Socket.IO stays lazy.
   */
  open(): void {
    if (this.current === 'idle') this.startUpstream(undefined);
  }

  /**
   * One JSON client event: an object (Socket.IO `realtime-message`) or its text (a WebSocket
   * frame). Beta shapes are translated; types outside the GA allow-list are refused.
   */
  handleClientEvent(input: unknown): void {
    if (this.current === 'closed') return;
    const parsed = this.parse(input);
    if (!parsed) return;
    const { event: ga, dropped } = toGaClientEvent(parsed);
    if (dropped.length > 0) this.logger.debug({ dropped }, 'realtime: beta fields without a GA equivalent dropped');
    // Echoed in refusals: an id longer than any client makes is not (the answer would be as large as the event).
    const eventId = echoedId(ga.event_id);
    const type = String(ga.type);
    if (!isRealtimeClientEventType(type)) {
      this.refuse('BAD_REQUEST', `Unsupported realtime event type "${clip(type, 64)}"`, eventId);
      return;
    }
    let event: RealtimeClientEvent;
    let bytes: number;
    if (type === 'input_audio_buffer.append') {
      const audio = ga.audio;
      if (typeof audio !== 'string' || audio.length === 0) {
        this.refuse('BAD_REQUEST', 'input_audio_buffer.append needs base64 `audio`', eventId);
        return;
      }
      const decoded = base64Bytes(audio);
      if (decoded > this.limits.maxAudioChunkBytes) {
        this.refuse('BAD_REQUEST', audioTooLarge(decoded, this.limits.maxAudioChunkBytes), eventId);
        return;
      }
      // An append is its audio (and id) and nothing else (GA defines no other field): what is
      // counted against the queue's bytes is then what is sent, without serialising the audio.
      event = eventId === undefined ? { type, audio } : { type, audio, event_id: eventId };
      bytes = audio.length + (eventId?.length ?? 0) + 64;
    } else {
      event = { ...ga, type } as RealtimeClientEvent;
      let text: string;
      try {
        text = JSON.stringify(event);
      } catch {
        // Nested deeper than the stack (a few kilobytes of brackets do it): it could not be sent either.
        this.refuse('BAD_REQUEST', 'Realtime event could not be read: nested too deeply', eventId);
        return;
      }
      bytes = Buffer.byteLength(text);
    }
    if (bytes > this.limits.maxEventBytes) {
      this.refuse('BAD_REQUEST', `Realtime event of ${bytes} bytes exceeds the ${this.limits.maxEventBytes}-byte limit`, eventId);
      return;
    }
    this.dispatch(event, bytes);
  }

  /** One binary chunk of PCM16 mono 24 kHz audio (Socket.IO `realtime-audio`). */
  handleClientAudio(chunk: unknown): void {
    if (this.current === 'closed') return;
    const audio = toBuffer(chunk);
    if (!audio) {
      this.refuse('BAD_REQUEST', 'Realtime audio must be binary PCM16 data');
      return;
    }
    if (audio.length === 0) return;
    if (audio.length > this.limits.maxAudioChunkBytes) {
      this.refuse('BAD_REQUEST', audioTooLarge(audio.length, this.limits.maxAudioChunkBytes));
      return;
    }
    const base64 = audio.toString('base64');
    this.dispatch({ type: 'input_audio_buffer.append', audio: base64 }, base64.length + 64);
  }

  /** The server is stopping: the client is told (INTERNAL), the session ends as the server's doing. */
  shutdown(): void {
    this.fail('INTERNAL', 'The server is shutting down; reconnect in a moment', 'server', true);
  }

  /** The client went away (or the adapter is done): closes the upstream. */
  close(): void {
    this.finish({ initiator: 'client', message: 'The client closed the realtime session' });
  }

  /**
   * The adapter ended the session for a reason of the server's (a message flood, a revoked
   * credential, a frame the socket refused), having told the client itself: closes the upstream,
   * and the record says the server ended it, and why.
   */
  end(code: ErrorCode, message: string): void {
    this.finish({ initiator: 'server', code, message });
  }

  /**
   * The server ends the session for a reason of its own (the caller's token expired, its
   * credential was revoked): the client is told (onError), and the record says the server ended it.
   */
  terminate(code: ErrorCode, message: string): void {
    this.fail(code, message, 'server');
  }

  // --- client side ---------------------------------------------------------------------

  private parse(input: unknown): Record<string, unknown> | undefined {
    let value = input;
    if (typeof input === 'string' || Buffer.isBuffer(input)) {
      const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
      if (size > this.limits.maxEventBytes) {
        this.refuse('BAD_REQUEST', `Realtime event of ${size} bytes exceeds the ${this.limits.maxEventBytes}-byte limit`);
        return undefined;
      }
      try {
        value = JSON.parse(typeof input === 'string' ? input : input.toString('utf8'));
      } catch {
        this.refuse('BAD_REQUEST', 'Realtime events must be JSON objects');
        return undefined;
      }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { type?: unknown }).type !== 'string') {
      this.refuse('BAD_REQUEST', 'Realtime events must be JSON objects with a string `type`');
      return undefined;
    }
    if (value !== input) return value as Record<string, unknown>;
    // A decoded object (Socket.IO): binary attachments would be serialised as arrays of numbers
    // (to measure, translate and send it), at a cost of tens of milliseconds a megabyte.
    const found = binaryOrOversized(value, this.limits.maxEventBytes);
    if (found === 'binary') {
      this.refuse('BAD_REQUEST', 'Realtime events are JSON: binary data inside one is refused (send audio as base64, or as realtime-audio)');
      return undefined;
    }
    if (found === 'oversized') {
      this.refuse('BAD_REQUEST', `Realtime event exceeds the ${this.limits.maxEventBytes}-byte limit`);
      return undefined;
    }
    return value as Record<string, unknown>;
  }

  private dispatch(event: RealtimeClientEvent, bytes: number): void {
    // Only what is accepted is activity: refused events do not keep a session alive.
    this.touch();
    if (this.current === 'idle') {
      // A first session.update configures the connection (Gemini can only be configured then).
      if (event.type === 'session.update') {
        this.startUpstream(event);
        return;
      }
      this.startUpstream(undefined);
    }
    if (this.current === 'connecting') {
      this.enqueue(event, bytes);
      return;
    }
    if (this.current === 'open') this.forward(event, bytes);
  }

  private enqueue(event: RealtimeClientEvent, bytes: number): void {
    const { maxQueuedEvents, maxQueuedBytes } = this.limits;
    if (this.queue.length >= maxQueuedEvents || this.queuedBytes + bytes > maxQueuedBytes) {
      if (!this.queueOverflowReported) {
        this.queueOverflowReported = true;
        this.logger.warn({ queued: this.queue.length, bytes: this.queuedBytes }, 'realtime: queue full while connecting');
        this.refuse(
          'RATE_LIMIT',
          `Too many realtime events while the provider connection is opening (limit ${maxQueuedEvents} events or ${maxQueuedBytes} bytes); events are being dropped`,
          echoedId(event.event_id),
        );
      }
      return;
    }
    this.queue.push({ event, bytes });
    this.queuedBytes += bytes;
  }

  private forward(event: RealtimeClientEvent, bytes: number): void {
    const upstream = this.upstream as RealtimeUpstream;
    if (upstream.bufferedAmount + bytes > this.limits.maxUpstreamBufferedBytes) {
      const now = Date.now();
      if (this.upstreamStalledSince === undefined) {
        this.upstreamStalledSince = now;
        this.logger.warn({ buffered: upstream.bufferedAmount }, 'realtime: upstream not keeping up');
        this.refuse('RATE_LIMIT', 'The realtime provider is not keeping up with this session; events are being dropped', echoedId(event.event_id));
      } else if (now - this.upstreamStalledSince > this.limits.maxClientStallMs) {
        // Dropping the client's audio for good is no session: it ends, as a client that stops reading does.
        this.fail('RATE_LIMIT', 'Realtime session closed: the provider stopped reading its events', 'server');
      }
      return;
    }
    this.upstreamStalledSince = undefined;
    upstream.send(event);
  }

  // --- upstream ------------------------------------------------------------------------

  private startUpstream(initialUpdate: RealtimeClientEvent | undefined): void {
    const provider = this.provider;
    if (!provider) {
      this.fail('REALTIME_UNAVAILABLE', 'No realtime provider is configured on this server', 'server');
      return;
    }
    this.current = 'connecting';
    this.armTimers();
    const abort = new AbortController();
    this.connectAbort = abort;
    provider
      .connect({
        logger: this.logger,
        signal: abort.signal,
        ...(initialUpdate ? { initialUpdate } : {}),
        onEvent: (event) => this.fromUpstream(event),
        onUnreportedUsage: (event) => this.countUsage(event),
        onClose: (reason) => this.upstreamClosed(reason),
      })
      .then(
        (upstream) => {
          if (this.current === 'closed') {
            upstream.close();
            return;
          }
          this.upstream = upstream;
          this.current = 'open';
          this.connectAbort = undefined;
          const queued = this.queue;
          this.queue = [];
          this.queuedBytes = 0;
          this.queueOverflowReported = false;
          // Already bounded by the queue limits, so sent without the buffered-amount check.
          for (const { event } of queued) upstream.send(event);
          this.checkClientBacklog();
        },
        (err: unknown) => {
          if (this.current === 'closed') return;
          const e = err instanceof AppError ? err : new AppError('PROVIDER_ERROR', 'The realtime provider could not be reached');
          this.logger.warn({ code: e.code, err: e.message }, 'realtime: upstream connect failed');
          this.fail(e.code, e.message, 'upstream');
        },
      );
  }

  private fromUpstream(event: RealtimeServerEvent): void {
    if (this.current === 'closed') return;
    this.lastUpstreamAt = Date.now();
    if (event.type === 'response.created') {
      this.responding = true;
      this.watchResponse();
    } else if (event.type === 'response.done') this.responding = false;
    if (this.options.onAudio && AUDIO_DELTA_TYPES.has(event.type)) {
      this.deliverAudio(event);
    } else if (event.type === 'error') {
      const safe = safeErrorEvent(event);
      this.call(() => this.options.onServerEvent(safe.event));
      // An adapter that refuses a client event it cannot carry out (Gemini Live) says BAD_REQUEST,
      // as this session's own refusals do: the client's request failed, not the provider.
      const code = (event.error as { code?: unknown } | undefined)?.code === 'BAD_REQUEST' ? 'BAD_REQUEST' : 'PROVIDER_ERROR';
      this.emitError({ code, message: safe.message, fromUpstreamEvent: true, ...(safe.eventId ? { eventId: safe.eventId } : {}) });
    } else {
      this.call(() => this.options.onServerEvent(event));
    }
    if (event.type === 'response.done') this.countUsage(event);
    this.checkClientBacklog();
  }

  private deliverAudio(event: RealtimeServerEvent): void {
    if (typeof event.delta !== 'string' || event.delta.length === 0) return;
    // Only reached when the upstream cannot pause: shed audio rather than buffer it.
    if (this.pausedSince === undefined && this.clientBacklog() > this.limits.maxClientBacklogBytes) {
      if (!this.clientOverflowReported) {
        this.clientOverflowReported = true;
        this.logger.warn({}, 'realtime: client not reading; dropping audio');
        // Once per stall, so it is sent even though the client is behind (refuse() would hold it back).
        this.emitError({ code: 'RATE_LIMIT', message: 'The client is not reading realtime audio fast enough; audio is being dropped', fromUpstreamEvent: false });
      }
      return;
    }
    this.clientOverflowReported = false;
    const chunk = Buffer.from(event.delta, 'base64');
    this.call(() => this.options.onAudio?.(chunk));
  }

  private countUsage(event: RealtimeServerEvent): void {
    const usage = usageOfResponseDone(event);
    if (!usage) return;
    this.total = addUsage(this.total, usage);
    const total = this.usage;
    if (this.options.onUsage) this.call(() => this.options.onUsage?.(usage, total));
  }

  /** Ends the session when a response under way goes quiet for upstreamIdleMs (one timer, re-armed for what is left). */
  private watchResponse(): void {
    const idleMs = this.limits.upstreamIdleMs;
    if (!(idleMs > 0) || this.responseTimer !== undefined) return;
    const check = (): void => {
      this.responseTimer = undefined;
      if (this.current === 'closed' || !this.responding) return;
      const now = Date.now();
      // Paused for the client: the upstream is not being read, its silence says nothing.
      if (this.pausedSince !== undefined) this.lastUpstreamAt = now;
      const quiet = now - this.lastUpstreamAt;
      if (quiet >= idleMs) {
        this.logger.warn({ quietMs: quiet }, 'realtime: the upstream went quiet in the middle of a response');
        this.fail('PROVIDER_ERROR', `The realtime provider sent nothing for ${duration(idleMs)} in the middle of a response; the session is closed`, 'upstream');
        return;
      }
      this.responseTimer = setTimeout(check, idleMs - quiet);
      this.responseTimer.unref();
    };
    this.responseTimer = setTimeout(check, idleMs);
    this.responseTimer.unref();
  }

  private upstreamClosed(reason: RealtimeUpstreamClose): void {
    if (this.current === 'closed') return;
    this.fail(reason.code, reason.message, 'upstream');
  }

  // --- backpressure towards the client ---------------------------------------------------

  private clientBacklog(): number {
    if (!this.options.clientBacklogBytes) return 0;
    try {
      return this.options.clientBacklogBytes();
    } catch {
      return 0;
    }
  }

  private checkClientBacklog(): void {
    if (this.pausedSince !== undefined || !this.upstream || this.current !== 'open') return;
    if (this.clientBacklog() <= this.limits.maxClientBacklogBytes) return;
    if (!this.upstream.pause()) return; // cannot pause: deliverAudio sheds instead
    this.pausedSince = Date.now();
    this.logger.debug({}, 'realtime: client backlog over bound; upstream paused');
    this.pollTimer = setInterval(() => this.pollBacklog(), BACKLOG_POLL_MS);
    this.pollTimer.unref();
  }

  private pollBacklog(): void {
    if (this.pausedSince === undefined) return;
    if (this.clientBacklog() <= this.limits.maxClientBacklogBytes / 2) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
      this.pausedSince = undefined;
      this.upstream?.resume();
      return;
    }
    if (Date.now() - this.pausedSince > this.limits.maxClientStallMs) {
      this.fail('RATE_LIMIT', 'Realtime session closed: the client is not reading events fast enough', 'server');
    }
  }

  // --- limits and endings ----------------------------------------------------------------

  private touch(): void {
    this.lastActivity = Date.now();
  }

  private armTimers(): void {
    const { idleTimeoutMs, maxSessionMs } = this.limits;
    this.lengthTimer = setTimeout(
      () => this.fail('BAD_REQUEST', `Realtime session closed: it reached the maximum length of ${duration(maxSessionMs)}`, 'server'),
      maxSessionMs,
    );
    this.lengthTimer.unref();
    const check = (): void => {
      const idle = Date.now() - this.lastActivity;
      if (idle >= idleTimeoutMs) {
        this.fail('BAD_REQUEST', `Realtime session closed after ${duration(idleTimeoutMs)} without client activity`, 'server');
        return;
      }
      this.idleTimer = setTimeout(check, idleTimeoutMs - idle);
      this.idleTimer.unref();
    };
    this.touch();
    this.idleTimer = setTimeout(check, idleTimeoutMs);
    this.idleTimer.unref();
  }

  /**
   * A refusal: the client is told, the session lives on. A client that does not read its
   * answers is not told: the answers would pile up in memory at the pace it sends. (Refused
   * events are no activity either: such a client is closed at the idle limit.) Adapters refuse
   * what they cannot hand to the session (a binary WebSocket frame) through it too.
   */
  refuse(code: ErrorCode, message: string, eventId?: string): void {
    if (this.clientBacklog() > this.limits.maxClientBacklogBytes) return;
    this.emitError({ code, message, fromUpstreamEvent: false, ...(eventId ? { eventId } : {}) });
  }

  /** Tells the client why, then ends the session. */
  private fail(code: ErrorCode, message: string, initiator: RealtimeSessionCloseReason['initiator'], shutdown = false): void {
    if (this.current === 'closed') return;
    this.emitError({ code, message, fromUpstreamEvent: false });
    this.finish({ initiator, code, message, ...(shutdown ? { shutdown: true as const } : {}) });
  }

  private finish(reason: RealtimeSessionCloseReason): void {
    if (this.current === 'closed') return;
    this.current = 'closed';
    clearTimeout(this.idleTimer);
    clearTimeout(this.lengthTimer);
    clearTimeout(this.responseTimer);
    clearInterval(this.pollTimer);
    this.connectAbort?.abort();
    this.connectAbort = undefined;
    this.upstream?.close();
    this.upstream = undefined;
    this.queue = [];
    this.queuedBytes = 0;
    this.logger.info({ initiator: reason.initiator, code: reason.code, usage: this.total }, 'realtime session closed');
    this.call(() => this.options.onClose(reason));
  }

  private emitError(error: RealtimeSessionError): void {
    this.call(() => this.options.onError(error));
  }

  /** Adapter callbacks run inside socket event handlers: one that throws must not take the process down. */
  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logger.error({ err }, 'realtime: session callback threw');
    }
  }
}

/** An upstream `error` event with its message redacted, and that message for `onError`. */
function safeErrorEvent(event: RealtimeServerEvent): { event: RealtimeServerEvent; message: string; eventId: string | undefined } {
  const error = typeof event.error === 'object' && event.error !== null ? (event.error as Record<string, unknown>) : {};
  const text = safeProviderText(error.message);
  const message = text ? `Realtime provider error: ${text}` : 'The realtime provider reported an error';
  const eventId = typeof error.event_id === 'string' ? error.event_id : undefined;
  // Every text of the error, not only its message: a provider may echo a (masked) key in `param` or `code` too.
  const cleaned: Record<string, unknown> = { ...error, message: text ?? null };
  let changed = text !== error.message;
  for (const [field, value] of Object.entries(error)) {
    if (field === 'message' || field === 'event_id' || typeof value !== 'string') continue;
    const clean = safeProviderText(value) ?? value;
    if (clean !== value) {
      cleaned[field] = clean;
      changed = true;
    }
  }
  return { event: changed ? { ...event, error: cleaned } : event, message, eventId };
}

/**
 * Whether a decoded client event holds binary data (a Buffer, ArrayBuffer or typed array)
 * anywhere, or more values than an event of `maxBytes` can hold (each serialises to a byte at
 * least): found without serialising it, visiting at most `maxBytes` values.
 */
function binaryOrOversized(event: object, maxBytes: number): 'binary' | 'oversized' | undefined {
  const pending: unknown[] = [event];
  let values = 1;
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value !== 'object' || value === null) continue;
    if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return 'binary';
    for (const child of Object.values(value)) {
      if (++values > maxBytes) return 'oversized';
      pending.push(child);
    }
  }
  return undefined;
}

/** A client's `event_id` as a refusal may echo it: up to MAX_EVENT_ID_CHARS, else none. */
function echoedId(id: unknown): string | undefined {
  return typeof id === 'string' && id.length <= MAX_EVENT_ID_CHARS ? id : undefined;
}

function toBuffer(chunk: unknown): Buffer | undefined {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (Array.isArray(chunk) && chunk.every((c) => Buffer.isBuffer(c))) return Buffer.concat(chunk as Buffer[]);
  return undefined;
}

/** Decoded size of a base64 string, without decoding it. */
function base64Bytes(b64: string): number {
  let padding = 0;
  if (b64.endsWith('==')) padding = 2;
  else if (b64.endsWith('=')) padding = 1;
  return Math.floor((b64.length * 3) / 4) - padding;
}

function audioTooLarge(bytes: number, max: number): string {
  return `Audio chunk of ${bytes} bytes exceeds the ${max}-byte limit`;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function duration(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000} second${ms === 1000 ? '' : 's'}`;
  return `${ms} ms`;
}
