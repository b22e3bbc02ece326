/**
 * Shared machinery for the local LLM stand-in servers (OpenAI and Gemini wire formats).
 *
 * A stand-in is a plain `node:http` server on 127.0.0.1 (ephemeral port). Every request is
 * recorded, and the reply to each chat request is decided by a {@link ScriptFn} that the test
 * (or benchmark) supplies. The provider-specific files only format bytes; timing, cutting,
 * abort detection and bookkeeping live here.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What the stand-in should answer to one chat request. Embedding requests use it too: they
 * honour `status` / `errorMessage`, wait {@link totalDelay} before answering (so
 * `{ tokens: ['x'], delayMs: 60_000 }` is a hang), close the connection without an answer
 * when `cutAfter` is set, and read the `embedding*` fields.
 */
export interface Script {
  /** Text pieces, one per streamed chunk. */
  tokens: string[];
  /** Pause before each chunk (also before the first). */
  delayMs?: number;
  /** Overrides `delayMs` for the first chunk. */
  firstTokenDelayMs?: number;
  /** If set (>= 400), answer this HTTP status with the provider's real error JSON instead of a stream. */
  status?: number;
  /** Message inside the error JSON (a provider-typical default is used otherwise). */
  errorMessage?: string;
  /**
   * Close the connection after this many token chunks: the stream is cut mid-way and no
   * terminator (OpenAI `[DONE]`, Gemini finish chunk, chunked-encoding end) is sent.
   * For non-streamed requests the connection is closed without any response.
   */
  cutAfter?: number;
  /**
   * Gemini: the prompt is blocked (`promptFeedback.blockReason`, e.g. `SAFETY`): the answer is
   * one chunk with no candidates, as Google sends it. `tokens` are not sent.
   */
  blockedPrompt?: string;
  /** Default `'stop'`. `content_filter` is Gemini's `SAFETY`. */
  finishReason?: 'stop' | 'length' | 'content_filter';
  /**
   * Usage to report. Default: `tokens.length` output tokens and an input count estimated from
   * the request text ({@link estimateTokens}). `false`: report no usage at all.
   */
  usage?: { inputTokens: number; outputTokens: number; reasoningTokens?: number } | false;
  /**
   * Embedding routes only: answer vectors of this length whatever the request asked for, as a
   * model whose size differs from the configured one would.
   */
  embeddingDimensions?: number;
  /**
   * Embedding routes only: multiply every value, since providers do not promise unit length
   * (Gemini's vectors below its full 3072 dimensions are not normalised).
   */
  embeddingScale?: number;
  /** OpenAI embeddings only: list `data` in reverse order (each item keeps its `index`). */
  reverseEmbeddings?: boolean;
}

/** One request as the stand-in received it. */
export interface RecordedRequest {
  method: string;
  /** URL path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Decoded query parameters (last value wins). */
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body; the raw text if it was not valid JSON; `undefined` if empty. */
  body: unknown;
}

export type ScriptFn = (req: RecordedRequest) => Script;

export interface StandinOptions {
  /** Decides every chat reply. Default: {@link defaultScript}. */
  script?: ScriptFn;
  /** When set, requests must carry this key (provider-specific header); otherwise any key is accepted. */
  apiKey?: string;
  /** Keep every request in `requests` (default true). Turn off for long benchmark runs. */
  recordRequests?: boolean;
}

/** Handle on a running stand-in. */
export interface Standin {
  /** Base URL to hand to the SDK (OpenAI: ends in `/v1`; Gemini: origin, SDK adds `/v1beta`). */
  readonly url: string;
  /** Requests received so far, in arrival order. */
  readonly requests: RecordedRequest[];
  /** Replaces the script used for subsequent requests. */
  setScript(fn: ScriptFn): void;
  /** Number of responses the client abandoned (closed the connection before the stand-in finished). */
  readonly aborts: number;
  /**
   * Resolves with the milliseconds between request arrival and the connection closing, for the
   * next abort (or one already recorded and not yet consumed). Rejects after `timeoutMs` (default 2000).
   */
  waitForAbort(timeoutMs?: number): Promise<number>;
  /** Closes every socket and the listener. */
  close(): Promise<void>;
}

export const DEFAULT_TOKENS: readonly string[] = ['Hello', ' from', ' the', ' stand', '-in'];
export const DEFAULT_TEXT = DEFAULT_TOKENS.join('');

export const defaultScript: ScriptFn = () => ({ tokens: [...DEFAULT_TOKENS] });

