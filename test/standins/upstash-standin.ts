/**
 * Test stand-in for the Upstash Redis REST API, backed by a real Redis server.
 *
 * Speaks the protocol exactly as `@upstash/redis` uses it:
 *  - `POST /`           body `["SET","k","v"]`          → `{"result": ...}` (errors: 400 `{"error": "ERR ..."}`)
 *  - `POST /pipeline`   body `[["SET","k","v"], [...]]` → `[{"result": ...} | {"error": "..."}, ...]`
 *  - `POST /multi-exec` same body, run inside MULTI/EXEC  → same shape
 *  - `Authorization: Bearer <token>` is required (401 `{"error":"Unauthorized"}` otherwise)
 *  - With `Upstash-Encoding: base64` every string result (bulk and simple, also nested in arrays)
 *    is base64-encoded, except the simple string `OK`, which the client special-cases.
 *
 * Lua shebang flags that Debian's Redis 7.0 does not know (`allow-key-locking`, used by every
 * `@upstash/ratelimit` script) are removed before scripts reach Redis. Because that changes the
 * script's SHA1, the stand-in remembers `sha1(original) → sha1(rewritten)` and translates
 * EVALSHA / EVALSHA_RO / SCRIPT EXISTS, and answers SCRIPT LOAD with the original's SHA1, so the
 * client-side SHA that `@upstash/redis` and `@upstash/ratelimit` compute keeps working.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';

// ---------------------------------------------------------------------------------------------
// Minimal RESP2 client
// ---------------------------------------------------------------------------------------------

/** A RESP simple string (`+OK`), kept distinct from bulk strings (which are `Buffer`s). */
export class RespSimpleString {
  constructor(readonly value: string) {}
}

/** A RESP error reply (`-ERR ...`). Returned as a value, never thrown, by {@link RespClient}. */
export class RespError {
  constructor(readonly message: string) {}
}

export type RespReply = RespSimpleString | RespError | Buffer | number | null | RespReply[];

export type RespArg = string | Buffer | number;

interface ParseResult {
  value: RespReply;
  next: number;
}

/** Parses one reply starting at `pos`; returns undefined if the buffer does not hold all of it yet. */
function parseReply(buf: Buffer, pos: number): ParseResult | undefined {
  if (pos >= buf.length) return undefined;
  const lineEnd = buf.indexOf('\r\n', pos + 1, 'latin1');
  if (lineEnd === -1) return undefined;
  const type = buf[pos];
  const line = buf.toString('utf8', pos + 1, lineEnd);
  const afterLine = lineEnd + 2;
  switch (type) {
    case 0x2b: // '+'
      return { value: new RespSimpleString(line), next: afterLine };
    case 0x2d: // '-'
      return { value: new RespError(line), next: afterLine };
    case 0x3a: // ':'
      return { value: Number(line), next: afterLine };
    case 0x24: {
      // '$'
      const len = Number.parseInt(line, 10);
      if (len < 0) return { value: null, next: afterLine };
      if (buf.length < afterLine + len + 2) return undefined;
      return { value: Buffer.from(buf.subarray(afterLine, afterLine + len)), next: afterLine + len + 2 };
    }
    case 0x2a: {
      // '*'
      const count = Number.parseInt(line, 10);
      if (count < 0) return { value: null, next: afterLine };
      const items: RespReply[] = [];
      let cursor = afterLine;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, cursor);
        if (item === undefined) return undefined;
        items.push(item.value);
        cursor = item.next;
      }
      return { value: items, next: cursor };
    }
    default:
      throw new Error(`RESP protocol error: unexpected type byte 0x${(type ?? 0).toString(16)}`);
  }
}

