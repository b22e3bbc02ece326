import type * as GenAI from '@google/genai';

let loading: Promise<typeof GenAI> | undefined;
let loaded: typeof GenAI | undefined;

/**
 * `@google/genai`, loaded on first use: a node without a Gemini key never holds its code
 * (~10 MB of resident memory). Providers start loading it when they are built, at start-up.
 */
function genai(): Promise<typeof GenAI> {
  return (loading ??= import('@google/genai').then((sdk) => (loaded = sdk)));
}

/** How a Gemini client is made: the key, a base URL (proxies, stand-ins), and for calls that have them a timeout and retries. */
export interface GenaiClientOptions {
  apiKey: string;
  baseUrl?: string | undefined;
  /**
   * The SDK's per-attempt timeout, which stays armed until the body has been read: a bound on
   * a whole unary call (embeddings), never to be given for streams (gemini-model.ts bounds their head).
   */
  timeoutMs?: number;
  maxRetries?: number;
}

/**
 * A client of the SDK once it is loaded (the load starts now). A failed load fails each call
 * made through the client, not the process: the promise's failure is handled here.
 */
export function genaiClient(options: GenaiClientOptions): Promise<GenAI.GoogleGenAI> {
  const { apiKey, baseUrl, timeoutMs, maxRetries } = options;
  const httpOptions = {
    ...(baseUrl ? { baseUrl } : {}),
    ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }),
    ...(maxRetries === undefined ? {} : { retryOptions: { attempts: maxRetries + 1 } }),
  };
  const client = genai().then((sdk) => new sdk.GoogleGenAI({ apiKey, ...(Object.keys(httpOptions).length ? { httpOptions } : {}) }));
  client.catch(() => {});
  return client;
}

/** Whether `err` is the SDK's `ApiError` (none can exist before the SDK was loaded). */
export function isGenaiApiError(err: unknown): err is GenAI.ApiError {
  return loaded !== undefined && err instanceof loaded.ApiError;
}