/** Crude, deterministic token estimate used for default input usage: ceil(chars / 4), at least 1. */
export function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/**
 * Concatenates the human text found in a request fragment: strings, and the `content`, `text`,
 * `parts`, `input` members of objects (recursively). Roles, ids etc. are ignored.
 */
export function collectText(node: unknown): string {
  if (typeof node === 'string') return node;
  if (Array.isArray(node)) {
    let out = '';
    for (const item of node) out += collectText(item);
    return out;
  }
  const rec = asRecord(node);
  if (!rec) return '';
  let out = '';
  for (const key of ['content', 'text', 'parts', 'input'] as const) {
    if (key in rec) out += collectText(rec[key]);
  }
  return out;
}

export function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Resolved usage numbers for a script (`undefined` when the script disables usage). */
export function resolveUsage(script: Script, inputText: string): { input: number; output: number; reasoning?: number } | undefined {
  if (script.usage === false) return undefined;
  if (script.usage) return { input: script.usage.inputTokens, output: script.usage.outputTokens, ...(script.usage.reasoningTokens ? { reasoning: script.usage.reasoningTokens } : {}) };
  return { input: estimateTokens(inputText), output: script.tokens.length };
}

/**
 * Deterministic unit-length embedding for `text` (times `scale`). Values are exactly
 * representable as float32, so the float JSON form and OpenAI's base64 float32 form decode to
 * identical numbers.
 */
export function deterministicEmbedding(text: string, dims: number, scale = 1): Float32Array {
  // FNV-1a over UTF-16 code units, then mulberry32.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  let state = h >>> 0;
  const raw = new Float64Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296; // [0, 1)
    const v = r * 2 - 1;
    raw[i] = v;
    norm += v * v;
  }
  norm = Math.sqrt(norm) || 1;
  const out = new Float32Array(dims);
  for (let i = 0; i < dims; i++) out[i] = ((raw[i] ?? 0) / norm) * scale;
  return out;
}

/** Per-request state shared between the core server and a provider route. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly record: RecordedRequest;
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number;
  /** Pending stream timer, cleared automatically when the connection closes. */
  timer: NodeJS.Timeout | undefined;
  /** Set when the stand-in itself cut the connection (so it is not counted as an abort). */
  cut: boolean;
}

/** Provider hooks plugged into {@link startStandinServer}. */
export interface RouteContext {
  /** The script for this request (calls the current ScriptFn). */
  script(record: RecordedRequest): Script;
  readonly apiKey: string | undefined;
}

export type RouteHandler = (ex: Exchange, ctx: RouteContext) => void;

/** Writes a complete JSON response. */
export function sendJson(
  res: ServerResponse,
  status: number,
  payload: unknown,
  extraHeaders?: Record<string, string>,
  contentType = 'application/json',
): void {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    Connection: 'keep-alive',
    ...extraHeaders,
  });
  res.end(body);
}

/**
 * Closes the connection under a half-written response: already-queued bytes are flushed, then
 * the socket is ended without the chunked-encoding terminator, then destroyed.
 */
export function cutConnection(ex: Exchange): void {
  ex.cut = true;
  const sock: Socket | null = ex.res.socket;
  if (!sock || sock.destroyed) {
    ex.res.destroy();
    return;
  }
  sock.end(() => sock.destroy());
}

/** Provider formatting for {@link runStream}. */
export interface StreamFormat {
  /** Response headers (content type etc.); `Connection: keep-alive` is added. */
  headers: Record<string, string>;
  /** Bytes sent right after the headers, before any delay (e.g. OpenAI's role chunk). */
  head?: string;
  /** The event carrying token `index`. */
  event(token: string, index: number, isLast: boolean): string;
  /** Bytes sent after the last token (finish chunk, usage, terminator). */
  tail(): string;
}

/** Sum of the pauses a script asks for (used to delay non-streamed answers the same way). */
export function totalDelay(script: Script): number {
  const n = script.tokens.length;
  if (n === 0) return 0;
  const d = script.delayMs ?? 0;
  return (script.firstTokenDelayMs ?? d) + d * (n - 1);
}

/**
 * Streams `script.tokens` with the script's timing. Stops silently once the client is gone,
 * cuts the connection if `cutAfter` says so, otherwise ends with `format.tail()`.
 */
