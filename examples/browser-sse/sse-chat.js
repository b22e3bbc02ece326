/**
 * Streams one chat turn from `POST /api/v2/ai/chat/stream` with `fetch` and a stream reader:
 * the browser code of `index.html`, also run as is by `node.mjs`. No dependencies.
 *
 * Each event is `data: {...}` followed by a blank line: `{content, sessionId}` per chunk, then
 * `{done: true, sessionId, messageId, finishReason, usage}`; or `{error, code, sessionId}`.
 * A refusal before the stream starts (bad input, rate limit, bad token) is an HTTP error
 * with a JSON body `{error, code}`.
 */

/** A refusal or failure, with the gateway's stable code (RATE_LIMIT, BAD_REQUEST, ...). */
export class GatewayError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.status = status;
  }
}

/**
 * @param {object} options
 * @param {string} options.gatewayUrl  e.g. http://localhost:3000
 * @param {string} options.message
 * @param {string} [options.sessionId]  continue this conversation (the `sessionId` of an earlier reply)
 * @param {string} [options.token]      a token or API key; without one the call is anonymous
 * @param {AbortSignal} [options.signal] aborting stops the model; the partial reply is stored
 * @param {(text: string) => void} options.onText  called with each chunk of the reply
 * @returns {Promise<{sessionId: string, messageId: string, finishReason: string, usage?: object}>}
 */
export async function streamChat({ gatewayUrl, message, sessionId, token, signal, onText }) {
  const res = await fetch(`${gatewayUrl.replace(/\/+$/, '')}/api/v2/ai/chat/stream`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ message, ...(sessionId ? { sessionId } : {}) }),
    // In a browser: sends the gateway's cookies (the sign-in cookie, or the anonymous-session
    // cookie that keeps this browser's conversations its own) and keeps the ones it sets.
    credentials: 'include',
    signal,
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new GatewayError(body.error ?? `HTTP ${res.status}`, body.code ?? 'INTERNAL', res.status);
  }

  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    // An event ends at a blank line; a read may hold several events, or part of one.
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(buffer.indexOf('\n', end + 1) + 1);
      const data = frame
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (!data) continue;
      const event = JSON.parse(data);
      if (typeof event.content === 'string') onText(event.content);
      else if (event.done) return event;
      else if (event.error) throw new GatewayError(event.error, event.code, res.status);
    }
  }
  throw new GatewayError('The stream ended before the reply was complete', 'INTERNAL', res.status);
}
