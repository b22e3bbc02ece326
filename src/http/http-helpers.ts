import type { Context } from 'hono';
import { AppError, toAppError } from '../errors.js';
import type { Services } from '../services.js';
import type { RateLimitDecision } from '../ratelimit/rate-limiter.js';
import type { AppEnv } from './app-env.js';

/** The Node request behind a Hono context on the Node entry (`@hono/node-server` bindings); undefined on Workers. */
export interface NodeIncoming {
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error' | 'aborted', listener: (err?: Error) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  readonly complete: boolean;
}

/**
 * A request header (name in lower case). On Node it is read from the request's own header
 * object: asking Hono (`c.req.header`) builds a web `Headers` of every header first.
 */
export function requestHeader(c: Context, name: string): string | undefined {
  const headers = (c.env as { incoming?: { headers?: Record<string, string | string[] | undefined> } } | undefined)?.incoming?.headers;
  if (!headers) return c.req.header(name);
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * One header set on the response: `append` adds a value (Set-Cookie, Vary) where a plain set
 * replaces it. A function value is computed when the head is built: a streamed head is built
 * once the turn's upstream request is on its way, so its work (an anonymous cookie's HMAC)
 * is not in the time to first token.
 */
export type HeadEntry = readonly [name: string, value: HeadValue, append: boolean];
export type HeadValue = string | (() => string);

export function headValue(value: HeadValue): string {
  return typeof value === 'function' ? value() : value;
}

/**
 * Sets a response header: recorded here, put on the response by the platform middleware once
 * the route has answered (`applyHead`), or written by a route that writes its own head (SSE
 * on Node, see node-response.ts). Web `Headers` validate every value they take, so a response
 * that never becomes one (the SSE head) costs nothing here.
 */
export function setHeader(c: Context<AppEnv>, name: string, value: HeadValue, append = false): void {
  c.get('head').push([name, value, append]);
}

/** Puts the recorded headers on the route's response (a recorded header replaces the route's own of that name unless appended). */
export function applyHead(head: readonly HeadEntry[], headers: Headers): void {
  for (const [name, value, append] of head) {
    if (append) headers.append(name, headValue(value));
    else headers.set(name, headValue(value));
  }
}

export function nodeIncoming(c: Context): NodeIncoming | undefined {
  const incoming = (c.env as { incoming?: NodeIncoming } | undefined)?.incoming;
  return incoming && typeof incoming.on === 'function' ? incoming : undefined;
}

/** How much of a request body is read, and for how long (the chat config carries both). */
export interface BodyLimits {
  maxBodyBytes: number;
  /** A body not complete this long after its route began to read it is refused (408). */
  requestTimeoutMs: number;
}

/**
 * Reads a JSON body with a hard size cap, counting bytes as they arrive so a huge or
 * endless body is refused without being buffered, and a deadline, so a client that trickles
 * (or stalls) its body is answered with a code instead of holding its socket and buffers. On
 * Node the body is read from the socket's own stream: a small JSON body needs no web Request
 * and web stream built around it.
 */
