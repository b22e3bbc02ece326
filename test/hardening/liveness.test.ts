/**
 * Liveness under faults and slow peers: a provider that stalls, a client that stops reading,
 * text that is expensive to tokenise, a client that vanishes mid-upload, a conversation
 * deleted mid-reply, an SDK that would print to the console.
 */
import http from 'node:http';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Logger } from '../../src/logger.js';
import { countTokens } from '../../src/models/tokenizer.js';
import { createNodeServer } from '../../src/node/server.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { outgoingBytes } from '../../src/socket/backpressure.js';
import { bearer, register } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { EventLog, client, closeAllClients, connected, type AiClient, type DefaultClient } from '../socket/socket-harness.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const KEY = 'sk-liveness-test';

/** A logger that keeps every record, for asserting what was (not) logged. */
function recordingLogger() {
  const records: { level: string; obj: Record<string, unknown>; msg: string | undefined }[] = [];
  const make = (): Logger => ({
    debug: (obj, msg) => void records.push({ level: 'debug', obj: obj as Record<string, unknown>, msg }),
    info: (obj, msg) => void records.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj, msg) => void records.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
    error: (obj, msg) => void records.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
    child: () => make(),
  });
  return { logger: make(), records };
}

async function gatewayWithLogger(env: Record<string, string>) {
  const { logger, records } = recordingLogger();
  const dataDir = tempDataDir();
  const server = await createNodeServer(loadConfig({ HOST: '127.0.0.1', PORT: '0', SHUTDOWN_GRACE_MS: '500', DATA_DIR: dataDir, ...env }), { logger });
  const { port } = await server.listen();
  return { url: `http://127.0.0.1:${port}`, server, records, close: () => server.close() };
}

describe('a provider that stalls never holds a turn', () => {
  let standin: Standin;
  let gw: TestGateway;
  let user: Awaited<ReturnType<typeof register>>;
  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: KEY });
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: standin.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      PROVIDER_MAX_RETRIES: '0',
      PROVIDER_FIRST_BYTE_TIMEOUT_MS: '600',
      PROVIDER_IDLE_TIMEOUT_MS: '400',
    });
    user = await register(gw.url, 'stall@example.com');
  });
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
    await standin.close();
  });

  // One token, then nothing for a minute.
  const stallAfterOne = () => standin.setScript(() => ({ tokens: ['half', ' never'], firstTokenDelayMs: 0, delayMs: 60_000 }));

  it('every protocol ends the turn with PROVIDER_ERROR, keeps the partial reply, and closes the upstream', async () => {
    stallAfterOne();
    const started = performance.now();
    const sse = readSse(await postChat(gw.url, { message: 'sse', sessionId: 'stall-sse' }));

    const root = client<DefaultClient>(gw.url, { transports: ['websocket'], extraHeaders: { cookie: user.cookie } });
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    await connected(root);
    root.emit('ai:chat', { message: 'ai:chat', sessionId: 'stall-002' });
    root.emit('ai-message', { prompt: 'seed 000' });
    root.emit('ai-message', { chatId: 'stall-001', content: 'seed 001' });
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'], auth: { token: user.token } });
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    ai.emit('chat:start', { message: 'seed 003', conversationId: 'stall-003' });

    const [sseEvents, e002, e000, e001, e003] = await Promise.all([
      sse,
      rootLog.next('ai:error', 5000),
      rootLog.next('ai-message-response', 5000),
      rootLog.next('ai-response', 5000),
      aiLog.next('chat:error', 5000),
    ]);
    expect(performance.now() - started).toBeLessThan(4000);
    expect(sseEvents.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR', error: expect.stringMatching(/sent nothing for 400 ms/) });
    for (const e of [e002, e000, e001]) expect(e).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect(e003).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect((await messagesOf(gw, 'stall-sse')).at(-1)).toMatchObject({ role: 'assistant', content: 'half', finishReason: 'error' });
    expect((await messagesOf(gw, 'stall-003', user.user.id)).at(-1)).toMatchObject({ content: 'half', finishReason: 'error' });
    // Every upstream request was ended, not left hanging.
    await waitFor(() => standin.aborts >= 5, 3000);
    expect(gw.server.gauges.activeStreams).toBe(0);

    // /ai is not BUSY afterwards.
    standin.setScript(() => ({ tokens: ['fine'] }));
    ai.emit('chat:start', { message: 'again', conversationId: 'stall-003' });
    expect(await aiLog.next('chat:end')).toMatchObject({ finishReason: 'stop' });
  });

  it('a provider that answers headers but no token, and one that never answers at all, end with the first-byte timeout', async () => {
    standin.setScript(() => ({ tokens: ['late'], firstTokenDelayMs: 60_000 }));
    let started = performance.now();
    let events = await readSse(await postChat(gw.url, { message: 'x' }));
    expect(events.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR', error: expect.stringMatching(/did not start answering within/) });
    expect(performance.now() - started).toBeLessThan(3000);

    // A server that accepts the connection and says nothing, not even headers.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const mute = await startGateway({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_FIRST_BYTE_TIMEOUT_MS: '600' });
    try {
      started = performance.now();
      events = await readSse(await postChat(mute.url, { message: 'x' }));
      expect(events.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR' });
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      await mute.destroy();
      silent.close();
    }
  });
});

/** What the slow-reader suites allow a socket to hold before the gateway stops pulling. */
const MAX_BACKLOG = 64 * 1024;

/**
 * A gateway whose model (the OpenAI stand-in) answers every turn with `tokens`, for a suite of
 * slow or stalled readers: a 64 KiB socket backlog, cut after a second unread, a token limit
 * that lets the whole reply through (`env` adds to it). Torn down after the suite.
 */
function slowReaderGatewayForSuite(tokens: string[], env: Record<string, string> = {}): () => TestGateway {
  let standin: Standin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: KEY, recordRequests: false, script: () => ({ tokens }) });
    gw = await startGateway({
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: standin.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      PROVIDER_MAX_RETRIES: '0',
      // Chunks of 1,000 characters: within what a reply of this limit may hold (64 characters a token).
      MAX_OUTPUT_TOKENS: '1000000',
      SOCKET_MAX_BACKLOG_BYTES: String(MAX_BACKLOG),
      SLOW_CLIENT_TIMEOUT_MS: '1000',
      RATE_LIMIT_ANON: '1000',
      ...env,
    });
  });
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
    await standin.close();
  });
  return () => gw;
}

