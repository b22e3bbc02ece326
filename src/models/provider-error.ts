import { AppError } from '../errors.js';
import type { ModelFinishReason, ModelStreamPart, TokenUsage } from './language-model.js';

/**
 * Maps an upstream HTTP status to a client-safe error. The upstream body is never copied:
 * it can echo prompts, account details or parts of the key.
 */
export function providerError(provider: string, status: number | undefined, cause: unknown): AppError {
  if (status === 404) {
    return new AppError('INVALID_MODEL', `The ${provider} provider does not offer this model`, { cause });
  }
  const reason =
    status === undefined
      ? 'could not be reached'
      : status === 401 || status === 403
        ? 'refused the server credentials'
        : status === 429
          ? 'is rate limiting or out of quota'
          : status >= 500
            ? 'had an internal error'
            : 'rejected the request';
  const suffix = status === undefined ? '' : ` (HTTP ${status})`;
  return new AppError('PROVIDER_ERROR', `The ${provider} model provider ${reason}${suffix}`, { cause, details: { status } });
}

export function streamCutError(provider: string, cause?: unknown): AppError {
  return new AppError('PROVIDER_ERROR', `The ${provider} model stream ended unexpectedly`, { cause });
}

/**
 * What a remote adapter throws when its stream fails: the abort reason when the call was
 * aborted; the status mapping for an HTTP error; otherwise a cut stream if data had arrived,
 * an unreachable provider if not.
 */
export function streamFailure(provider: string, signal: AbortSignal, err: unknown, httpStatus: number | undefined, received: boolean): unknown {
  if (signal.aborted) return signal.reason;
  if (httpStatus !== undefined) return providerError(provider, httpStatus, err);
  return received ? streamCutError(provider, err) : providerError(provider, undefined, err);
}

/** The closing `finish` part; a stream that ended without a finish reason was cut. */
export function finishPart(provider: string, signal: AbortSignal, finishReason: ModelFinishReason | undefined, usage: TokenUsage | undefined): ModelStreamPart {
  if (signal.aborted) throw signal.reason;
  if (!finishReason) throw streamCutError(provider);
  return { type: 'finish', finishReason, usage };
}
