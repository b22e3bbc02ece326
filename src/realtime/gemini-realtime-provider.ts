/**
 * Gemini Live behind the GA realtime port, through `@google/genai`'s `ai.live.connect`
 * (BidiGenerateContent WebSocket; `httpOptions.baseUrl` points it elsewhere, e.g. a local
 * stand-in). Client events are mapped onto Live calls here; server messages are mapped by
 * {@link GeminiLiveTranslator}; the GA session becomes the Live `setup` in gemini-live-setup.
 *
 * `session.update`: Gemini fixes its setup when the socket opens. The first update (given to
 * `connect`) becomes the setup. A later update that changes the setup reconnects with the new
 * setup as long as no conversation content has been sent (nothing is lost); after that it is
 * refused with an `error` event and `session.updated` reports the settings still in effect.
 */
import type { Content, GoogleGenAI, Live, Part, Session } from '@google/genai';
import { genaiClient } from '../models/genai-sdk.js';
import WebSocket from 'ws';
import type * as GA from 'openai/resources/realtime/realtime';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { geminiSetup, mergeGaSession, type GaSession, type GeminiSetup } from './gemini-live-setup.js';
import { GeminiLiveTranslator } from './gemini-live-translator.js';
import { newId } from './realtime-ids.js';
import type { RealtimeClientEvent, RealtimeConnectOptions, RealtimeProvider, RealtimeUpstream } from './realtime-provider.js';
import { redactSecrets } from '../log-redaction.js';
import { safeProviderText } from './redact-secrets.js';

export const GEMINI_LIVE_MODEL = 'gemini-2.5-flash-native-audio-preview-09-2025';

/** The client's audio, declared with its rate (Gemini resamples input itself). */
const INPUT_MIME = 'audio/pcm;rate=24000';
/** 24 kHz PCM16 mono: 48 bytes per millisecond. */
const BYTES_PER_MS = 48;

export interface GeminiRealtimeProviderOptions {
  apiKey: string;
  /** Gemini API origin (the SDK derives the `ws(s)://` URL). Default: Google's. */
  baseUrl?: string;
  /** Live model id. Default {@link GEMINI_LIVE_MODEL}. */
  model?: string;
  /** Time allowed to open the socket and receive `setupComplete`. Default 15 s. */
  connectTimeoutMs?: number;
  /** Gemini voice used when the client names none or an OpenAI voice. Default: the model's. */
  defaultVoice?: string;
  /** Client events held while a reconfiguring `session.update` reconnects. Default 256 events / 4 MiB. */
  maxPendingEvents?: number;
  maxPendingBytes?: number;
}

/** The SDK's socket factory seam (`Live`'s third constructor argument); its types are not exported by name. */
type LiveArgs = ConstructorParameters<typeof Live>;
type SocketFactory = LiveArgs[2];
type SocketCallbacks = Parameters<SocketFactory['create']>[2];
/** A `Live` (what `ai.live` is) whose sockets come from `factory`. */
type LiveWithSockets = (factory: SocketFactory) => Live;

export class GeminiRealtimeProvider implements RealtimeProvider {
  readonly kind = 'gemini' as const;
  readonly model: string;
  private readonly live: Promise<LiveWithSockets>;

  constructor(private readonly options: GeminiRealtimeProviderOptions) {
    if (!options.apiKey) throw new Error('GeminiRealtimeProvider needs an API key');
    this.model = options.model ?? GEMINI_LIVE_MODEL;
    this.live = liveWithSockets(genaiClient({ apiKey: options.apiKey, baseUrl: options.baseUrl }));
    // As with the client: a failed SDK load fails each connect, not the process.
    this.live.catch(() => {});
  }

  async connect(options: RealtimeConnectOptions): Promise<RealtimeUpstream> {
    const upstream = new GeminiRealtimeUpstream(await this.live, this.model, this.options, options);
    await upstream.start();
    return upstream;
  }
}

class GeminiRealtimeUpstream implements RealtimeUpstream {
  private readonly logger: Logger;
  private readonly translator: GeminiLiveTranslator;
  private setup: GeminiSetup;
  private live: Session | undefined;
  /** Incremented per connection; callbacks of an older connection are ignored. */
  private generation = 0;
  private closed = false;
  /** Aborted by `close()`: a reconnect still opening its socket gives it up at once. */
  private readonly closing = new AbortController();
  private contentSent = false;
  private activityOpen = false;
  private audioSinceCommit = false;
  /** Committed audio Gemini will answer by itself (no `response.create` needed). */
  private audioTurnPending = false;
  private textTurnPending = false;
  private inputBytes = 0;
  private pending: Array<{ event: RealtimeClientEvent; bytes: number }> = [];
  private pendingBytes = 0;
  private pendingOverflowReported = false;

