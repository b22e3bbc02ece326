/** Stable error codes of the wire contract (PROTOCOLS.md section 0). */
export const ERROR_CODES = [
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'RATE_LIMIT',
  'INVALID_MODEL',
  'BUSY',
  'PROVIDER_ERROR',
  'REALTIME_UNAVAILABLE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const HTTP_STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  RATE_LIMIT: 429,
  INVALID_MODEL: 400,
  BUSY: 409,
  PROVIDER_ERROR: 502,
  REALTIME_UNAVAILABLE: 503,
  INTERNAL: 500,
};

/**
 * An error whose message is safe to show a client. Anything that is not an AppError is
 * reported to clients as INTERNAL with a generic message, so upstream bodies, keys and
 * stacks never leave the process.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra fields safe for the client (e.g. retryAfterSeconds). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown>; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options?.status ?? HTTP_STATUS[code];
    this.details = options?.details;
  }
}

export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  return new AppError('INTERNAL', 'Internal server error', { cause: err });
}

export interface ErrorBody {
  error: string;
  code: ErrorCode;
}

export function errorBody(err: AppError): ErrorBody {
  return { error: err.message, code: err.code };
}
