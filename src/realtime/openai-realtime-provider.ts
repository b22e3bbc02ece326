/**
 * OpenAI Realtime GA over a plain WebSocket (`ws`): `wss://api.openai.com/v1/realtime?model=…`
 * with `Authorization: Bearer <key>` and nothing else (no `OpenAI-Beta` header: the beta
 * shape is retired). Any server speaking the protocol works, including a `ws://` one on
 * loopback. Events pass through verbatim in both directions; this IS the GA protocol.
 */
import WebSocket from 'ws';
import type { RawData } from 'ws';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type {
  RealtimeClientEvent,
  RealtimeConnectOptions,
  RealtimeProvider,
  RealtimeServerEvent,
  RealtimeUpstream,
} from './realtime-provider.js';
import { redactSecrets } from '../log-redaction.js';
import { safeProviderText } from './redact-secrets.js';

export const OPENAI_REALTIME_URL = 'wss://api.openai.com/v1/realtime';
export const OPENAI_REALTIME_MODEL = 'gpt-realtime';

export interface OpenAIRealtimeProviderOptions {
  apiKey: string;
  /** Realtime endpoint; `http(s)://` is read as `ws(s)://`. Default {@link OPENAI_REALTIME_URL}. */
  url?: string;
  /** Sent as the `model` query parameter. Default {@link OPENAI_REALTIME_MODEL}. */
  model?: string;
  /** Time allowed for TCP connect plus the HTTP upgrade. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Largest server frame accepted. Default 16 MiB (audio deltas are far smaller). */
  maxPayloadBytes?: number;
}

/** How long a closing socket may wait for the server's close frame before it is destroyed. */
const CLOSE_GRACE_MS = 1000;

export class OpenAIRealtimeProvider implements RealtimeProvider {
  readonly kind = 'openai' as const;
  private readonly apiKey: string;
  private readonly url: string;
  private readonly handshakeTimeoutMs: number;
  private readonly maxPayloadBytes: number;

  constructor(options: OpenAIRealtimeProviderOptions) {
    if (!options.apiKey) throw new Error('OpenAIRealtimeProvider needs an API key');
    this.apiKey = options.apiKey;
    const url = new URL(options.url ?? OPENAI_REALTIME_URL);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error(`Unsupported realtime URL scheme ${url.protocol}`);
    url.searchParams.set('model', options.model ?? OPENAI_REALTIME_MODEL);
    this.url = url.toString();
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.maxPayloadBytes = options.maxPayloadBytes ?? 16 * 1024 * 1024;
  }

  connect(options: RealtimeConnectOptions): Promise<RealtimeUpstream> {
    const { signal, logger } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<RealtimeUpstream>((resolve, reject) => {
      const ws = new WebSocket(this.url, {
        headers: { Authorization: `Bearer ${this.apiKey}` },
        handshakeTimeout: this.handshakeTimeoutMs,
        maxPayload: this.maxPayloadBytes,
        perMessageDeflate: false,
      });
      let settled = false;
      // Backstop for the whole attempt: `handshakeTimeout` is applied by `ws`, this also covers DNS.
      const timer = setTimeout(() => fail(unreachable('did not answer in time')), this.handshakeTimeoutMs + 1000);
      timer.unref();

      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        ws.off('unexpected-response', onUnexpectedResponse);
      };
      const fail = (reason: unknown): void => {
        if (settled) return;
        settled = true;
        cleanup();
        ws.terminate();
        reject(reason);
      };
      const onAbort = (): void => fail(signal?.reason);
      const onUnexpectedResponse = (_req: unknown, res: { statusCode?: number; resume(): void }): void => {
        res.resume();
        fail(refused(res.statusCode));
      };

      signal?.addEventListener('abort', onAbort, { once: true });
      ws.on('unexpected-response', onUnexpectedResponse);
      // Stays attached for the socket's life: `ws` throws on an 'error' nobody listens to.
      ws.on('error', (err) => {
        if (settled) return;
        logger.debug({ err: redactSecrets(err.message, [this.apiKey]) }, 'realtime upstream connect failed');
        fail(unreachable(/timed out/i.test(err.message) ? 'did not answer in time' : 'could not be reached'));
      });
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        cleanup();
        const upstream = new OpenAIRealtimeUpstream(ws, this.apiKey, options);
        if (options.initialUpdate) upstream.send(options.initialUpdate);
        resolve(upstream);
      });
    });
  }
}

class OpenAIRealtimeUpstream implements RealtimeUpstream {
  private closedLocally = false;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly ws: WebSocket,
    private readonly apiKey: string,
    private readonly options: RealtimeConnectOptions,
  ) {
    this.logger = options.logger;
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
    ws.on('error', (err) => {
      if (!this.closedLocally) this.logger.warn({ err: redactSecrets(err.message, [apiKey]) }, 'realtime upstream socket error');
    });
    ws.on('close', (code, reason) => {
      if (this.killTimer) clearTimeout(this.killTimer);
      if (this.closedLocally) return;
      const text = safeProviderText(reason.toString('utf8'), [this.apiKey], 120);
      this.logger.info({ code }, 'realtime upstream closed by the provider');
      options.onClose({
        code: 'PROVIDER_ERROR',
        message: `The realtime provider closed the connection (code ${code}${text ? `: ${text}` : ''})`,
      });
    });
  }

  send(event: RealtimeClientEvent): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(event));
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  pause(): boolean {
    this.ws.pause();
    return true;
  }

  resume(): void {
    this.ws.resume();
  }

  close(): void {
    if (this.closedLocally) return;
    this.closedLocally = true;
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    this.killTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
    this.killTimer.unref();
  }

  private receive(data: RawData, isBinary: boolean): void {
    if (this.closedLocally) return;
    if (isBinary) {
      this.logger.debug({}, 'realtime upstream sent a binary frame; ignored');
      return;
    }
    let text = rawText(data);
    // The provider never needs to tell a client the server's key; make sure it cannot.
    if (text.includes(this.apiKey)) text = text.split(this.apiKey).join('[redacted]');
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch {
      this.logger.warn({ bytes: text.length }, 'realtime upstream sent a frame that is not JSON; ignored');
      return;
    }
    if (typeof event !== 'object' || event === null || Array.isArray(event) || typeof (event as { type?: unknown }).type !== 'string') {
      this.logger.warn({}, 'realtime upstream sent a frame without a type; ignored');
      return;
    }
    try {
      this.options.onEvent(event as RealtimeServerEvent);
    } catch (err) {
      // A throw here would escape the socket's data handler and take the process down.
      this.logger.error({ err }, 'realtime upstream event handler threw');
    }
  }
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function refused(status: number | undefined): AppError {
  const reason =
    status === 401 || status === 403
      ? 'refused the server credentials'
      : status === 404
        ? 'does not offer this model'
        : status === 429
          ? 'is rate limiting or out of quota'
          : status !== undefined && status >= 500
            ? 'had an internal error'
            : 'refused the connection';
  return new AppError('PROVIDER_ERROR', `The realtime provider ${reason}${status ? ` (HTTP ${status})` : ''}`, { details: { status } });
}

function unreachable(why: string): AppError {
  return new AppError('PROVIDER_ERROR', `The realtime provider ${why}`);
}