  constructor(
    private readonly liveWith: LiveWithSockets,
    private readonly model: string,
    private readonly providerOptions: GeminiRealtimeProviderOptions,
    private readonly options: RealtimeConnectOptions,
  ) {
    this.logger = options.logger;
    this.translator = new GeminiLiveTranslator({
      logger: this.logger,
      emit: (event) => {
        if (!this.closed) options.onEvent(event);
      },
      unreportedUsage: (event) => {
        if (!this.closed) options.onUnreportedUsage?.(event);
      },
      inputAudioMs: () => this.inputBytes / BYTES_PER_MS,
    });
    const initial = options.initialUpdate?.session;
    this.setup = this.buildSetup(mergeGaSession(geminiSetup({ type: 'realtime' }, this.setupOptions()).effective, asRecord(initial)));
    this.translator.outputModality = outputModality(this.setup);
  }

  /** Opens the first connection; `session.created` (and `session.updated` for an initial update) follow `setupComplete`. */
  async start(): Promise<void> {
    this.live = await this.openLive(this.options.initialUpdate ? 'created+updated' : 'created', this.options.signal);
    this.reportRefused(this.options.initialUpdate?.event_id);
  }

  send(event: RealtimeClientEvent): void {
    if (this.closed) return;
    if (!this.live) {
      this.hold(event);
      return;
    }
    switch (event.type) {
      case 'session.update':
        return this.updateSession(event);
      case 'input_audio_buffer.append':
        return this.appendAudio(event);
      case 'input_audio_buffer.commit':
        return this.commitAudio(event);
      case 'conversation.item.create':
        return this.createItem(event);
      case 'response.create':
        return this.createResponse();
      case 'response.cancel':
        if (!this.translator.cancelResponse()) {
          this.translator.error('response_cancel_not_active', 'Cancellation failed: no active response found', event.event_id);
        }
        return;
      case 'conversation.item.truncate':
        return this.truncateItem(event);
      case 'input_audio_buffer.clear':
        return this.clearAudio();
      default:
        this.translator.refuse(`The Gemini realtime provider does not support "${event.type}"`, event.event_id);
    }
  }

  get bufferedAmount(): number {
    return this.pendingBytes + (this.socket()?.bufferedAmount ?? 0);
  }

  pause(): boolean {
    const ws = this.socket();
    if (!ws) return false;
    ws.pause();
    return true;
  }

  resume(): void {
    this.socket()?.resume();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.generation++;
    this.closing.abort();
    this.pending = [];
    this.pendingBytes = 0;
    this.closeLive(this.live);
    this.live = undefined;
  }

  // --- client events -------------------------------------------------------------------

  private updateSession(event: RealtimeClientEvent): void {
    const next = this.buildSetup(mergeGaSession(this.setup.effective, asRecord(event.session)));
    const changed = JSON.stringify(next.config) !== JSON.stringify(this.setup.config);
    if (!changed) {
      this.translator.sessionEvent('session.updated', this.setup.effective);
      this.reportRefused(event.event_id, next);
      return;
    }
    if (this.contentSent) {
      this.logger.warn({}, 'gemini realtime: session.update after the conversation started; kept the setup in effect');
      this.translator.error(
        'session_update_unsupported',
        'The Gemini realtime provider cannot change these session settings once the conversation has started; the previous settings stay in effect',
        event.event_id,
      );
      this.translator.sessionEvent('session.updated', this.setup.effective);
      return;
    }
    this.setup = next;
    this.translator.outputModality = outputModality(next);
    void this.reconnect(event.event_id);
  }

  private appendAudio(event: RealtimeClientEvent): void {
    const audio = typeof event.audio === 'string' ? event.audio : '';
    if (audio.length === 0) {
      this.translator.error('invalid_value', 'input_audio_buffer.append needs base64 audio', event.event_id);
      return;
    }
    const live = this.live as Session;
    if (this.setup.manualTurns && !this.activityOpen) {
      live.sendRealtimeInput({ activityStart: {} });
      this.activityOpen = true;
    }
    live.sendRealtimeInput({ audio: { data: audio, mimeType: INPUT_MIME } });
    this.translator.inputItemId();
    this.inputBytes += Math.floor((audio.length * 3) / 4);
    this.contentSent = true;
    this.audioSinceCommit = true;
  }

