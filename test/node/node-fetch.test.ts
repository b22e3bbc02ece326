import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFetch } from '../../src/node/node-fetch.js';

/** The Node entry's fetch against a real server: what the SDKs may ask of a Response works as with the global fetch. */
describe('createNodeFetch', () => {
  let server: http.Server;
  let url: string;
  const seen: { method?: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  const held: (() => void)[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, headers: req.headers, body });
        if (req.url === '/json') {
          res.writeHead(429, { 'content-type': 'application/json', 'x-request-id': 'req_1', 'retry-after': '2' });
          res.end(JSON.stringify({ error: { message: 'slow down', héllo: '日本' } }));
        } else if (req.url === '/cookies') {
          // Repeated and mixed-case header lines, as a provider's edge may send them.
          res.writeHead(200, [
            ['Set-Cookie', 'a=1; Path=/'],
            ['X-Trace', 'one'],
            ['set-cookie', 'b=2; HttpOnly'],
            ['x-trace', 'two'],
            ['Content-Type', 'text/plain'],
          ].flat());
          res.end('ok');
        } else if (req.url === '/empty') {
          res.writeHead(204).end();
        } else if (req.url === '/held') {
          // A stream that stays open until the test lets it end.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: 1\n\n');
          held.push(() => res.end('data: 2\n\n'));
        } else if (req.url === '/chunks') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('one ');
          setTimeout(() => res.end('two'), 20);
        } else res.writeHead(404).end('nope');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const { fetch: nodeFetch, nodeBody } = createNodeFetch();

  it('sends method, headers (from a Headers, a record or a Request) and body', async () => {
    const headers = new Headers({ 'X-One': '1', 'content-type': 'application/json' });
    await (await nodeFetch(`${url}/json`, { method: 'POST', headers, body: '{"a":1}' })).arrayBuffer();
    await (await nodeFetch(new Request(`${url}/json`, { headers: { 'x-two': '2' } }), { headers: { 'x-three': '3' } })).text();
    expect(seen.at(-2)).toMatchObject({ method: 'POST', headers: { 'x-one': '1', 'content-type': 'application/json', 'content-length': '7' }, body: '{"a":1}' });
    expect(seen.at(-1)).toMatchObject({ method: 'GET', headers: { 'x-two': '2', 'x-three': '3' } });
    // A record with mixed-case names (how the OpenAI client hands its headers over) arrives lower-cased, nothing dropped.
    await (await nodeFetch(`${url}/json`, { headers: { Authorization: 'Bearer k', 'X-Stainless-Retry-Count': '0' } })).text();
    expect(seen.at(-1)).toMatchObject({ headers: { authorization: 'Bearer k', 'x-stainless-retry-count': '0' } });
  });

  it('sends the Host header node:http would (port included), credentials in the URL as Basic auth, and a caller\'s own Host or Authorization instead', async () => {
    const port = new URL(url).port;
    await (await nodeFetch(`${url}/json`)).text();
    expect(seen.at(-1)!.headers).toMatchObject({ host: `127.0.0.1:${port}`, connection: 'keep-alive' });
    await (await nodeFetch(`http://us%20er:p%40ss@127.0.0.1:${port}/json`)).text();
    expect(seen.at(-1)!.headers).toMatchObject({ host: `127.0.0.1:${port}`, authorization: `Basic ${Buffer.from('us er:p@ss').toString('base64')}` });
    await (await nodeFetch(`http://user:pass@127.0.0.1:${port}/json`, { headers: { Host: 'api.example', Authorization: 'Bearer mine' } })).text();
    expect(seen.at(-1)!.headers).toMatchObject({ host: 'api.example', authorization: 'Bearer mine' });
    expect(seen.at(-1)!.headers).not.toHaveProperty('Host');
    // Each header once: node:http adds no second Host or Authorization.
    const raw = await new Promise<string[]>((resolve) => {
      const probe = http.createServer((req, res) => {
        resolve(req.rawHeaders);
        res.end();
      });
      probe.listen(0, '127.0.0.1', () => {
        const probeUrl = `http://u:p@127.0.0.1:${(probe.address() as AddressInfo).port}/`;
        void nodeFetch(probeUrl, { method: 'POST', headers: { Host: 'h.example' }, body: 'x' }).then(async (r) => {
          await r.text();
          probe.close();
        });
      });
    });
    const names = raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n === 'host')).toHaveLength(1);
    expect(names.filter((n) => n === 'authorization')).toHaveLength(1);
    expect(names.filter((n) => n === 'content-length')).toHaveLength(1);
  });

  it('a Response with status, headers, json() and text(), bodyUsed, and no second read', async () => {
    const res = await nodeFetch(`${url}/json`);
    expect(res).toBeInstanceOf(Response);
    expect([res.status, res.ok, res.headers.get('x-request-id'), res.headers.get('retry-after')]).toEqual([429, false, 'req_1', '2']);
    expect(res.bodyUsed).toBe(false);
    expect(await res.json()).toEqual({ error: { message: 'slow down', héllo: '日本' } });
    expect(res.bodyUsed).toBe(true);
    await expect(res.text()).rejects.toThrow(TypeError);
    const again = await nodeFetch(`${url}/json`);
    expect(JSON.parse(await again.text())).toMatchObject({ error: { message: 'slow down' } });
  });

  it('hands over every response header line as fetch does: repeated names kept, in order, Set-Cookie apart', async () => {
    const mine = await nodeFetch(`${url}/cookies`);
    const undici = await fetch(`${url}/cookies`);
    expect(await mine.text()).toBe('ok');
    await undici.arrayBuffer();
    expect(mine.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
    expect(mine.headers.get('x-trace')).toBe('one, two');
    expect([...mine.headers].filter(([name]) => name !== 'date' && name !== 'connection' && name !== 'keep-alive')).toEqual(
      [...undici.headers].filter(([name]) => name !== 'date' && name !== 'connection' && name !== 'keep-alive'),
    );
  });

  it('clone() gives two readable copies; blob() and the web body stream work; a 204 has no body', async () => {
    const res = await nodeFetch(`${url}/json`);
    const copy = res.clone();
    expect(await copy.json()).toMatchObject({ error: { message: 'slow down' } });
    expect(await (await res.blob()).text()).toContain('slow down');
    const streamed = await nodeFetch(`${url}/chunks`);
    const parts: string[] = [];
    for await (const chunk of streamed.body as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(chunk).toString());
    expect(parts.join('')).toBe('one two');
    const empty = await nodeFetch(`${url}/empty`);
    expect([empty.status, empty.body]).toEqual([204, null]);
    expect(await empty.text()).toBe('');
  });

  it('nodeBody hands over the socket stream of a response it made (and nothing for others)', async () => {
    const res = await nodeFetch(`${url}/chunks`);
    const stream = nodeBody(res)!;
    const parts: string[] = [];
    await new Promise<void>((resolve) => {
      stream.on('data', (c) => parts.push(Buffer.from(c).toString()));
      stream.on('end', () => resolve());
    });
    expect(parts.join('')).toBe('one two');
    expect(nodeBody(new Response('x'))).toBeUndefined();
  });

  it('an abort rejects with an AbortError and a refused connection with a TypeError, as undici does', async () => {
    const controller = new AbortController();
    const pending = nodeFetch(`${url}/chunks`, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await expect(nodeFetch('http://127.0.0.1:1/')).rejects.toBeInstanceOf(TypeError);
  });

  it('keeps nothing of what the caller sent (its init, its body) while a response streams; an abort still ends it', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const controller = new AbortController();
    // A model request's body is the whole conversation: it must not live as long as the reply.
    let body: Uint8Array<ArrayBuffer> | undefined = new Uint8Array(new TextEncoder().encode(JSON.stringify({ messages: 'x'.repeat(64 * 1024) })));
    let init: RequestInit | undefined = { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: controller.signal };
    const refs: WeakRef<object>[] = [new WeakRef(body), new WeakRef(init!)];
    const res = await nodeFetch(`${url}/held`, init);
    body = undefined;
    init = undefined;
    const stream = nodeBody(res)!;
    const parts: string[] = [];
    stream.on('data', (c) => parts.push(Buffer.from(c).toString()));
    const closed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
    stream.on('error', () => {});
    try {
      await new Promise((r) => setTimeout(r, 30));
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(parts.join('')).toBe('data: 1\n\n'); // still streaming
      expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true]);
      controller.abort();
      await closed;
      expect((stream as unknown as { destroyed: boolean }).destroyed).toBe(true);
    } finally {
      controller.abort();
      for (const end of held.splice(0)) end();
    }
  });
});
