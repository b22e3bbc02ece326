import type { AppError, ErrorCode } from '../errors.js';
import type { TokenUsage } from '../models/language-model.js';
import type { FinishReason } from '../stores/conversation-store.js';

/** How a chat turn ended, as the pipeline stores it. */
export interface TurnOutcome {
  finishReason: FinishReason;
  usage: TokenUsage | undefined;
  /** The coded error the client is told, if any. */
  error?: AppError | undefined;
}

/** One running chat turn: `firstToken` at most once, then `end` exactly once. */
export interface TurnObservation {
  /** The first reply text was handed to the client. */
  firstToken(): void;
  end(outcome: TurnOutcome): void;
}

/**
 * What the gateway reports about itself. The core calls this port; the Node entry passes a
 * Prometheus implementation (src/node/prom-metrics.ts), everything else (unit wiring,
 * Workers) the no-op one. Nothing here is called per token: a turn costs one `turnStarted`,
 * one `firstToken` and one `end`.
 *
 * Label values must stay few: routes are patterns, protocols and limit kinds are names the
 * code chooses, and implementations cap what clients can vary (model names).
 */
export interface Metrics {
  /** False for the no-op implementation: callers may skip work that only feeds metrics. */
  readonly enabled: boolean;
  /** A chat turn started streaming (after admission) on `protocol` (`sse`, `ai:chat`, ...), with this model. */
  turnStarted(protocol: string, provider: string, model: string): TurnObservation;
  /** An HTTP request was answered; `route` is the matched route pattern (never the raw path). */
  httpRequest(method: string, route: string, status: number): void;
  /**
   * A coded error (an AppError, or a protocol's own error object) was sent to a client on
   * `protocol`; the same object counts once, however many layers report it.
   */
  error(error: { readonly code: ErrorCode }, protocol: string): void;
  /** A rate limit refused; `kind` names the limit (`chat:user`, `auth:ip`, ...). */
  rateLimited(kind: string): void;
  /** A model provider answered a request with its response head after `seconds`. */
  upstreamResponse(provider: string, seconds: number): void;
  /** A long-term memory recall took `seconds`. */
  memoryRecall(seconds: number, outcome: 'ok' | 'timeout' | 'error'): void;
}

const NO_TURN: TurnObservation = { firstToken() {}, end() {} };

export const noopMetrics: Metrics = {
  enabled: false,
  turnStarted: () => NO_TURN,
  httpRequest() {},
  error() {},
  rateLimited() {},
  upstreamResponse() {},
  memoryRecall() {},
};
