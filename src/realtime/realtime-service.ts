import { admitApiKey } from '../auth/api-key-policy.js';
import { ownerOf, type Principal } from '../chat/principal.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { addressKey } from '../ratelimit/address-key.js';
import { chatLimit, type RateLimiter } from '../ratelimit/rate-limiter.js';
import type { ConversationStore } from '../stores/conversation-store.js';
import { GEMINI_LIVE_MODEL, GeminiRealtimeProvider } from './gemini-realtime-provider.js';
import { OPENAI_REALTIME_MODEL, OpenAIRealtimeProvider } from './openai-realtime-provider.js';
import type { RealtimeConnectOptions, RealtimeProvider, RealtimeUpstream } from './realtime-provider.js';
import { DEFAULT_REALTIME_LIMITS, RealtimeSession, type RealtimeSessionOptions } from './realtime-session.js';

/** What a protocol adapter gives for one session; the service adds admission, limits and usage. */
export type RealtimeSessionCallbacks = Omit<RealtimeSessionOptions, 'provider' | 'logger' | 'limits'> & {
  /**
   * Who is asking, resolved when the session first opens its upstream (Socket.IO re-checks the
   * connection's token then); throws UNAUTHORIZED for a token that died.
   */
  principal(): Promise<Principal>;
  /** `socket.io` or `websocket`, for logs. */
  protocol: string;
  /**
   * When the caller's credential stops being accepted (ms since the epoch: a JWT's `exp` plus the
   * clock skew), read at admission; undefined when it does not expire. The session ends then.
   */
  validUntil?(): number | undefined;
};

/** What a session whose token expires while it is open is told. */
const TOKEN_EXPIRED = 'Invalid token: token expired; reconnect with a new token';

export interface RealtimeServiceDeps {
  config: Config;
  limiter: RateLimiter;
  store: ConversationStore;
  logger: Logger;
  /** Injected in tests of the service alone; built from config otherwise. */
  provider?: RealtimeProvider | null;
  /** Counts the coded errors sessions send their clients. */
  metrics?: Pick<Metrics, 'error'> | undefined;
}

/**
 * Realtime voice sessions for both client protocols (Socket.IO `realtime-*` and the
 * `/v1/realtime` WebSocket): one provider from config, and the same guards for both. Before a
 * session opens its upstream it is admitted: the caller's token is re-checked, at most
 * REALTIME_MAX_SESSIONS_PER_CLIENT run per user (or per anonymous IP), and opening counts as
 * one chat turn against the rate limit. Each session's usage is logged and stored when it ends.
 */
export class RealtimeService {
  readonly provider: RealtimeProvider | null;
  readonly #open = new Map<string, number>();
  readonly #sessions = new Set<RealtimeSession>();

  /** The model sessions run on, as an API key's allow-list names it (`openai:gpt-realtime`). */
  readonly #model: { provider: string; modelId: string };

  constructor(private readonly deps: RealtimeServiceDeps) {
    this.provider = deps.provider !== undefined ? deps.provider : createRealtimeProvider(deps.config);
    const p = deps.config.realtime.provider;
    this.#model = { provider: this.provider?.kind ?? p?.kind ?? 'openai', modelId: p?.model ?? (p?.kind === 'gemini' ? GEMINI_LIVE_MODEL : OPENAI_REALTIME_MODEL) };
  }

  /** Open sessions (all clients), for metrics and shutdown. */
  get size(): number {
    return this.#sessions.size;
  }

