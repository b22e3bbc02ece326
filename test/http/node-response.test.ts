import { createServer, get, type Server, type ServerResponse } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { AddressInfo } from 'node:net';
import type { Context } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import type { AppEnv } from '../../src/http/app-env.js';
import type { HeadEntry } from '../../src/http/http-helpers.js';
import { writeNodeStream, type NodeStream } from '../../src/http/node-response.js';
import { SSE_HEADERS } from '../../src/http/turn-stream.js';

/** What writeNodeStream reads from Hono's context on the Node entry: the recorded head, the logger, the Node response. */
function contextOf(outgoing: unknown, head: HeadEntry[], errors: unknown[]): Context<AppEnv> {
  const vars: Record<string, unknown> = { head, logger: { error: (obj: { err: unknown }) => errors.push(obj.err) } };
  return { env: { outgoing }, get: (key: string) => vars[key] } as unknown as Context<AppEnv>;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('writeNodeStream on a real Node server', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  const serve = async (handler: (res: ServerResponse) => void) => {
    server = createServer((_req, res) => handler(res));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  it('starts the turn before building the head; lazy head values are computed once, when the head is written, and travel with the first event', async () => {
    const order: string[] = [];
    let signs = 0;
    const url = await serve((res) => {
      const head: HeadEntry[] = [
        ['X-Request-Id', 'req-1', false],
        ['Set-Cookie', () => (order.push('cookie'), `anon=${++signs}`), true],
        ['Set-Cookie', 'second=1', true],
      ];
      writeNodeStream(contextOf(res, head, []), res, SSE_HEADERS, async (stream: NodeStream) => {
        order.push('run');
        await new Promise((r) => setTimeout(r, 5));
        stream.write('data: one\n\n');
        stream.end('data: two\n\n');
      });
    });
    const res = await fetch(url);
    expect(res.headers.get('x-request-id')).toBe('req-1');
    expect(res.headers.getSetCookie()).toEqual(['anon=1', 'second=1']);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(await res.text()).toBe('data: one\n\ndata: two\n\n');
    expect(order).toEqual(['run', 'cookie']);
    expect(signs).toBe(1);
  });

  it('a response whose bytes are out is not kept alive by its linger timer: its context (and with it the request and the turn) can go at once', async () => {
    const contexts: WeakRef<object>[] = [];
    const url = await serve((res) => {
      const c = contextOf(res, [['X-Request-Id', 'r', false]], []);
      contexts.push(new WeakRef(c));
      writeNodeStream(c, res, SSE_HEADERS, async (stream: NodeStream) => {
        stream.write('data: one\n\n');
        stream.end('data: two\n\n');
      });
    });
    for (let i = 0; i < 20; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve(text));
        }).once('error', reject);
      });
      expect(body).toBe('data: one\n\ndata: two\n\n');
    }
    await new Promise((r) => setTimeout(r, 50));
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    expect(contexts).toHaveLength(20);
    // LINGER_MS (10 s) is far off: only the timer could have kept them.
    expect(contexts.filter((ref) => ref.deref() !== undefined).length).toBeLessThanOrEqual(1);
  });

  it('a head Node refuses closes that response, logs why and ends the turn; the server keeps serving', async () => {
    const errors: unknown[] = [];
    let closedTurn = false;
    let bad = true;
    const url = await serve((res) => {
      const head: HeadEntry[] = bad ? [['X-Broken', () => 'line\r\nbreak', false]] : [];
      writeNodeStream(contextOf(res, head, errors), res, SSE_HEADERS, async (stream: NodeStream) => {
        stream.onClose(() => (closedTurn = true));
        await new Promise((r) => setTimeout(r, 5));
        stream.write('data: after\n\n');
        stream.end();
      });
    });
    await expect(fetch(url).then((r) => r.text())).rejects.toThrow();
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/Invalid character in header content/);
    expect(closedTurn).toBe(true);
    bad = false;
    const ok = await fetch(url);
    expect(await ok.text()).toBe('data: after\n\n');
  });
});
