import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { NodeBodyLookup, NodeReadableLike } from '../models/byte-source.js';
import { flattenHead } from '../http/flat-head.js';

/**
 * A `fetch` for the provider SDKs over node:http(s) keep-alive agents: it sends what an SDK
 * built (its headers, body, retries and error handling stay the SDK's) with less overhead than
 * undici, and keeps the raw `IncomingMessage` of each response so a streaming model adapter
 * can read the socket's bytes directly (`nodeBody`). The web body of the Response is read
 * lazily: only an SDK that reads it (an error body) pays for a web stream.
 */
/**
 * The runtime's own Response. `@hono/node-server` replaces the global with a lighter class
 * (whose parent is the real one) that builds a second, real Response the first time an SDK
 * reads `body` or `url`; the responses handed to the SDKs are real ones from the start.
 */
const NativeResponse: typeof Response = (() => {
  const global = globalThis.Response;
  const parent: unknown = Object.getPrototypeOf(global);
  return typeof parent === 'function' && parent.name === 'Response' ? (parent as typeof Response) : global;
})();

export function createNodeFetch(options: { maxSockets?: number } = {}): { fetch: typeof fetch; nodeBody: NodeBodyLookup } {
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 1024, scheduling: 'lifo' }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 1024, scheduling: 'lifo' }),
  };
  const bodies = new WeakMap<Response, IncomingMessage>();

  const nodeFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = target(input instanceof Request ? input.url : input.toString());
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) return Promise.reject(new TypeError(`fetch failed: unsupported protocol ${url.protocol}`));
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const record = headerRecord(input instanceof Request ? input.headers : undefined, init.headers);
    const body = bodyBytes(init.body);
    if (body !== undefined && record['content-length'] === undefined) record['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
    const method = init.method ?? 'GET';
    let request: http.ClientRequest;
    try {
      request = (url.protocol === 'https:' ? https : http).request({ protocol: url.protocol, hostname: url.hostname, port: url.port, path: url.path, method, headers: headerLines(record, url), agent });
    } catch (err) {
      return Promise.reject(err as Error); // a header node:http refuses: a rejected fetch, as with undici
    }
    const response = awaitResponse(request, signal, method !== 'HEAD', bodies);
    try {
      request.end(body);
      flattenHead(request);
    } catch (err) {
      request.destroy(err as Error); // rejects `response` through its 'error' listener
    }
    return response;
  };

  return { fetch: nodeFetch as typeof fetch, nodeBody: (response) => bodies.get(response) as NodeReadableLike | undefined };
}

/**
 * The response of a sent request. Made apart from `nodeFetch`, so that what lives as long as the
 * response does (the abort listener, on the caller's signal until the response closes) keeps
 * the request and its signal, not the caller's `init`: a model request's body is the whole
 * conversation it sends, and a stream can run for minutes.
 */
function awaitResponse(request: http.ClientRequest, signal: AbortSignal | undefined, hasBody: boolean, bodies: WeakMap<Response, IncomingMessage>): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    let response: IncomingMessage | undefined;
    const onAbort = () => {
      const err = abortError(signal!);
      request.destroy(err);
      response?.destroy(err);
      reject(err);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    request.once('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      // As undici does: a TypeError whose cause is the socket error (the SDKs map it to a connection error).
      reject(new TypeError('fetch failed', { cause: err }));
    });
    request.once('response', (res) => {
      response = res;
      res.once('close', () => signal?.removeEventListener('abort', onAbort));
      const status = res.statusCode ?? 0;
      const web = new NodeFetchResponse(res, status !== 204 && status !== 304 && hasBody, { status, statusText: res.statusMessage ?? '' });
      bodies.set(web, res);
      resolve(web);
    });
  });
}

/**
 * A real Response whose web body is made only if an SDK asks for it (an error body, mostly):
 * a ReadableStream costs ≈ 30 µs to build on Node 20, and a streaming model adapter reads the
 * socket's stream instead (`nodeBody`).
 */
class NodeFetchResponse extends NativeResponse {
  readonly #res: IncomingMessage;
  #web: ReadableStream<Uint8Array<ArrayBuffer>> | null | undefined;

  constructor(res: IncomingMessage, hasBody: boolean, init: ResponseInit) {
    super(null, init);
    // The header lines in order, appended to the Response's own headers: handed over in
    // `init` as a list of pairs, each pair goes through WebIDL's sequence conversion first
    // (an iterator and an array per header: ~3 µs and 4 KB a response); as a `Headers`, it
    // would be validated twice and sorted on the copy.
    const headers = this.headers;
    const raw = res.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    this.#res = res;
    this.#web = hasBody ? undefined : null;
  }

  override get body(): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (this.#web === undefined) this.#web = lazyWebBody(this.#res);
    return this.#web;
  }

  override get bodyUsed(): boolean {
    return this.#web ? this.#web.locked : false;
  }