  session(callbacks: RealtimeSessionCallbacks): RealtimeSession {
    const { config, logger } = this.deps;
    let admitted: { owner: string; clientKey: string; startedAt: number } | undefined;
    let closed = false;
    let expiry: NodeJS.Timeout | undefined;
    const sessionId = crypto.randomUUID();
    const log = logger.child({ realtimeSession: sessionId, protocol: callbacks.protocol });
    const provider = this.provider
      ? this.#gated(this.provider, callbacks, (a) => {
          // Closed while connecting: the session never used its slot.
          if (closed) {
            this.#release(a.clientKey);
            return;
          }
          admitted = a;
          // The token was checked once, here: the session must not outlive it on the server's key.
          const until = callbacks.validUntil?.();
          if (until !== undefined && until - Date.now() < config.realtime.maxSessionMs) {
            expiry = setTimeout(() => session.terminate('UNAUTHORIZED', TOKEN_EXPIRED), Math.max(0, until - Date.now()));
            expiry.unref();
          }
        })
      : null;
    const session: RealtimeSession = new RealtimeSession({
      provider,
      logger: log,
      onServerEvent: callbacks.onServerEvent,
      ...(callbacks.onAudio ? { onAudio: callbacks.onAudio } : {}),
      onError: this.deps.metrics
        ? (error) => {
            this.deps.metrics!.error(error, `realtime:${callbacks.protocol}`);
            callbacks.onError(error);
          }
        : callbacks.onError,
      clientBacklogBytes: callbacks.clientBacklogBytes,
      onUsage: (usage, total) => {
        log.debug({ usage, total }, 'realtime response usage');
        callbacks.onUsage?.(usage, total);
      },
      onClose: (reason) => {
        closed = true;
        clearTimeout(expiry);
        this.#sessions.delete(session);
        if (admitted) {
          this.#release(admitted.clientKey);
          const usage = session.usage;
          const endedAt = Date.now();
          log.info({ owner: admitted.owner, ms: endedAt - admitted.startedAt, usage, end: reason.initiator, code: reason.code }, 'realtime session ended');
          void this.deps.store
            .recordRealtimeSession({
              id: sessionId,
              ownerId: admitted.owner,
              provider: this.provider!.kind,
              startedAt: admitted.startedAt,
              endedAt,
              endReason: reason.code ? `${reason.initiator}: ${reason.code}` : reason.initiator,
              usage: {
                responses: usage.responses,
                inputTokens: usage.inputTokens,
                outputTokens: usage.outputTokens,
                inputAudioTokens: usage.inputAudioTokens,
                outputAudioTokens: usage.outputAudioTokens,
                inputTextTokens: usage.inputTextTokens,
                outputTextTokens: usage.outputTextTokens,
              },
            })
            .catch((err: unknown) => log.error({ err }, 'could not store realtime session usage'));
        }
        callbacks.onClose(reason);
      },
      limits: {
        maxAudioChunkBytes: config.realtime.maxAudioChunkBytes,
        // An append carries its audio as base64: the largest chunk allowed must fit in one event.
        maxEventBytes: Math.max(DEFAULT_REALTIME_LIMITS.maxEventBytes, Math.ceil(config.realtime.maxAudioChunkBytes / 3) * 4 + 4096),
        idleTimeoutMs: config.realtime.idleTimeoutMs,
        maxSessionMs: config.realtime.maxSessionMs,
        upstreamIdleMs: config.models.idleTimeoutMs,
      },
    });
    this.#sessions.add(session);
    return session;
  }

  /** Ends every session for a shutdown: each client is told why (INTERNAL) and each record says the server ended it. */
  closeAll(): void {
    for (const s of [...this.#sessions]) s.shutdown();
  }

  /** The provider, with admission run before its connect: a refusal fails the session with a code. */
  #gated(provider: RealtimeProvider, callbacks: RealtimeSessionCallbacks, onAdmitted: (a: { owner: string; clientKey: string; startedAt: number }) => void): RealtimeProvider {
    return {
      kind: provider.kind,
      connect: async (options: RealtimeConnectOptions): Promise<RealtimeUpstream> => {
        const principal = await callbacks.principal();
        // An API key's model allow-list must name the realtime model; its own limit counts the session like a chat turn.
        if (principal.apiKey) await admitApiKey(principal, { requested: this.#model.modelId, served: this.#model }, this.deps.limiter);
        const clientKey = principal.userId ?? `ip:${addressKey(principal.ip, this.deps.config.rateLimit.ipv6Prefix)}`;
        const max = this.deps.config.realtime.maxSessionsPerClient;
        if ((this.#open.get(clientKey) ?? 0) >= max) {
          throw new AppError('RATE_LIMIT', `At most ${max} realtime session${max === 1 ? '' : 's'} may be open at once per ${principal.userId ? 'user' : 'address'}; close one first`);
        }
        this.#open.set(clientKey, (this.#open.get(clientKey) ?? 0) + 1);
        let admittedHere = false;
        try {
          const { key, limit } = chatLimit(principal, this.deps.config.rateLimit);
          const decision = await this.deps.limiter.consume(key, limit);
          if (!decision.allowed) {
            const seconds = Math.max(1, Math.ceil((decision.reset - Date.now()) / 1000));
            throw new AppError('RATE_LIMIT', `Too many requests; retry in ${seconds} s`);
          }
          options.signal?.throwIfAborted();
          const upstream = await provider.connect(options);
          admittedHere = true;
          onAdmitted({ owner: ownerOf(principal), clientKey, startedAt: Date.now() });
          return upstream;
        } finally {
          if (!admittedHere) this.#release(clientKey);
        }
      },
    };
  }

  #release(clientKey: string): void {
    const n = (this.#open.get(clientKey) ?? 1) - 1;
    if (n <= 0) this.#open.delete(clientKey);
    else this.#open.set(clientKey, n);
  }
}

/** The one place that turns realtime configuration into a provider; null when none is configured. */
export function createRealtimeProvider(config: Config): RealtimeProvider | null {
  const p = config.realtime.provider;
  if (!p) return null;
  if (p.kind === 'openai') return new OpenAIRealtimeProvider({ apiKey: p.apiKey, ...(p.url ? { url: p.url } : {}), ...(p.model ? { model: p.model } : {}) });
  return new GeminiRealtimeProvider({ apiKey: p.apiKey, ...(p.baseUrl ? { baseUrl: p.baseUrl } : {}), ...(p.model ? { model: p.model } : {}) });
}
