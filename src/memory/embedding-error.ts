import { AppError } from '../errors.js';
import { providerError } from '../models/provider-error.js';

/**
 * What a remote embedder throws when an upstream call fails: the abort reason when the caller
 * aborted; otherwise the client-safe provider error for the HTTP status, or an unreachable
 * provider when there was none (refused connection, timeout). The upstream body is never
 * copied into the message. A 404 names the configured embedding model, which is the server's
 * choice, not the client's: it is a PROVIDER_ERROR, not INVALID_MODEL.
 */
export function embeddingFailure(provider: string, signal: AbortSignal | undefined, err: unknown, status: number | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (status === 404) {
    return new AppError('PROVIDER_ERROR', `The ${provider} embedding provider does not offer the configured model (HTTP 404)`, {
      cause: err,
      details: { status },
    });
  }
  return providerError(`${provider} embedding`, status, err);
}

/** An answer that arrived but cannot be used: wrong count, wrong size, unknown index. */
export function embeddingAnswerError(provider: string, problem: string): AppError {
  return new AppError('PROVIDER_ERROR', `The ${provider} embedding provider ${problem}`);
}

/** Vector sizes every adapter accepts; each provider narrows it further upstream. */
export function checkDimensions(dimensions: number): number {
  if (!Number.isInteger(dimensions) || dimensions < 1 || dimensions > 65_536) {
    throw new RangeError(`Embedding dimensions must be an integer from 1 to 65536, got ${dimensions}`);
  }
  return dimensions;
}