  private commitAudio(event: RealtimeClientEvent): void {
    if (!this.audioSinceCommit) {
      this.translator.error('input_audio_buffer_commit_empty', 'Error committing input audio buffer: the buffer is empty', event.event_id);
      return;
    }
    const live = this.live as Session;
    if (this.setup.manualTurns) {
      if (this.activityOpen) live.sendRealtimeInput({ activityEnd: {} });
      this.activityOpen = false;
    } else {
      // With automatic activity detection, end-of-stream makes Gemini close the turn now.
      live.sendRealtimeInput({ audioStreamEnd: true });
    }
    this.audioSinceCommit = false;
    this.audioTurnPending = true;
    this.translator.committed();
  }

  /**
   * OpenAI clients send it on every barge-in, to cut the assistant's audio item at what was
   * played. Gemini drops the output of an interrupted turn itself and keeps no item to cut, so
   * it is acknowledged as OpenAI acknowledges it, with the client's values.
   */
  private truncateItem(event: RealtimeClientEvent): void {
    if (typeof event.item_id !== 'string' || event.item_id.length === 0) {
      this.translator.error('invalid_value', 'conversation.item.truncate needs an item_id', event.event_id, 'invalid_request_error', 'item_id');
      return;
    }
    this.translator.reply({
      type: 'conversation.item.truncated',
      item_id: event.item_id,
      content_index: typeof event.content_index === 'number' ? event.content_index : 0,
      audio_end_ms: typeof event.audio_end_ms === 'number' ? event.audio_end_ms : 0,
    });
  }

  /**
   * Audio already streamed to Gemini cannot be taken back (its activity detection has heard
   * it); what is cleared is the adapter's record of uncommitted audio, so a commit that
   * follows is refused as empty, as OpenAI refuses it. An open manual activity stays open:
   * ending it would make Gemini answer the audio the client just discarded.
   */
  private clearAudio(): void {
    this.audioSinceCommit = false;
    this.translator.reply({ type: 'input_audio_buffer.cleared' });
  }

  private createItem(event: RealtimeClientEvent): void {
    const item = asRecord(event.item);
    const role = item.role;
    if (item.type !== 'message' || (role !== 'user' && role !== 'assistant')) {
      this.translator.error(
        'unsupported_item',
        'The Gemini realtime provider accepts only user and assistant message items',
        event.event_id,
      );
      return;
    }
    const parts: Part[] = [];
    for (const raw of Array.isArray(item.content) ? item.content : []) {
      const part = asRecord(raw);
      if ((part.type === 'input_text' || part.type === 'output_text' || part.type === 'text') && typeof part.text === 'string') {
        parts.push({ text: part.text });
      } else if (part.type === 'input_audio' && typeof part.audio === 'string') {
        parts.push({ inlineData: { data: part.audio, mimeType: INPUT_MIME } });
      } else {
        this.translator.error('unsupported_content', `The Gemini realtime provider does not support "${String(part.type)}" content`, event.event_id);
        return;
      }
    }
    if (parts.length === 0) {
      this.translator.error('invalid_value', 'The item has no content', event.event_id);
      return;
    }
    const turn: Content = { role: role === 'assistant' ? 'model' : 'user', parts };
    (this.live as Session).sendClientContent({ turns: [turn], turnComplete: false });
    this.contentSent = true;
    if (role === 'user') this.textTurnPending = true;
    const id = typeof item.id === 'string' && item.id ? item.id : newId('item');
    this.translator.itemCreated({ ...(item as unknown as GA.ConversationItem), id, object: 'realtime.item', status: 'completed' } as GA.ConversationItem);
  }

  /**
   * Committed audio is answered by Gemini without being asked; otherwise (text items, or a
   * bare request to speak) the turn is closed, which starts generation.
   */
  private createResponse(): void {
    if (this.audioTurnPending && !this.textTurnPending) {
      this.audioTurnPending = false;
      return;
    }
    (this.live as Session).sendClientContent({ turnComplete: true });
    this.textTurnPending = false;
    this.audioTurnPending = false;
    this.contentSent = true;
  }

  // --- connection ----------------------------------------------------------------------

  private setupOptions(): { model: string; defaultVoice: string | undefined } {
    return { model: this.model, defaultVoice: this.providerOptions.defaultVoice };
  }