function encodeCommand(args: readonly RespArg[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const b = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

interface Pending {
  resolve: (r: RespReply) => void;
  reject: (e: Error) => void;
}

/**
 * One persistent connection; commands are pipelined and replies matched in FIFO order.
 * Error replies resolve as {@link RespError}; only connection failures reject.
 * Reconnects lazily after the connection is lost.
 */
export class RespClient {
  private socket: net.Socket | undefined;
  private readonly queue: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private closed = false;

  constructor(
    private readonly port: number,
    private readonly host = '127.0.0.1',
  ) {}

  /** Sends one command. */
  command(args: readonly RespArg[]): Promise<RespReply> {
    const [p] = this.batch([args]);
    if (p === undefined) throw new Error('unreachable');
    return p;
  }

  /** Sends several commands in one write, so no other command can interleave (needed for MULTI/EXEC). */
  batch(commands: readonly (readonly RespArg[])[]): Promise<RespReply>[] {
    if (this.closed) return commands.map(() => Promise.reject(new Error('RespClient is closed')));
    const socket = this.ensureSocket();
    const promises = commands.map(
      () => new Promise<RespReply>((resolve, reject) => this.queue.push({ resolve, reject })),
    );
    socket.write(Buffer.concat(commands.map(encodeCommand)));
    return promises;
  }

  async close(): Promise<void> {
    this.closed = true;
    const s = this.socket;
    this.socket = undefined;
    if (s !== undefined && !s.destroyed) {
      const closed = once(s, 'close');
      s.end();
      const timer = setTimeout(() => s.destroy(), 1000);
      await closed;
      clearTimeout(timer);
    }
    this.failAll(new Error('RespClient closed'));
  }

  private ensureSocket(): net.Socket {
    if (this.socket !== undefined && !this.socket.destroyed) return this.socket;
    const socket = net.connect({ host: this.host, port: this.port });
    socket.setNoDelay(true);
    this.buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      if (this.socket === socket) this.socket = undefined;
      this.failAll(new Error(`Redis connection error: ${err.message}`));
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      this.failAll(new Error('Redis connection closed'));
    });
    this.socket = socket;
    return socket;
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let pos = 0;
    for (;;) {
      let parsed: ParseResult | undefined;
      try {
        parsed = parseReply(this.buffer, pos);
      } catch (err) {
        this.failAll(err instanceof Error ? err : new Error(String(err)));
        this.socket?.destroy();
        return;
      }
      if (parsed === undefined) break;
      pos = parsed.next;
      this.queue.shift()?.resolve(parsed.value);
    }
    this.buffer = pos >= this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(pos);
  }

  private failAll(err: Error): void {
    for (const p of this.queue.splice(0)) p.reject(err);
  }
}

// ---------------------------------------------------------------------------------------------
// Script rewriting (shebang flags unknown to Redis 7.0)
// ---------------------------------------------------------------------------------------------

/** Flags Upstash accepts in `#!lua flags=...` that Redis 7.0 rejects ("Unexpected flag in script shebang"). */
const UNSUPPORTED_SHEBANG_FLAGS = new Set(['allow-key-locking']);

const sha1Hex = (s: string | Buffer): string => createHash('sha1').update(s).digest('hex');

/** Removes unsupported flags from a leading `#!lua flags=...` line; keeps line numbers intact. */
export function rewriteScript(script: string): string {
  const m = /^#!lua([^\n]*)/.exec(script);
  if (m === null) return script;
  const rest = m[1] ?? '';
  const flagsMatch = /(^|\s)flags=(\S*)/.exec(rest);
  if (flagsMatch === null) return script;
  const flags = (flagsMatch[2] ?? '').split(',').filter((f) => f !== '');
  const kept = flags.filter((f) => !UNSUPPORTED_SHEBANG_FLAGS.has(f));
  if (kept.length === flags.length) return script;
  const newRest = rest.replace(flagsMatch[0], kept.length > 0 ? `${flagsMatch[1] ?? ''}flags=${kept.join(',')}` : '');
  return `#!lua${newRest.trimEnd()}${script.slice(m[0].length)}`;
}

// ---------------------------------------------------------------------------------------------
// HTTP stand-in
// ---------------------------------------------------------------------------------------------

export interface UpstashStandin {
  /** Base URL, e.g. `http://127.0.0.1:41234`, to pass as `new Redis({ url })`. */
  url: string;
  token: string;
  close(): Promise<void>;
  /** Number of HTTP requests received so far (including rejected ones). */
  requestCount(): number;
}

type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

interface Translated {
  args: RespArg[];
  /** Applied to the raw Redis reply before it is sent back. */
  post?: (reply: RespReply) => RespReply;
}

