import { AppError } from '../errors.js';

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