  private buildSetup(session: GaSession): GeminiSetup {
    const setup = geminiSetup(session, this.setupOptions());
    if (setup.ignored.length > 0) this.logger.debug({ ignored: setup.ignored }, 'gemini realtime: settings without a Gemini equivalent');
    return setup;
  }

  private reportRefused(eventId: string | undefined, setup: GeminiSetup = this.setup): void {
    for (const what of setup.refused) {
      this.translator.refuse(`The Gemini realtime provider does not support ${what}`, eventId, what.split(' ')[0]);
    }
  }

  /** Reconnects with the new setup; client events arriving meanwhile are held (bounded). */
  private async reconnect(eventId: string | undefined): Promise<void> {
    const old = this.live;
    this.live = undefined;
    this.generation++;
    this.closeLive(old);
    this.activityOpen = false;
    try {
      const live = await this.openLive('updated', this.closing.signal);
      if (this.closed) {
        // Closed just as the new connection was handed over: it is nobody's to close but ours.
        this.closeLive(live);
        return;
      }
      this.live = live;
      this.reportRefused(eventId);
      const held = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      this.pendingOverflowReported = false;
      for (const { event } of held) this.send(event);
    } catch (err) {
      if (this.closed) return;
      this.closed = true;
      const e = err instanceof AppError ? err : connectFailed('could not be reached');
      this.options.onClose({ code: e.code, message: e.message });
    }
  }

  private hold(event: RealtimeClientEvent): void {
    const bytes = approxBytes(event);
    const max = this.providerOptions.maxPendingEvents ?? 256;
    const maxBytes = this.providerOptions.maxPendingBytes ?? 4 * 1024 * 1024;
    if (this.pending.length >= max || this.pendingBytes + bytes > maxBytes) {
      if (!this.pendingOverflowReported) {
        this.pendingOverflowReported = true;
        this.translator.error('buffer_full', 'Too many events while the session is being reconfigured; events were dropped', event.event_id, 'server_error');
      }
      return;
    }
    this.pending.push({ event, bytes });
    this.pendingBytes += bytes;
  }

  /**
   * One Live connection. `ai.live.connect` resolves only after `setupComplete` and never
   * rejects when the socket fails first, so failure, timeout and abort are watched here, and
   * on any of them the socket (made by our factory, so reachable before the SDK hands the
   * session over) is closed: otherwise a setup the provider never answers keeps it open.
   */
  private openLive(ack: 'created' | 'created+updated' | 'updated', signal?: AbortSignal): Promise<Session> {
    const generation = ++this.generation;
    const current = (): boolean => generation === this.generation && !this.closed;
    const timeoutMs = this.providerOptions.connectTimeoutMs ?? 15_000;
    const secrets = [this.providerOptions.apiKey];
    let handshakeStatus: number | undefined;

    return new Promise<Session>((resolve, reject) => {
      let settled = false;
      // Made by the SDK during the connect call; `fail` can run before that (an aborted signal).
      let socket: LiveSocket | undefined;
      const fail = (reason: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (generation === this.generation) this.generation++;
        socket?.close();
        reject(reason);
      };
      const onAbort = (): void => fail(signal?.reason);
      const timer = setTimeout(() => fail(connectFailed('did not answer in time')), timeoutMs);
      timer.unref();
      if (signal?.aborted) {
        fail(signal.reason);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });

      const live = this.liveWith({
        create: (url, headers, callbacks) => {
          socket = new LiveSocket(url, headers, callbacks);
          // The SDK may make it after an await of its own (Vertex auth): too late to be used.
          if (settled) socket.close();
          return socket;
        },
      });
      const sdkSession = live.connect({
        model: this.model,
        config: this.setup.config,
        callbacks: {
          onmessage: (msg) => {
            if (!current()) return;
            // The SDK calls this from a floating promise: anything thrown would be an unhandled rejection.
            try {
              if (msg.setupComplete) {
                if (ack !== 'updated') this.translator.sessionEvent('session.created', this.setup.effective);
                if (ack !== 'created') this.translator.sessionEvent('session.updated', this.setup.effective);
                return;
              }
              this.translator.handle(msg);
            } catch (err) {
              this.logger.error({ err }, 'gemini realtime: could not map a server message');
            }
          },
          onerror: (e) => {
            const message = redactSecrets(String((e as { message?: unknown }).message ?? ''), secrets);
            const status = /Unexpected server response: (\d{3})/.exec(message)?.[1];
            if (status) handshakeStatus = Number(status);
            this.logger.debug({ err: message }, 'gemini realtime socket error');
          },
          onclose: (e) => {
            if (!settled) {
              fail(handshakeStatus ? refused(handshakeStatus) : closedEarly(e.code, safeProviderText(e.reason, secrets, 120)));
              return;
            }
            if (!current()) return;
            this.closed = true;
            const text = safeProviderText(e.reason, secrets, 120);
            this.logger.info({ code: e.code }, 'gemini realtime connection closed by the provider');
            this.options.onClose({
              code: 'PROVIDER_ERROR',
              message: `The realtime provider closed the connection (code ${e.code}${text ? `: ${text}` : ''})`,
            });
          },
        },
      });
      sdkSession.then(
        (session) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(session);
        },
        (err: unknown) => {
          this.logger.debug({ err: redactSecrets(err instanceof Error ? err.message : String(err), secrets) }, 'gemini live connect threw');
          fail(connectFailed('could not be reached'));
        },
      );
    });
  }

  private closeLive(session: Session | undefined): void {
    session?.close();
  }

  /** The `ws` socket of the session in use, for backpressure (bufferedAmount, pause). */
  private socket(): WebSocket | undefined {
    const conn = this.live?.conn;
    return conn instanceof LiveSocket ? conn.ws : undefined;
  }
}