describe('a client that stops reading is bounded', () => {
  // 20 MB of reply: far more than the kernel's socket buffers can hide.
  const BIG = Array.from({ length: 20_000 }, (_, i) => `${i} ${'x'.repeat(1000)}`);
  const suiteGateway = slowReaderGatewayForSuite(BIG);
  let gw: TestGateway;
  beforeAll(() => {
    gw = suiteGateway();
  });

  it('Socket.IO: the gateway stops pulling while the socket backlog is over the bound, then cuts the turn and stores it', async () => {
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(ai);
    await connected(ai);
    ai.emit('chat:start', { message: 'everything', conversationId: 'slow-reader' });
    await log.next('chat:message');
    // Stop reading: the TCP window fills and the server's writes queue up.
    (ai.io.engine.transport as unknown as { ws: { pause(): void } }).ws.pause();
    const serverSocket = [...gw.server.io.of('/ai').sockets.values()][0]!;
    let maxBacklog = 0;
    const sampler = setInterval(() => (maxBacklog = Math.max(maxBacklog, outgoingBytes(serverSocket))), 5);
    const stored = await waitFor(async () => (await messagesOf(gw, 'slow-reader')).find((m) => m.role === 'assistant'), 8000);
    clearInterval(sampler);
    expect(stored.finishReason).toBe('aborted');
    // Far less than the 20 MB the model offered: what the socket and the kernel could hold.
    expect(stored.content.length).toBeLessThan(BIG.join('').length / 2);
    // The gateway's own buffer never grew past the bound by more than one frame (the tokens of one network read, at most 64 KiB).
    expect(maxBacklog).toBeLessThan(MAX_BACKLOG + 70 * 1024);
    expect(gw.server.gauges.activeStreams).toBe(0);
  });

  it('SSE: a reader that stops is cut after SLOW_CLIENT_TIMEOUT_MS and its reply stored', async () => {
    const socket = net.connect((new URL(gw.url).port as unknown as number) * 1, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const body = JSON.stringify({ message: 'everything', sessionId: 'slow-sse' });
    socket.write(`POST /api/v2/ai/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await new Promise((r) => socket.once('data', r));
    socket.pause();
    const stored = await waitFor(async () => (await messagesOf(gw, 'slow-sse')).find((m) => m.role === 'assistant'), 8000);
    expect(stored.finishReason).toBe('aborted');
    expect(stored.content.length).toBeLessThan(BIG.join('').length / 2);
    socket.destroy();
  });
});

describe('a provider that ignores max_tokens', () => {
  it('is cut once its reply is far past the limit, which ends as a reply at its limit (length), stored so', async () => {
    // 16 tokens asked for; 20,000 chunks of 100 characters (2 MB) sent.
    const chunk = 'x'.repeat(99) + ' ';
    const standin = await startOpenAIStandin({ apiKey: KEY, recordRequests: false, script: () => ({ tokens: Array.from({ length: 20_000 }, () => chunk) }) });
    const gw = await startGateway({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: standin.url, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_MAX_RETRIES: '0', MAX_OUTPUT_TOKENS: '16' });
    try {
      const events = await readSse(await postChat(gw.url, { message: 'a short answer, please', sessionId: 'runaway' }));
      expect(events.at(-1)).toMatchObject({ done: true, finishReason: 'length' });
      const received = events.map((e) => (typeof e.content === 'string' ? e.content : '')).join('');
      // 64 characters a token at most: the first 1,024 characters sent.
      expect(received).toBe(chunk.repeat(20).slice(0, 16 * 64));
      const stored = (await messagesOf(gw, 'runaway')).find((m) => m.role === 'assistant');
      expect(stored).toMatchObject({ finishReason: 'length', content: received });
    } finally {
      await gw.destroy();
      await standin.close();
    }
  });
});

describe('a long reply to a reader slower than the model', () => {
  it('waits for it as often as its buffer fills, and leaves nothing behind each time (no listener piles up on the turn)', async () => {
    const chunk = 'y'.repeat(2048);
    const standin = await startOpenAIStandin({ apiKey: KEY, recordRequests: false, script: () => ({ tokens: Array.from({ length: 3000 }, () => chunk) }) });
    const gw = await startGateway({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: standin.url, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_MAX_RETRIES: '0', MAX_OUTPUT_TOKENS: '1000000' });
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const res = await postChat(gw.url, { message: 'a long one, read slowly', sessionId: 'slow-but-steady' });
      const reader = res.body!.getReader();
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.length;
        await new Promise((r) => setTimeout(r, 2));
      }
      // The whole 6 MB reply arrived...
      expect(bytes).toBeGreaterThan(3000 * 2048);
      // ...over many waits for the reader, each of which used to leave an abort listener on the turn.
      expect(warnings.filter((w) => w.includes('MaxListenersExceeded'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await gw.destroy();
      await standin.close();
    }
  }, 60_000);
});

describe('a replay (chat:resume) to a client that stops reading', () => {
  // A 12 MB reply, kept for resuming: more than the kernel's socket buffers on loopback hide (a few MB).
  const LONG = Array.from({ length: 12_000 }, (_, i) => ` ${i}${'y'.repeat(994)}`);
  // Six kept turns of 12 MB (24 MB each in memory).
  const suiteGateway = slowReaderGatewayForSuite(LONG, { STREAM_RESUME_MAX_BYTES: String(512 * 1024 * 1024) });
  let gw: TestGateway;
  beforeAll(() => {
    gw = suiteGateway();
  });

  /** Kept turns in conversations `ids`, read to their ends by one client; returns that client, still connected (it owns them). */
  async function keptTurns(ids: string[]): Promise<AiClient> {
    const owner = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(owner);
    await connected(owner);
    for (const [i, conversationId] of ids.entries()) {
      owner.emit('chat:start', { message: `a long one (${i})`, conversationId });
      await log.next('chat:end', 20_000);
    }
    return owner;
  }

  /** A second connection of the same client (same address, no cookie: the same owner) that stops reading. */
  async function stalledReader() {
    const reader = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(reader);
    await connected(reader);
    const ws = (reader.io.engine.transport as unknown as { ws: { pause(): void; resume(): void } }).ws;
    ws.pause();
    const serverSocket = [...gw.server.io.of('/ai').sockets.values()].find((s) => s.id === reader.id)!;
    return { reader, log, ws, serverSocket };
  }

  it('asked again and again, it holds no more than the backlog bound, is cut after SLOW_CLIENT_TIMEOUT_MS, and a later resume replays the whole turn', async () => {
    await keptTurns(['kept-long']);
    const { reader, log, ws, serverSocket } = await stalledReader();
    let maxBacklog = 0;
    const sampler = setInterval(() => (maxBacklog = Math.max(maxBacklog, outgoingBytes(serverSocket))), 5);
    for (let i = 0; i < 20; i++) reader.emit('chat:resume', { conversationId: 'kept-long' });
    // Long enough for the last of them to wait out SLOW_CLIENT_TIMEOUT_MS.
    await new Promise((r) => setTimeout(r, 3_000));
    clearInterval(sampler);
    // Unbounded, the twenty replays queued over 200 MB here.
    expect(maxBacklog).toBeLessThan(MAX_BACKLOG + 70 * 1024);
    ws.resume();
    const cut = await log.next('chat:error', 5000);
    expect(cut).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/left unread for 1000 ms/) });
    // Reading again, a resume gets the whole reply and its end.
    const from = log.all('chat:message').length;
    reader.emit('chat:resume', { conversationId: 'kept-long' });
    await log.next('chat:end', 20_000);
    expect(log.all('chat:message').slice(from).map((m) => m.content).join('')).toBe(LONG.join(''));
  });

  it('a connection runs at most four replays at once: a fifth conversation answers BUSY', async () => {
    const ids = ['busy-1', 'busy-2', 'busy-3', 'busy-4', 'busy-5'];
    await keptTurns(ids);
    const { reader, log, ws } = await stalledReader();
    // Four replays fill the backlog and wait for the reader; the fifth finds no room.
    for (const conversationId of ids) reader.emit('chat:resume', { conversationId });
    await new Promise((r) => setTimeout(r, 500));
    ws.resume();
    const busy = await log.next('chat:error', 5000);
    expect(busy).toMatchObject({ code: 'BUSY', message: 'At most 4 resumes may run at once on one connection' });
  });
});

describe('token counting is linear and bounded', () => {
  it('32,000 "é" (quadratic for plain BPE) counts in milliseconds, close to the exact count', () => {
    countTokens('warm the encoder up: ' + 'x'.repeat(2_000));
    for (const ch of ['é', 'a', '漢']) {
      const text = ch.repeat(32_000);
      const started = performance.now();
      const n = countTokens(text);
      // The plain encoder took over a second for the first of these.
      expect(performance.now() - started).toBeLessThan(250);
      expect(n).toBeGreaterThan(0);
    }
    const prose = 'The quick brown fox jumps over the lazy dog. '.repeat(700);
    expect(countTokens(prose)).toBeGreaterThan(6000);
    expect(countTokens(prose)).toBeLessThan(7100);
  });

  it('turns with a 32,000-character worst-case message do not stall the event loop', async () => {
    const gw = await startGateway();
    try {
      const delay = monitorEventLoopDelay({ resolution: 5 });
      delay.enable();
      for (const ch of ['é', 'è', 'ê']) {
        const events = await readSse(await postChat(gw.url, { message: ch.repeat(32_000), sessionId: 'heavy' }));
        expect(events.at(-1)).toMatchObject({ done: true });
      }
      delay.disable();
      // The old code held the loop for 1-2.5 s per turn.
      expect(delay.max / 1e6).toBeLessThan(250);
    } finally {
      await gw.destroy();
    }
  });
});

describe('what a vanishing or deleting client leaves behind', () => {
  let gw: Awaited<ReturnType<typeof gatewayWithLogger>>;
  beforeAll(async () => {
    gw = await gatewayWithLogger({ JWT_SECRET: TEST_JWT_SECRET, LOCAL_MODEL_TOKEN_DELAY_MS: '20', RATE_LIMIT_ANON: '1000' });
  });
  afterAll(async () => {
    closeAllClients();
    await gw.close();
  });

  it('30 uploads cut off mid-body: no 5xx, no error log, the server keeps serving', async () => {
    const port = Number(new URL(gw.url).port);
    for (let i = 0; i < 30; i++) {
      const socket = net.connect(port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(`POST /api/v2/ai/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"message":"${'y'.repeat(1000)}`);
      await new Promise((r) => setTimeout(r, 5));
      socket.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(gw.records.filter((r) => r.level === 'error')).toEqual([]);
    expect(gw.records.filter((r) => r.msg === 'request' && Number(r.obj.status) >= 500)).toEqual([]);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('deleting a conversation while its reply streams stops the turn first and tells the client with a code', async () => {
    const owner = await register(gw.url, 'deleter@example.com');
    const res = await postChat(gw.url, { message: 'a long reply please', sessionId: 'doomed' }, bearer(owner));
    const reader = res.body!.getReader();
    await reader.read();
    const del = await fetch(`${gw.url}/api/v2/conversations/doomed`, { method: 'DELETE', headers: bearer(owner) });
    expect(del.status).toBe(200);
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain('"code":"NOT_FOUND"');
    expect(text).not.toContain('"done":true');
    expect(await gw.server.services.store.getConversation(owner.user.id, 'doomed')).toBeUndefined();
    expect((await messagesOf(gw, 'doomed', owner.user.id)).length).toBe(0);
    expect(gw.records.filter((r) => r.level === 'error')).toEqual([]);

    // The same on /ai.
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'], auth: { token: owner.token } });
    const log = new EventLog<AiServerToClientEvents>(ai);
    ai.emit('chat:start', { message: 'stream on', conversationId: 'doomed-ai' });
    await log.next('chat:message');
    await fetch(`${gw.url}/api/v2/conversations/doomed-ai`, { method: 'DELETE', headers: bearer(owner) });
    expect(await log.next('chat:error')).toMatchObject({ code: 'NOT_FOUND' });
    expect(log.all('chat:end')).toEqual([]);
    expect(gw.records.filter((r) => r.level === 'error')).toEqual([]);
  });
});

describe('a client that trickles its request is bounded', () => {
  let gw: Awaited<ReturnType<typeof gatewayWithLogger>>;
  let port: number;
  beforeAll(async () => {
    // A 1 s deadline; replies paced to outlast it (the deadline is for receiving a request, never for answering it).
    gw = await gatewayWithLogger({ REQUEST_TIMEOUT_MS: '1000', LOCAL_MODEL_TOKEN_DELAY_MS: '60' });
    port = Number(new URL(gw.url).port);
  });
  afterAll(() => gw.close());

  /** Opens a raw connection, writes `head`, and collects what the server answers until it closes the socket. */
  async function trickle(head: string) {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const started = performance.now();
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - started)));
    socket.write(head);
    return { socket, answer: () => answer, closed };
  }

  it('a JSON body that stalls halfway is answered with a coded 408 at the deadline, and its connection is closed', async () => {
    const t = await trickle(`POST /api/v2/ai/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"message":"${'y'.repeat(100)}`);
    const ms = await t.closed;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(4000);
    const [head, body] = t.answer().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 408 /);
    expect(head).toMatch(/\r\nconnection: close/i);
    expect(JSON.parse(body!)).toEqual({ error: 'The request body did not arrive within 1000 ms', code: 'BAD_REQUEST' });
  });

  it('headers that never end are cut at the deadline (a quarter of it late at most) by Node', async () => {
    const t = await trickle('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    // One more byte a while later: trickling does not extend the deadline.
    await new Promise((r) => setTimeout(r, 500));
    if (!t.socket.destroyed) t.socket.write('a');
    const ms = await t.closed;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(4000);
    expect(t.answer()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('what Node cannot read as HTTP gets Node’s status with a coded JSON body, then the connection closes: headers over the limit, bytes that are not HTTP, headers past the deadline', async () => {
    const cases = [
      { head: `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`, status: 431, error: 'The request headers are too large' },
      { head: 'NOT HTTP AT ALL\r\n\r\n', status: 400, error: 'The request could not be read as HTTP' },
      { head: 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', status: 408, error: 'The request did not arrive in time (REQUEST_TIMEOUT_MS)' },
    ];
    for (const { head: request, status, error } of cases) {
      const t = await trickle(request);
      await t.closed;
      const [head, body] = t.answer().split('\r\n\r\n');
      expect(head, request.slice(0, 20)).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(head).toMatch(/\r\nconnection: close/i);
      expect(head).toMatch(/\r\ncontent-type: application\/json/i);
      expect(JSON.parse(body!)).toEqual({ error, code: 'BAD_REQUEST' });
    }
    // The server goes on serving.
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('a reply that streams for longer than the deadline is not cut, and the server goes on serving', async () => {
    const started = performance.now();
    const res = await postChat(gw.url, { message: 'Tell me about the weather in some detail, please.' });
    const events = await readSse(res);
    expect(performance.now() - started).toBeGreaterThan(1500);
    expect(events.at(-1)).toMatchObject({ done: true, finishReason: 'stop' });
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect(gw.records.filter((r) => r.level === 'error')).toEqual([]);
  });
});

describe('a client that pipelines requests without reading answers is bounded', () => {
  let gw: Awaited<ReturnType<typeof gatewayWithLogger>>;
  let port: number;
  beforeAll(async () => {
    gw = await gatewayWithLogger({});
    port = Number(new URL(gw.url).port);
  });
  afterAll(() => gw.close());

  /** Writes `count` requests back to back in one write; resolves with the answers' status lines once the server closes the connection or `ms` passed. */
  async function pipeline(count: number, ms: number) {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => {});
    const closed = new Promise<boolean>((r) => {
      socket.once('close', () => r(true));
      setTimeout(() => r(false), ms);
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(count));
    const wasClosed = await closed;
    socket.destroy();
    return { wasClosed, statuses: answer.match(/HTTP\/1\.1 \d{3}/g) ?? [] };
  }

  it('ten pipelined requests are all answered, in order, on a connection that stays open', async () => {
    const { wasClosed, statuses } = await pipeline(10, 1000);
    expect(wasClosed).toBe(false);
    expect(statuses).toEqual(Array(10).fill('HTTP/1.1 200'));
  });

  it('two thousand in one write close the connection: at most 32 are served, and the server goes on answering others', async () => {
    const { wasClosed, statuses } = await pipeline(2000, 5000);
    expect(wasClosed).toBe(true);
    expect(statuses.length).toBeLessThanOrEqual(32);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect(gw.records.filter((r) => r.level === 'error')).toEqual([]);
  });
});

describe('the openai SDK logs through the gateway logger, never the console', () => {
  it('a malformed chunk from the provider becomes a PROVIDER_ERROR and a structured log record', async () => {
    // An OpenAI-compatible server whose stream carries a line that is not JSON.
    const broken = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n');
        res.end('data: {this is not json from upstream sk-leak}\n\n');
      });
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', () => r()));
    const gw = await gatewayWithLogger({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: `http://127.0.0.1:${(broken.address() as net.AddressInfo).port}/v1`, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_MAX_RETRIES: '0' });
    const printed: unknown[] = [];
    const original = { error: console.error, warn: console.warn, log: console.log };
    console.error = (...args: unknown[]) => void printed.push(args);
    console.warn = (...args: unknown[]) => void printed.push(args);
    try {
      const events = await readSse(await postChat(gw.url, { message: 'hi' }));
      expect(events.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR' });
      expect(JSON.stringify(events)).not.toContain('sk-leak');
    } finally {
      Object.assign(console, original);
      await gw.close();
      broken.close();
    }
    expect(printed).toEqual([]);
    expect(gw.records.some((r) => r.obj.sdk === 'openai' && r.level === 'error')).toBe(true);
  });
});
