/** JSON over fetch against the gateway, with its error shapes turned into one error type. */

/** A failure as the gateway words it: a stable code and a message for people. */
export class GatewayError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 0) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.status = status;
  }
}

/** Any thrown value as a GatewayError (network failures are NETWORK, not a gateway code). */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof DOMException && err.name === 'AbortError') return new GatewayError('ABORTED', 'Stopped');
  return new GatewayError('NETWORK', err instanceof Error ? err.message : String(err));
}

/** The gateway's `{error, code}`, or OpenAI's `{error: {message, code}}` on /v1. */
export function errorFromBody(body: unknown, status: number): GatewayError {
  if (typeof body === 'object' && body !== null) {
    const b = body as { error?: unknown; code?: unknown };
    if (typeof b.error === 'string') return new GatewayError(typeof b.code === 'string' ? b.code : `HTTP_${status}`, b.error, status);
    if (typeof b.error === 'object' && b.error !== null) {
      const e = b.error as { message?: unknown; code?: unknown; type?: unknown };
      const code = typeof e.code === 'string' ? e.code : typeof e.type === 'string' ? e.type : `HTTP_${status}`;
      return new GatewayError(code.toUpperCase(), typeof e.message === 'string' ? e.message : 'Request failed', status);
    }
  }
  return new GatewayError(`HTTP_${status}`, `The gateway answered ${status}`, status);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Sent as `Authorization: Bearer`; the httpOnly cookie goes along anyway (same origin). */
  token?: string | null;
  signal?: AbortSignal;
}

/** Headers for a JSON request carrying the token. */
export function jsonHeaders(token: string | null | undefined, withBody: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  if (withBody) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

export async function requestJson<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const withBody = options.body !== undefined;
  let res: Response;
  try {
    res = await fetch(path, {
      method: options.method ?? (withBody ? 'POST' : 'GET'),
      headers: jsonHeaders(options.token, withBody),
      body: withBody ? JSON.stringify(options.body) : null,
      credentials: 'same-origin',
      signal: options.signal ?? null,
    });
  } catch (err) {
    throw asGatewayError(err);
  }
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) throw errorFromBody(body, res.status);
  return body as T;
}