/**
 * `ai.live` with this adapter's socket factory. The SDK's own Node sockets cannot be reached
 * before `live.connect` resolves (at `setupComplete`) and have no handshake timeout, so a
 * connection given up while opening could never be closed. `Live` takes its socket factory as
 * a constructor argument (the SDK's seam between its Node and browser builds); the API
 * settings (key, base URL, version, headers) are the client's own, from its `apiClient`, a
 * protected member that the SDK declares in its types.
 */
async function liveWithSockets(client: Promise<GoogleGenAI>): Promise<LiveWithSockets> {
  const [{ Live: LiveClass }, ai] = await Promise.all([import('@google/genai'), client]);
  const apiClient = (ai as unknown as { apiClient: LiveArgs[0] }).apiClient;
  return (factory) => new LiveClass(apiClient, apiClient.clientOptions.auth, factory);
}

/**
 * One Live WebSocket, made for the SDK by our factory. It behaves as the SDK's own Node socket
 * (the callbacks become the `ws` socket's `on*` handlers), but this adapter holds it: to read
 * its backpressure and to close it whether or not the SDK has handed the session over.
 */
class LiveSocket {
  ws: WebSocket | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly headers: Record<string, string>,
    private readonly callbacks: SocketCallbacks,
  ) {}

  connect(): void {
    if (this.closed) return;
    const ws = new WebSocket(this.url, { headers: this.headers });
    ws.onopen = this.callbacks.onopen;
    ws.onerror = this.callbacks.onerror;
    ws.onclose = this.callbacks.onclose;
    ws.onmessage = this.callbacks.onmessage;
    this.ws = ws;
  }

  send(message: string): void {
    if (!this.ws) throw new Error('WebSocket is not connected');
    this.ws.send(message);
  }

  /**
   * Closes the socket, or abandons its opening handshake. Like the OpenAI adapter: a provider
   * that does not answer the close frame is cut after a second.
   */
  close(): void {
    this.closed = true;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    ws.close();
    setTimeout(() => ws.terminate(), 1000).unref();
  }
}

function outputModality(setup: GeminiSetup): 'audio' | 'text' {
  return setup.effective.output_modalities?.[0] === 'text' ? 'text' : 'audio';
}

function approxBytes(event: RealtimeClientEvent): number {
  return typeof event.audio === 'string' ? event.audio.length + 64 : JSON.stringify(event).length;
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function connectFailed(why: string): AppError {
  return new AppError('PROVIDER_ERROR', `The realtime provider ${why}`);
}

function refused(status: number): AppError {
  const reason = status === 401 || status === 403 ? 'refused the server credentials' : status === 429 ? 'is rate limiting or out of quota' : 'refused the connection';
  return new AppError('PROVIDER_ERROR', `The realtime provider ${reason} (HTTP ${status})`, { details: { status } });
}

/** Gemini refuses a bad key or setup by accepting the socket and closing it (e.g. 1007/1008 with a reason). */
function closedEarly(code: number, reason: string | undefined): AppError {
  return new AppError('PROVIDER_ERROR', `The realtime provider closed the connection during setup (code ${code}${reason ? `: ${reason}` : ''})`);
}