export async function readJsonBody(c: Context, limits: BodyLimits): Promise<unknown> {
  const { maxBodyBytes: maxBytes, requestTimeoutMs } = limits;
  const type = requestHeader(c, 'content-type') ?? '';
  if (!/^application\/(.+\+)?json\b/i.test(type)) {
    throw new AppError('BAD_REQUEST', 'Content-Type must be application/json');
  }
  const declared = Number(requestHeader(c, 'content-length') ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const incoming = nodeIncoming(c);
  if (incoming) return parseJson(await readNodeBody(incoming, maxBytes, requestTimeoutMs));
  const body = c.req.raw.body;
  if (!body) throw new AppError('BAD_REQUEST', 'Request body is empty');
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(tooSlow(requestTimeoutMs)), requestTimeoutMs);
  });
  late.catch(() => {});
  try {
    for (;;) {
      const { done, value } = await Promise.race([
        reader.read().catch((err: unknown) => {
          throw cutOff(err);
        }),
        late,
      ]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return parseJson(concat(chunks, size));
}

/** One decoder for every body (a whole-buffer decode keeps no state); invalid bytes become U+FFFD. */
const UTF8 = new TextDecoder('utf-8', { fatal: false });

function parseJson(bytes: Uint8Array): unknown {
  const text = UTF8.decode(bytes);
  if (!text.trim()) throw new AppError('BAD_REQUEST', 'Request body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new AppError('BAD_REQUEST', 'Request body is not valid JSON');
  }
}

function readNodeBody(incoming: NodeIncoming, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    // The answer (408, closing the connection) is written; the rest of the body is not read.
    const timer = setTimeout(() => {
      cleanup();
      chunks.length = 0;
      incoming.pause();
      reject(tooSlow(timeoutMs));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onCut);
      incoming.off('aborted', onCut);
    };
    const onData = (chunk: Uint8Array) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        cleanup();
        chunks.length = 0;
        // The rest is read and dropped, not kept nor left unread: a socket closed over unread
        // bytes is reset, and the peer may lose the answer with it. The 413 (`Connection:
        // close`) is written at once, and Node closes the connection after it, however long
        // the client would go on sending.
        incoming.resume();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      if (!incoming.complete) reject(cutOff());
      else resolve(concat(chunks, size));
    };
    const onCut = (err?: Error) => {
      cleanup();
      reject(cutOff(err));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onCut);
    incoming.on('aborted', onCut);
  });
}

/** The client went away mid-upload: nobody will read an answer; not a server error. */
function cutOff(cause?: unknown): AppError {
  return new AppError('BAD_REQUEST', 'The request body was cut off', { cause, details: { clientAbort: true } });
}

function tooSlow(timeoutMs: number): AppError {
  return new AppError('BAD_REQUEST', `The request body did not arrive within ${timeoutMs} ms`, { status: 408 });
}

function tooLarge(maxBytes: number): AppError {
  return new AppError('BAD_REQUEST', `Request body exceeds ${maxBytes} bytes`, { status: 413 });
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/** Retry-After for a refusal that is not a window count (a busy hash queue, a limiter outage). */
export function setRetryAfter(c: Context<AppEnv>, seconds: number): void {
  setHeader(c, 'Retry-After', String(Math.max(1, Math.ceil(seconds))));
}

/** IETF draft RateLimit-* headers plus Retry-After when refused. */
export function setRateLimitHeaders(c: Context<AppEnv>, d: RateLimitDecision): void {
  const resetSeconds = Math.max(0, Math.ceil((d.reset - Date.now()) / 1000));
  setHeader(c, 'RateLimit-Limit', String(d.limit));
  setHeader(c, 'RateLimit-Remaining', String(d.remaining));
  setHeader(c, 'RateLimit-Reset', String(resetSeconds));
  if (!d.allowed) setHeader(c, 'Retry-After', String(Math.max(1, resetSeconds)));
}

/**
 * The one way an HTTP route answers an error: counted, logged (INTERNAL with its stack, the rest
 * at debug), rate-limit headers or Retry-After when the error carries them, the status, and the
 * body in the route family's shape (ours, or OpenAI's under /v1).
 */
export function errorResponder(services: Services, body: (error: AppError) => unknown) {
  return (err: unknown, c: Context<AppEnv>): Response => {
    const error = toAppError(err);
    services.metrics.error(error, 'http');
    const log = c.get('logger') ?? services.logger;
    if (error.code === 'INTERNAL') log.error({ err }, 'unhandled error');
    else log.debug({ code: error.code, msg: error.message }, 'request refused');
    const rateLimit = error.details?.rateLimit as RateLimitDecision | undefined;
    if (rateLimit) setRateLimitHeaders(c, rateLimit);
    const retryAfter = error.details?.retryAfterSeconds;
    if (!rateLimit && typeof retryAfter === 'number') setRetryAfter(c, retryAfter);
    // A body refused unread (too slow, too large): the connection cannot carry another request
    // (on Node; a Worker's connections are the platform's).
    if ((error.status === 408 || error.status === 413) && nodeIncoming(c)) setHeader(c, 'Connection', 'close');
    return c.json(body(error), error.status as 400);
  };
}
