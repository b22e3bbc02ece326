/**
 * MAX_BODY_BYTES over every way a client sends a body: with a Content-Length (refused before
 * reading) and chunked (refused once the count passes the cap). Either way the client reads
 * the same 413 JSON answer and the connection is closed after it.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { gatewayForSuite } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';

const MAX_BODY_BYTES = 2048;
const TOO_LARGE = { error: `Request body exceeds ${MAX_BODY_BYTES} bytes`, code: 'BAD_REQUEST' };
const bigBody = JSON.stringify({ message: 'x'.repeat(4000) });

/** A fetch body of unknown length: sent chunked. */
function streamedBody(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.byteLength; i += 1000) controller.enqueue(bytes.subarray(i, i + 1000));
      controller.close();
    },
  });
}

describe('request body over MAX_BODY_BYTES', () => {
  // /api/chat (useChat sends its whole chat) reads up to MAX_HISTORY_BODY_BYTES: the same bound here.
  const gw = gatewayForSuite({ MAX_BODY_BYTES: String(MAX_BODY_BYTES), MAX_HISTORY_BODY_BYTES: String(MAX_BODY_BYTES) });

  it('a chunked body gets the 413 JSON answer a Content-Length body gets, with Connection: close', async () => {
    const declared = await postChat(gw().url, bigBody);
    const chunked = await fetch(`${gw().url}/api/v2/ai/chat/stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: streamedBody(bigBody),
      duplex: 'half',
    } as RequestInit & { duplex: 'half' });
    for (const res of [declared, chunked]) {
      expect(res.status).toBe(413);
      expect(res.headers.get('connection')).toBe('close');
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toEqual(TOO_LARGE);
    }
  });

  it('node:http on a keep-alive connection: the 413 arrives, then the server closes that connection', async () => {
    const req = httpRequest(`${gw().url}/api/chat`, { method: 'POST', headers: { 'Content-Type': 'application/json', Connection: 'keep-alive' } });
    const responded = new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
    });
    const closed = new Promise<void>((resolve) => req.once('socket', (socket) => socket.once('close', () => resolve())));
    req.write(bigBody.slice(0, 3000));
    req.end(bigBody.slice(3000));
    const res = await responded;
    let text = '';
    for await (const chunk of res) text += String(chunk);
    expect(res.statusCode).toBe(413);
    expect(res.headers.connection).toBe('close');
    expect(JSON.parse(text)).toEqual(TOO_LARGE);
    await closed;
  });

  it('a client that never stops sending gets the 413, then the server closes its connection', async () => {
    const socket = connect(gw().port, '127.0.0.1');
    socket.setNoDelay(true);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => {}); // writing on after the server closed: EPIPE / ECONNRESET
    let sent = 0;
    let stopped = false;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    void closed.then(() => (stopped = true));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /api/v2/ai/chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
    socket.write(`7\r\n{"a":"x\r\n`);
    const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`;
    // Send as fast as the connection takes it, until the server closes it (or the test's bound).
    const sending = (async () => {
      while (!stopped && sent < 512 * 1024 * 1024) {
        sent += 0x4000;
        if (!socket.write(chunk)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
      }
    })();
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the server kept the connection open')), 5000))]);
    await sending;
    const answer = Buffer.concat(received).toString();
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual(TOO_LARGE);
    expect(sent).toBeLessThan(512 * 1024 * 1024);
  });

  it('the server still answers after all that, and a body within the cap is served', async () => {
    const events = await readSse(await postChat(gw().url, { message: 'hello', maxTokens: 2 }));
    expect(events.at(-1)).toMatchObject({ done: true });
  });
});
