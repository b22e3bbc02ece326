import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** What a request Node could not read as HTTP is answered with: the status Node would use, and a coded JSON body. */
const ANSWERS: Readonly<Record<string, readonly [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'The request headers are too large'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'The chunk extensions of the request body are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request did not arrive in time (REQUEST_TIMEOUT_MS)'],
};
const BAD_HTTP = [400, 'The request could not be read as HTTP'] as const;
/** A client that does not take the answer and close keeps its socket no longer than this. */
const CLOSE_AFTER_MS = 1_000;

type ClientSocket = Duplex & { _httpMessage?: { _headerSent?: boolean } | null };

/**
 * The HTTP server's `clientError` handler: a request Node's parser refused (headers over the
 * limit, bytes that are not HTTP, headers that never ended in time) gets the status Node itself
 * would answer, with the gateway's JSON error body (`{error, code: "BAD_REQUEST"}`) instead of
 * an empty one, then the connection closes. Nothing is written where an answer was already
 * under way or the socket cannot take it (a reset).
 */
export function answerClientError(err: Error & { code?: string }, socket: ClientSocket): void {
  if (err.code === 'ECONNRESET' || !socket.writable || socket._httpMessage?._headerSent) {
    socket.destroy();
    return;
  }
  const [status, message] = ANSWERS[err.code ?? ''] ?? BAD_HTTP;
  const body = JSON.stringify({ error: message, code: 'BAD_REQUEST' });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), CLOSE_AFTER_MS).unref();
}

/**
 * `@hono/node-server`'s `errorHandler`: a request Node parsed but that cannot become a web
 * Request (a Host header that is not a host, a backslash in the path, `OPTIONS *`) gets the same
 * coded 400 as one Node could not read (node-server's own answer is an empty text 400), then the
 * connection closes. Anything else that escaped the app (Hono answers its errors itself) is a
 * bare coded 500: never a stack.
 */
export function requestErrorResponse(err: unknown): Response {
  const unreadable = err instanceof Error && err.name === 'RequestError';
  const [status, body] = unreadable ? [400, { error: BAD_HTTP[1], code: 'BAD_REQUEST' }] : [500, { error: 'Internal server error', code: 'INTERNAL' }];
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', Connection: 'close' } });
}