/** Commands that would break the shared, pipelined Redis connection. */
const FORBIDDEN = new Set([
  'multi', 'exec', 'discard', 'watch', 'unwatch', 'select', 'swapdb', 'quit', 'reset', 'hello', 'auth',
  'client', 'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe',
  'monitor', 'sync', 'psync', 'shutdown', 'replicaof', 'slaveof', 'debug',
  'blpop', 'brpop', 'brpoplpush', 'blmove', 'blmpop', 'bzpopmin', 'bzpopmax', 'bzmpop', 'wait', 'waitaof',
]);

class StandinError extends Error {}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

export async function startUpstashStandin(opts: {
  redisPort: number;
  token: string;
}): Promise<{ url: string; token: string; close(): Promise<void>; requestCount(): number }> {
  const redis = new RespClient(opts.redisPort);
  const expectedAuth = Buffer.from(`Bearer ${opts.token}`);
  /** sha1(script as the client sent it) → sha1(script as Redis got it), only for rewritten scripts. */
  const shaMap = new Map<string, string>();
  let requests = 0;

  const rememberScript = (script: string): string => {
    const rewritten = rewriteScript(script);
    if (rewritten !== script) shaMap.set(sha1Hex(script), sha1Hex(rewritten));
    return rewritten;
  };
  const translateSha = (sha: string): string => shaMap.get(sha.toLowerCase()) ?? sha;

  const translate = (raw: JsonValue): Translated => {
    if (!Array.isArray(raw) || raw.length === 0) throw new StandinError('ERR failed to parse command');
    const args: string[] = raw.map((a) => {
      if (typeof a === 'string') return a;
      if (typeof a === 'number' || typeof a === 'boolean') return String(a);
      throw new StandinError('ERR failed to parse command: arguments must be strings, numbers or booleans');
    });
    const name = (args[0] ?? '').toLowerCase();
    if (FORBIDDEN.has(name)) throw new StandinError(`ERR Command is not allowed: ${name}`);
    if ((name === 'xread' || name === 'xreadgroup') && args.some((a) => a.toLowerCase() === 'block')) {
      throw new StandinError(`ERR blocking ${name} is not supported by the stand-in`);
    }
    if ((name === 'eval' || name === 'eval_ro') && args[1] !== undefined) {
      args[1] = rememberScript(args[1]);
    } else if ((name === 'evalsha' || name === 'evalsha_ro') && args[1] !== undefined) {
      args[1] = translateSha(args[1]);
    } else if (name === 'script') {
      const sub = (args[1] ?? '').toLowerCase();
      if (sub === 'load' && args[2] !== undefined) {
        const original = args[2];
        args[2] = rememberScript(original);
        const clientSha = sha1Hex(original);
        return { args, post: (r) => (r instanceof RespError ? r : Buffer.from(clientSha)) };
      }
      if (sub === 'exists') {
        for (let i = 2; i < args.length; i++) args[i] = translateSha(args[i] ?? '');
      }
      if (sub === 'flush') shaMap.clear();
    }
    return { args };
  };

  const toJson = (reply: RespReply, base64: boolean): JsonValue => {
    if (reply === null || typeof reply === 'number') return reply;
    if (Buffer.isBuffer(reply)) return reply.toString(base64 ? 'base64' : 'utf8');
    if (reply instanceof RespSimpleString) {
      return base64 && reply.value !== 'OK' ? Buffer.from(reply.value).toString('base64') : reply.value;
    }
    if (reply instanceof RespError) {
      // Only reachable inside arrays (e.g. Lua tables); the client would base64-decode a nested string.
      return base64 ? Buffer.from(reply.message).toString('base64') : reply.message;
    }
    return reply.map((r) => toJson(r, base64));
  };

  type Item = { result: JsonValue } | { error: string };
  const toItem = (reply: RespReply, base64: boolean): Item =>
    reply instanceof RespError ? { error: reply.message } : { result: toJson(reply, base64) };

  const runSingle = async (body: JsonValue, base64: boolean): Promise<{ status: number; json: JsonValue }> => {
    const t = translate(body);
    const reply = await redis.command(t.args);
    const item = toItem(t.post ? t.post(reply) : reply, base64);
    return { status: 'error' in item ? 400 : 200, json: item };
  };

  const runPipeline = async (body: JsonValue, base64: boolean): Promise<{ status: number; json: JsonValue }> => {
    if (!Array.isArray(body) || body.length === 0) throw new StandinError('ERR empty or malformed pipeline');
    const slots: (Translated | StandinError)[] = body.map((cmd) => {
      try {
        return translate(cmd);
      } catch (err) {
        if (err instanceof StandinError) return err;
        throw err;
      }
    });
    const toSend = slots.filter((s): s is Translated => !(s instanceof StandinError));
    const replies = toSend.length > 0 ? await Promise.all(redis.batch(toSend.map((t) => t.args))) : [];
    let j = 0;
    const items: Item[] = [];
    for (const slot of slots) {
      if (slot instanceof StandinError) {
        items.push({ error: slot.message });
        continue;
      }
      const reply = replies[j++];
      if (reply === undefined) throw new Error('unreachable');
      items.push(toItem(slot.post ? slot.post(reply) : reply, base64));
    }
    return { status: 200, json: items };
  };

  const runMultiExec = async (body: JsonValue, base64: boolean): Promise<{ status: number; json: JsonValue }> => {
    if (!Array.isArray(body) || body.length === 0) throw new StandinError('ERR empty or malformed transaction');
    const cmds = body.map((cmd) => translate(cmd));
    const promises = redis.batch([['MULTI'], ...cmds.map((c) => c.args), ['EXEC']]);
    const replies = await Promise.all(promises);
    const exec = replies[replies.length - 1];
    if (exec instanceof RespError) {
      // EXECABORT: report the first queue-time error, like Redis itself does in its message.
      const queued = replies.slice(1, -1).find((r): r is RespError => r instanceof RespError);
      return { status: 400, json: { error: queued ? `${exec.message} (${queued.message})` : exec.message } };
    }
    if (!Array.isArray(exec)) return { status: 400, json: { error: 'ERR transaction aborted' } };
    const items = exec.map((r, i) => {
      const post = cmds[i]?.post;
      return toItem(post ? post(r) : r, base64);
    });
    return { status: 200, json: items };
  };

  const send = (res: http.ServerResponse, status: number, json: JsonValue): void => {
    const payload = JSON.stringify(json);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
    res.end(payload);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    requests++;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        send(res, 413, { error: 'ERR max request size exceeded' });
        req.destroy();
        return;
      }
      chunks.push(chunk);
    }
    const auth = Buffer.from(req.headers.authorization ?? '');
    if (auth.length !== expectedAuth.length || !timingSafeEqual(auth, expectedAuth)) {
      send(res, 401, { error: 'Unauthorized' });
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, { error: 'ERR only POST is supported by the stand-in' });
      return;
    }
    let body: JsonValue;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as JsonValue;
    } catch {
      send(res, 400, { error: 'ERR failed to parse command' });
      return;
    }
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64';
    const path = (req.url ?? '/').split('?')[0]?.replace(/\/+$/, '') ?? '';
    try {
      let out: { status: number; json: JsonValue };
      if (path === '') out = await runSingle(body, base64);
      else if (path === '/pipeline') out = await runPipeline(body, base64);
      else if (path === '/multi-exec') out = await runMultiExec(body, base64);
      else out = { status: 404, json: { error: `ERR unknown endpoint ${path}` } };
      send(res, out.status, out.json);
    } catch (err) {
      if (err instanceof StandinError) send(res, 400, { error: err.message });
      else send(res, 500, { error: `ERR stand-in failure: ${err instanceof Error ? err.message : String(err)}` });
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: `ERR stand-in failure: ${String(err)}` });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 1000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('stand-in: could not determine port');

  // Fail fast (and warm the connection) if Redis is not reachable.
  const pong = await redis.command(['PING']).catch((err: unknown) => new RespError(String(err)));
  if (!(pong instanceof RespSimpleString) || pong.value !== 'PONG') {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await redis.close();
    const detail = pong instanceof RespError ? `: ${pong.message}` : '';
    throw new Error(`stand-in: Redis on 127.0.0.1:${opts.redisPort} did not answer PING${detail}`);
  }

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    token: opts.token,
    requestCount: () => requests,
    close: () => {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        await redis.close();
      })();
      return closing;
    },
  };
}