export function runStream(ex: Exchange, script: Script, format: StreamFormat): void {
  const { res } = ex;
  const tokens = script.tokens;
  const n = tokens.length;
  const cutDefined = script.cutAfter !== undefined;
  const cutAt = script.cutAfter ?? Number.POSITIVE_INFINITY;
  const delay = script.delayMs ?? 0;
  const firstDelay = script.firstTokenDelayMs ?? delay;

  res.writeHead(200, { ...format.headers, Connection: 'keep-alive' });
  if (format.head) res.write(format.head);
  else res.flushHeaders();

  let i = 0;
  let waited = false;
  const step = (): void => {
    ex.timer = undefined;
    for (;;) {
      if (res.destroyed || res.writableEnded) return;
      if (i >= cutAt || (i >= n && cutDefined)) {
        cutConnection(ex);
        return;
      }
      if (i >= n) {
        res.end(format.tail());
        return;
      }
      const d = i === 0 ? firstDelay : delay;
      if (d > 0 && !waited) {
        waited = true;
        ex.timer = setTimeout(step, d);
        return;
      }
      waited = false;
      res.write(format.event(tokens[i] as string, i, i === n - 1));
      i++;
    }
  };
  step();
}

/**
 * Runs `handler` after `ms` (immediately if 0) unless the connection has gone away.
 * Used for non-streamed answers.
 */
export function after(ex: Exchange, ms: number, fn: () => void): void {
  if (ms <= 0) {
    fn();
    return;
  }
  ex.timer = setTimeout(() => {
    ex.timer = undefined;
    if (!ex.res.destroyed) fn();
  }, ms);
}

function parseQuery(search: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of search) out[k] = v;
  return out;
}

/**
 * Starts the HTTP server shared by all stand-ins. `basePath` is appended to the origin to form
 * `url` (e.g. `/v1` for OpenAI).
 */
export async function startStandinServer(
  opts: StandinOptions | undefined,
  basePath: string,
  handler: RouteHandler,
): Promise<Standin> {
  let scriptFn: ScriptFn = opts?.script ?? defaultScript;
  const record = opts?.recordRequests ?? true;
  const requests: RecordedRequest[] = [];
  const unconsumedAborts: number[] = [];
  const waiters: Array<{ resolve: (ms: number) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  const live = new Set<Exchange>();
  let aborts = 0;
  let closing = false;

  const ctx: RouteContext = {
    script: (rec) => scriptFn(rec),
    apiKey: opts?.apiKey,
  };

  const onAbort = (ms: number): void => {
    aborts++;
    const w = waiters.shift();
    if (w) {
      clearTimeout(w.timer);
      w.resolve(ms);
    } else {
      unconsumedAborts.push(ms);
    }
  };

  const server = http.createServer({ noDelay: true, keepAlive: true }, (req, res) => {
    const startedAt = performance.now();
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: parseQuery(url.searchParams),
      headers: req.headers,
      body: undefined,
    };
    const ex: Exchange = { req, res, record: rec, startedAt, timer: undefined, cut: false };
    live.add(ex);
    res.on('close', () => {
      live.delete(ex);
      if (ex.timer) {
        clearTimeout(ex.timer);
        ex.timer = undefined;
      }
      if (!res.writableFinished && !ex.cut && !closing) onAbort(performance.now() - startedAt);
    });
    req.on('error', () => {
      /* client went away while sending; the 'close' handler above accounts for it */
    });

    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (res.destroyed) return;
      if (chunks.length > 0) {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          rec.body = JSON.parse(text) as unknown;
        } catch {
          rec.body = text;
        }
      }
      if (record) requests.push(rec);
      try {
        handler(ex, ctx);
      } catch (err) {
        if (!res.headersSent) {
          sendJson(res, 500, { error: { message: `stand-in failure: ${String(err)}` } });
        } else {
          res.destroy();
        }
      }
    });
  });
  server.on('connection', (s: Socket) => s.setNoDelay(true));
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 2048 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${basePath}`,
    requests,
    setScript(fn: ScriptFn): void {
      scriptFn = fn;
    },
    get aborts(): number {
      return aborts;
    },
    waitForAbort(timeoutMs = 2000): Promise<number> {
      const ready = unconsumedAborts.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise<number>((resolve, reject) => {
        const w = {
          resolve,
          reject,
          timer: setTimeout(() => {
            const idx = waiters.indexOf(w);
            if (idx >= 0) waiters.splice(idx, 1);
            reject(new Error(`stand-in: no client abort within ${timeoutMs} ms`));
          }, timeoutMs),
        };
        waiters.push(w);
      });
    },
    close(): Promise<void> {
      closing = true;
      for (const ex of live) {
        if (ex.timer) clearTimeout(ex.timer);
        ex.timer = undefined;
      }
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error('stand-in closed'));
      }
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
