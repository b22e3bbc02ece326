/**
 * A bare SSE relay in its own process: the floor a hand-written Node relay would reach, so the
 * benchmark can tell the cost of one extra Node HTTP hop (wake-ups, loopback, HTTP parsing)
 * from the gateway's own work. No persistence, no auth, no validation beyond the body shape.
 *
 *   node --import tsx bench/relay-process.ts <standinUrl> [port]
 *
 * `POST /api/v2/ai/chat/stream` with `{message, model}` becomes a streamed
 * `POST <standinUrl>/chat/completions`; every upstream content delta is re-emitted in the
 * gateway's SSE shape (`data: {"content":"…","sessionId":"relay"}`), then
 * `data: {"done":true,"sessionId":"relay"}`. The upstream request is aborted when the client
 * goes away. Prints one JSON line `{"url":"http://127.0.0.1:NNNN"}` when listening. Exits on
 * SIGTERM / SIGINT, and when its stdin closes (the parent is gone, however it died).
 */
import http from 'node:http';

const ROUTE = '/api/v2/ai/chat/stream';
const MAX_BODY_BYTES = 1 << 20;
const SESSION_SUFFIX = `,"sessionId":"relay"}\n\n`;
const DONE_EVENT = `data: {"done":true,"sessionId":"relay"}\n\n`;

const standinArg = process.argv[2];
const portArg = Number(process.argv[3] ?? '0');
if (standinArg === undefined || !/^https?:\/\//.test(standinArg) || !Number.isInteger(portArg) || portArg < 0) {
  console.error(`relay-process: usage: relay-process.ts <standinUrl> [port] (got ${String(standinArg)} ${String(process.argv[3])})`);
  process.exit(2);
}
const upstreamUrl = new URL(`${standinArg.replace(/\/+$/, '')}/chat/completions`);
if (upstreamUrl.protocol !== 'http:') {
  console.error('relay-process: only an http:// stand-in is supported');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function errorEvent(message: string, code: string): string {
  return `data: ${JSON.stringify({ error: message, code, sessionId: 'relay' })}\n\n`;
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The content of one upstream chat-completions chunk (`choices[0].delta.content`), if non-empty. */
function deltaContent(data: string): string | undefined {
  const choices = asRecord(JSON.parse(data) as unknown)?.['choices'];
  if (!Array.isArray(choices)) return undefined;
  const content = asRecord(asRecord(choices[0] as unknown)?.['delta'])?.['content'];
  return typeof content === 'string' && content.length > 0 ? content : undefined;
}

function reply(res: http.ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: message });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
}

function relay(body: Buffer, res: http.ServerResponse): void {
  let message: unknown;
  let model: unknown;
  try {
    const rec = asRecord(JSON.parse(body.toString('utf8')) as unknown);
    message = rec?.['message'];
    model = rec?.['model'];
  } catch {
    /* reported below */
  }
  if (typeof message !== 'string' || typeof model !== 'string') {
    reply(res, 400, 'body must be {"message": string, "model": string}');
    return;
  }
  const payload = JSON.stringify({
    model,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: message }],
  });

  let finished = false;
  const finish = (tail: string) => {
    if (finished) return;
    finished = true;
    if (!res.headersSent) {
      // Nothing was streamed yet: a plain HTTP error says more than an SSE error event.
      reply(res, 502, tail);
      return;
    }
    res.end(tail);
  };

  const upstream = http.request({
    agent,
    protocol: upstreamUrl.protocol,
    hostname: upstreamUrl.hostname,
    port: upstreamUrl.port,
    path: upstreamUrl.pathname,
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(payload),
      Accept: 'text/event-stream',
    },
  });
  // The client went away before the reply was complete: stop the upstream stream too.
  res.once('close', () => {
    if (!res.writableFinished) {
      finished = true;
      upstream.destroy();
    }
  });
  upstream.once('error', (err) => {
    if (res.headersSent) finish(errorEvent(`upstream: ${err.message}`, 'PROVIDER_ERROR'));
    else finish(`upstream: ${err.message}`);
  });
  upstream.once('response', (up) => {
    if (up.statusCode !== 200) {
      up.resume();
      finish(`upstream answered HTTP ${String(up.statusCode)}`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
    up.setEncoding('utf8');
    let buffer = '';
    let sawDone = false;
    up.on('data', (text: string) => {
      if (finished) return;
      buffer += text;
      let out = '';
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of frame.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
          if (data === '[DONE]') {
            sawDone = true;
            continue;
          }
          let content: string | undefined;
          try {
            content = deltaContent(data);
          } catch {
            out += errorEvent('upstream sent an invalid JSON event', 'PROVIDER_ERROR');
            continue;
          }
          if (content !== undefined) out += `data: {"content":${JSON.stringify(content)}${SESSION_SUFFIX}`;
        }
      }
      if (out) res.write(out);
    });
    up.once('end', () => finish(sawDone ? DONE_EVENT : errorEvent('upstream stream ended without [DONE]', 'PROVIDER_ERROR')));
    up.once('error', (err) => finish(errorEvent(`upstream: ${err.message}`, 'PROVIDER_ERROR')));
  });
  upstream.end(payload);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== ROUTE) {
    req.resume();
    reply(res, 404, 'not found');
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      reply(res, 413, 'body too large');
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.once('end', () => {
    if (size <= MAX_BODY_BYTES) relay(Buffer.concat(chunks), res);
  });
  req.once('error', () => res.destroy());
});
// As the gateway does: idle client connections stay open between rounds.
server.keepAliveTimeout = 65_000;

let stopping = false;
const stop = (code: number): void => {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(code), 2000);
  force.unref();
  server.close(() => process.exit(code));
  server.closeAllConnections();
  agent.destroy();
};
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.on('error', () => stop(0));
process.stdin.resume();

server.once('error', (err) => {
  console.error(`relay-process: ${err.message}`);
  process.exit(1);
});
server.listen({ port: portArg, host: '127.0.0.1', backlog: 4096 }, () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : portArg;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});
