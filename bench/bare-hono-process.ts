/**
 * The floor for turns/s: a bare Hono app on `@hono/node-server` whose
 * `POST /api/v2/ai/chat/stream` reads the JSON body and answers with `streamSSE`, replaying
 * the SSE frames of one recorded gateway reply (the very same bytes), one `writeSSE` per
 * `data:` frame. No store, no auth, no model, no rate limit.
 *
 *   node --import tsx bench/bare-hono-process.ts <frames.json>
 *
 * `frames.json` is a JSON array of complete frames (each ending in a blank line). Prints one
 * JSON line `{"url":"http://127.0.0.1:NNNN"}` when listening. Exits on SIGTERM / SIGINT, and
 * when its stdin closes (the parent is gone, however it died).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';

const file = process.argv[2];
if (!file) {
  console.error('bare-hono-process: usage: bare-hono-process.ts <frames.json>');
  process.exit(2);
}
const frames = JSON.parse(readFileSync(file, 'utf8')) as string[];
if (!Array.isArray(frames) || frames.length === 0 || !frames.every((f) => typeof f === 'string' && f.endsWith('\n\n'))) {
  console.error('bare-hono-process: the frames file must hold a non-empty array of SSE frames');
  process.exit(2);
}
/** `data: X\n\n` frames go through writeSSE (what a Hono endpoint calls), anything else verbatim. */
const replay = frames.map((frame) => {
  const single = /^data: ([^\n]*)\n\n$/.exec(frame);
  return single ? { data: single[1]! } : { raw: frame };
});

const app = new Hono();
app.post('/api/v2/ai/chat/stream', async (c) => {
  const body = (await c.req.json()) as { message?: unknown };
  if (typeof body.message !== 'string') return c.json({ error: 'message is required' }, 400);
  return streamSSE(c, async (stream) => {
    for (const frame of replay) {
      if (frame.raw !== undefined) await stream.write(frame.raw);
      else await stream.writeSSE({ data: frame.data });
    }
  });
});

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${info.port}` })}\n`);
});

let stopping = false;
const stop = (code: number): void => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(code), 2000).unref();
  server.close(() => process.exit(code));
  if ('closeAllConnections' in server) server.closeAllConnections();
};
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.on('error', () => stop(0));
process.stdin.resume();