  override async arrayBuffer(): Promise<ArrayBuffer> {
    const body = this.body;
    if (!body) return new ArrayBuffer(0);
    if (body.locked) throw new TypeError('Body is unusable: Body has already been read');
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
    const out = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return out.buffer;
  }

  override async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return new Uint8Array(await this.arrayBuffer());
  }

  override async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }

  override async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  override async blob(): Promise<Blob> {
    return new Blob([await this.arrayBuffer()], { type: this.headers.get('content-type') ?? '' });
  }

  override async formData(): Promise<FormData> {
    return new NativeResponse(await this.arrayBuffer(), { headers: this.headers }).formData();
  }

  override clone(): Response {
    const body = this.body;
    if (!body) return new NativeResponse(null, { status: this.status, statusText: this.statusText, headers: this.headers });
    const [mine, theirs] = body.tee();
    this.#web = mine;
    return new NativeResponse(theirs, { status: this.status, statusText: this.statusText, headers: this.headers });
  }
}

interface Target {
  protocol: string;
  hostname: string;
  port: string;
  path: string;
  /** The Host header node:http would send for this URL. */
  host: string;
  /** `Basic …` from the URL's user and password, as node:http would send it. */
  basicAuth?: string;
}

/** Parsed request targets by URL: an SDK calls the same few endpoints again and again. */
const targets = new Map<string, Target>();
const MAX_TARGETS = 256;

function target(href: string): Target {
  let found = targets.get(href);
  if (!found) {
    const url = new URL(href);
    found = {
      protocol: url.protocol,
      // node:http wants a bare IPv6 address, without the URL's brackets.
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      // The URL keeps an IPv6 host in brackets and leaves out a default port, as the header wants them.
      host: url.host,
      ...(url.username || url.password
        ? { basicAuth: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` }
        : {}),
    };
    if (targets.size >= MAX_TARGETS) targets.clear();
    targets.set(href, found);
  }
  return found;
}

/** A web stream over the response that reads only when pulled (an unread body costs nothing). */
function lazyWebBody(res: IncomingMessage): ReadableStream<Uint8Array<ArrayBuffer>> {
  return new ReadableStream<Uint8Array<ArrayBuffer>>(
    {
      pull(controller) {
        return new Promise<void>((resolve, reject) => {
          const chunk = res.read() as Buffer | null;
          if (chunk !== null) {
            controller.enqueue(new Uint8Array(chunk.buffer as ArrayBuffer, chunk.byteOffset, chunk.byteLength));
            resolve();
            return;
          }
          if (res.readableEnded) {
            controller.close();
            resolve();
            return;
          }
          const cleanup = () => {
            res.off('readable', onReadable);
            res.off('end', onEnd);
            res.off('error', onError);
          };
          const onReadable = () => {
            cleanup();
            const next = res.read() as Buffer | null;
            if (next !== null) controller.enqueue(new Uint8Array(next.buffer as ArrayBuffer, next.byteOffset, next.byteLength));
            resolve();
          };
          const onEnd = () => {
            cleanup();
            controller.close();
            resolve();
          };
          const onError = (err: Error) => {
            cleanup();
            reject(err);
          };
          res.on('readable', onReadable);
          res.on('end', onEnd);
          res.on('error', onError);
        });
      },
      cancel(reason) {
        res.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

function headerRecord(...sources: (HeadersInit | undefined)[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const source of sources) {
    if (!source) continue;
    // The SDKs pass a Headers, or (the OpenAI client, see openai-model.ts) a record: read either as it is.
    if (source instanceof Headers) {
      source.forEach((value, key) => {
        out[key] = value;
      });
    } else if (!Array.isArray(source)) {
      for (const key in source) {
        const value = (source as Record<string, unknown>)[key];
        if (value !== undefined && value !== null) out[key.toLowerCase()] = String(value);
      }
    } else {
      new Headers(source).forEach((value, key) => {
        out[key] = value;
      });
    }
  }
  return out;
}

/**
 * The request's headers as node:http's flat list (`[name, value, …]`), with the Host (and URL
 * credentials) node:http would add. Given a list, node:http writes the header block straight away;
 * given a record, it first copies each header into its own table (setHeader), an array per header,
 * kept for the request's life.
 */
function headerLines(record: Record<string, string>, url: Target): string[] {
  const lines: string[] = [];
  if (record.host === undefined) lines.push('host', url.host);
  if (url.basicAuth !== undefined && record.authorization === undefined) lines.push('authorization', url.basicAuth);
  for (const key in record) lines.push(key, record[key]!);
  return lines;
}

function bodyBytes(body: BodyInit | null | undefined): Uint8Array | string | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (body instanceof URLSearchParams) return body.toString();
  throw new TypeError('node fetch: unsupported request body type');
}

/** What fetch rejects with on abort: an AbortError (the SDKs recognise it by name). */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException('This operation was aborted', 'AbortError');
}
