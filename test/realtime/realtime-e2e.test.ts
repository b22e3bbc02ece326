/**
 * Realtime voice end to end: seed 004's Socket.IO client exactly as its document writes it,
 * and a `ws` client on /v1/realtime, against the OpenAI Realtime GA and Gemini Live stand-ins.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register, type Account } from '../helpers/accounts.js';
import type { Env } from '../../src/config.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startGateway } from '../helpers/gateway.js';
import { join } from 'node:path';
import { SqliteConversationStore } from '../../src/stores/sqlite-conversation-store.js';
import { waitFor } from '../helpers/wait.js';
import { EventLog, TRANSPORTS, client, connected, socketGatewayForSuite, type DefaultClient } from '../socket/socket-harness.js';
import { GEMINI_STANDIN_AUDIO, startGeminiLiveStandin, type GeminiLiveStandin } from '../standins/gemini-live-standin.js';
import { STANDIN_AUDIO, startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';
import { SEED_004_SESSION_CREATE } from './seed-004.js';

const OPENAI_KEY = 'sk-realtime-provider-SECRET-1234567890';
const GEMINI_KEY = 'AIza-gemini-provider-SECRET-0987654321';

/** 100 ms of PCM16 mono 24 kHz with a recognisable pattern. */
const mic = (n: number) => Buffer.from(Array.from({ length: 4800 }, (_, i) => (i * 7 + n * 13) % 256));

interface Received {
  json: Record<string, unknown>[];
  audio: Buffer[];
  errors: { message: string; code: string }[];
}

/** The seed 004 client: `io(url, {path, transports})`, no token, its handlers. */
function seed004Client(url: string, transports: ('websocket' | 'polling')[], extraHeaders?: Record<string, string>) {
  const socket = client<DefaultClient>(url, { path: '/socket.io/', transports, ...(extraHeaders && { extraHeaders }) });
  const received: Received = { json: [], audio: [], errors: [] };
  socket.on('realtime-response', (data) => {
    if (Buffer.isBuffer(data)) received.audio.push(data);
    else if (typeof data === 'object') received.json.push(data as Record<string, unknown>);
  });
  socket.on('realtime-error', (error) => void received.errors.push(error));
  return { socket, received };
}

/**
 * An OpenAI Realtime GA stand-in for the tests of one describe block and a gateway relaying to
 * it, with `env` besides; the gateway stops before the stand-in.
 */
function openaiRealtimeForSuite(env: Env = {}) {
  let standin: RealtimeStandin | undefined;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: OPENAI_KEY });
  });
  afterAll(() => standin?.close());
  const gw = socketGatewayForSuite(() => ({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: OPENAI_KEY, REALTIME_URL: standin!.url, ...env }));
  return { gw, standin: () => standin! };
}

const noKeyIn = (received: Received, ...keys: string[]) => {
  const text = JSON.stringify([received.json, received.errors]) + received.audio.map((b) => b.toString('latin1')).join('');
  for (const key of keys) expect(text).not.toContain(key);
};

describe('realtime over the OpenAI Realtime GA stand-in', () => {
  const { gw, standin } = openaiRealtimeForSuite({
    JWT_SECRET: TEST_JWT_SECRET,
    REALTIME_MAX_SESSIONS_PER_CLIENT: '2',
    REALTIME_MAX_AUDIO_CHUNK_BYTES: '16384',
    LOCAL_MODEL_TOKEN_DELAY_MS: '5',
    RATE_LIMIT_ANON: '1000',
  });
  let alice: Account;
  beforeAll(async () => {
    alice = await register(gw().url, 'alice-realtime@example.com');
  });

  for (const transport of TRANSPORTS) {
    it(`seed 004's client over ${transport}: GA session.update upstream, audio byte for byte both ways, usage stored, disconnect closes upstream`, async () => {
      const connectionsBefore = standin().connections.length;
      const framesBefore = standin().frames.length;
      const audioBefore = standin().audio.length;
      const { socket, received } = seed004Client(gw().url, transport === 'websocket' ? ['websocket', 'polling'] : ['polling']);
      await connected(socket);
      socket.emit('realtime-message', SEED_004_SESSION_CREATE);
      const update = await standin().waitForFrame((e) => e.type === 'session.update', 5000, framesBefore);
      expect(update).toMatchObject({
        type: 'session.update',
        session: {
          type: 'realtime',
          instructions: 'You are a helpful assistant.',
          output_modalities: ['audio'],
          audio: {
            input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: { model: 'whisper-1' }, turn_detection: { type: 'server_vad' } },
            output: { voice: 'alloy' },
          },
        },
      });
      expect(JSON.stringify(update)).not.toMatch(/"modalities"|input_audio_format|"voice":"alloy","input/);
      const handshake = standin().handshakes.at(-1)!;
      expect(handshake.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
      expect(handshake.headers['openai-beta']).toBeUndefined();
      expect(handshake.query.model).toBe('gpt-realtime');

      const chunks = [mic(1), mic(2), mic(3)];
      for (const chunk of chunks) socket.emit('realtime-audio', chunk);
      socket.emit('realtime-message', { type: 'input_audio_buffer.commit' });
      socket.emit('realtime-message', { type: 'response.create' });
      await waitFor(() => received.json.some((e) => e.type === 'response.done'), 5000);
      expect(standin().audio.slice(audioBefore)).toEqual(chunks);
      expect(received.audio).toEqual([...STANDIN_AUDIO]);
      const types = received.json.map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['session.created', 'session.updated', 'response.created', 'response.output_audio_transcript.delta', 'response.done']));
      // Audio deltas come only as binary.
      expect(types).not.toContain('response.output_audio.delta');
      expect(received.errors).toEqual([]);
      noKeyIn(received, OPENAI_KEY);

      expect(standin().connections.length).toBe(connectionsBefore + 1);
      const upstream = standin().connections.at(-1)!;
      const closedAt = Date.now();
      socket.close();
      const closed = await standin().waitForClose(upstream.id, 1000);
      expect(closed.closedAt! - closedAt).toBeLessThan(1000);
      const owner = 'ip:127.0.0.1';
      const stored = await waitFor(async () => (await gw().server.services.store.listRealtimeSessions(owner, { limit: 50 })).items.find((r) => r.usage.responses === 1), 2000);
      expect(stored).toMatchObject({ provider: 'openai', usage: { inputTokens: 120, outputTokens: 60, inputAudioTokens: 100, outputAudioTokens: 45 } });
    });
  }

  it('a ws client on /v1/realtime completes the same exchange, frame for frame, while Socket.IO chat streams on the same port', async () => {
    const chat = client<DefaultClient>(gw().url, { transports: ['websocket'] });
    const chatLog = new EventLog<DefaultServerToClientEvents>(chat);
    chat.emit('ai:chat', { message: 'keep streaming while voice runs' });

    const framesBefore = standin().frames.length;
    const sentBefore = standin().sent.length;
    const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/v1/realtime`, ['realtime', `openai-insecure-api-key.${alice.token}`]);
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('realtime');
    await waitFor(() => frames.some((f) => f.type === 'session.created'), 3000);
    ws.send(JSON.stringify({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.' } }));
    ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: mic(9).toString('base64') }));
    ws.send(JSON.stringify({ type: 'input_audio_buffer.commit' }));
    ws.send(JSON.stringify({ type: 'response.create' }));
    await waitFor(() => frames.some((f) => f.type === 'response.done'), 5000);
    // Verbatim: every event the stand-in sent on this connection arrived, in order, unchanged.
    expect(frames).toEqual(standin().sent.slice(sentBefore));
    expect(standin().frames.slice(framesBefore).map((f) => (f.event as { type: string }).type)).toEqual([
      'session.update',
      'input_audio_buffer.append',
      'input_audio_buffer.commit',
      'response.create',
    ]);
    expect(standin().audio.at(-1)).toEqual(mic(9));
    expect(JSON.stringify(frames)).not.toContain(OPENAI_KEY);
    // The chat streamed alongside.
    expect((await chatLog.next('ai:complete', 10_000)).response).toContain('keep streaming');
    // Owner from the subprotocol token: the usage is alice's.
    ws.close();
    await waitFor(async () => (await gw().server.services.store.listRealtimeSessions(alice.user.id, { limit: 5 })).items.length > 0, 2000);
    // And alice reads it back: her sessions only, with usage; anonymous callers are refused.
    const res = await fetch(`${gw().url}/api/v2/realtime/sessions?limit=5`, { headers: { Authorization: `Bearer ${alice.token}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { sessions: { provider: string; durationMs: number; endReason: string; usage: Record<string, number> }[] };
    const stored = await gw().server.services.store.listRealtimeSessions(alice.user.id, { limit: 5 });
    expect(body.sessions.map((x) => x.usage)).toEqual(stored.items.map((x) => x.usage));
    expect(body.sessions[0]).toMatchObject({ provider: 'openai', endReason: expect.any(String) });
    expect(body.sessions[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect((await fetch(`${gw().url}/api/v2/realtime/sessions`)).status).toBe(401);
  });

  it('upstream error events and upstream loss reach the client as realtime-error; the socket lives on', async () => {
    const { socket, received } = seed004Client(gw().url, ['websocket']);
    await connected(socket);
    socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => received.json.some((e) => e.type === 'session.updated'), 3000);
    standin().sendError(`bad thing with ${OPENAI_KEY}`, 'invalid_value');
    await waitFor(() => received.errors.length > 0, 3000);
    expect(received.errors[0]).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect(received.json.some((e) => e.type === 'error')).toBe(true);
    standin().closeConnections(1011, 'upstream going away');
    await waitFor(() => received.errors.length > 1, 3000);
    expect(received.errors.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect(socket.connected).toBe(true);
    noKeyIn(received, OPENAI_KEY);
    // The next event opens a new upstream (after the refusal cool-down).
    await new Promise((r) => setTimeout(r, 1_100));
    const before = standin().connections.length;
    socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => standin().connections.length > before, 3000);
    socket.close();
  });

  it('an oversized audio chunk is refused with BAD_REQUEST while the session lives; a session over the per-client limit with RATE_LIMIT', async () => {
    const first = seed004Client(gw().url, ['websocket']);
    const second = seed004Client(gw().url, ['websocket']);
    const third = seed004Client(gw().url, ['websocket']);
    await Promise.all([connected(first.socket), connected(second.socket), connected(third.socket)]);
    first.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => first.received.json.some((e) => e.type === 'session.updated'), 3000);
    first.socket.emit('realtime-audio', Buffer.alloc(16_385));
    await waitFor(() => first.received.errors.length > 0, 3000);
    expect(first.received.errors[0]).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/16385 bytes/) });
    const audioBefore = standin().audio.length;
    first.socket.emit('realtime-audio', mic(4));
    await waitFor(() => standin().audio.length > audioBefore, 3000);
    expect(standin().audio.at(-1)).toEqual(mic(4));

    second.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => second.received.json.some((e) => e.type === 'session.updated'), 3000);
    // Same client address, third session: over REALTIME_MAX_SESSIONS_PER_CLIENT=2.
    third.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => third.received.errors.length > 0, 3000);
    expect(third.received.errors[0]).toMatchObject({ code: 'RATE_LIMIT' });
    expect(third.socket.connected).toBe(true);
    // Closing one frees its slot.
    first.socket.close();
    await new Promise((r) => setTimeout(r, 1_200));
    third.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => third.received.json.some((e) => e.type === 'session.updated'), 3000);
    second.socket.close();
    third.socket.close();
  });
});

describe('realtime sessions per client behind a trusted proxy', () => {
  const { gw } = openaiRealtimeForSuite({ TRUST_PROXY: 'true', REALTIME_MAX_SESSIONS_PER_CLIENT: '1', RATE_LIMIT_ANON: '1000' });

  it('an anonymous IPv6 client is its /56: a second session from another address of it is refused, another network gets one', async () => {
    const open = async (ip: string) => {
      const c = seed004Client(gw().url, ['websocket'], { 'x-forwarded-for': ip });
      await connected(c.socket);
      c.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
      await waitFor(() => c.received.errors.length > 0 || c.received.json.some((e) => e.type === 'session.updated'), 3000);
      return c;
    };
    const first = await open('2001:db8:9:1::1');
    expect(first.received.errors).toEqual([]);
    const sameNetwork = await open('2001:db8:9:2::2');
    expect(sameNetwork.received.errors[0]).toMatchObject({ code: 'RATE_LIMIT' });
    const otherNetwork = await open('2001:db8:9:100::1');
    expect(otherNetwork.received.errors).toEqual([]);
    for (const c of [first, sameNetwork, otherNetwork]) c.socket.close();
  });
});

describe('a /v1/realtime client that floods messages', () => {
  // 50 a second sustained, 100 at once.
  const { gw } = openaiRealtimeForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '50' });

  it('is told RATE_LIMIT and closed with 1013; a session that stays within the budget is not', async () => {
    const { token } = await register(gw().url, 'realtime-flood@example.com');
    const open = async () => {
      const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
      const frames: Record<string, unknown>[] = [];
      ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      await waitFor(() => frames.some((f) => f.type === 'session.created'), 3000);
      return { ws, frames, closed };
    };
    const append = JSON.stringify({ type: 'input_audio_buffer.append', audio: mic(1).subarray(0, 480).toString('base64') });
    const flood = await open();
    for (let i = 0; i < 2000; i++) flood.ws.send(append);
    expect(await flood.closed).toBe(1013);
    expect(flood.frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'RATE_LIMIT' } });

    const calm = await open();
    for (let i = 0; i < 60; i++) calm.ws.send(append);
    await new Promise((r) => setTimeout(r, 300));
    expect(calm.ws.readyState).toBe(WebSocket.OPEN);
    expect(calm.frames.filter((f) => f.type === 'error')).toEqual([]);
    calm.ws.close();
    await calm.closed;
  });
});

describe('/v1/realtime sessions the server ends, and what their records say', () => {
  // Audio chunks of 2 MiB: larger than the 1 MiB a JSON event may otherwise be.
  const { gw, standin } = openaiRealtimeForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '50', REALTIME_MAX_AUDIO_CHUNK_BYTES: String(2 * 1024 * 1024), SOCKET_MAX_BUFFER_BYTES: String(3 * 1024 * 1024) });

  const open = async (token: string) => {
    const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return { ws, frames, closed };
  };
  const records = async (token: string) => {
    const res = await fetch(`${gw().url}/api/v2/realtime/sessions`, { headers: { Authorization: `Bearer ${token}` } });
    return ((await res.json()) as { sessions: { endReason: string }[] }).sessions.map((r) => r.endReason);
  };

  it('a flooding session is recorded as ended by the server (RATE_LIMIT), a client close as the client', async () => {
    const { token } = await register(gw().url, 'realtime-records@example.com');
    const calm = await open(token);
    await waitFor(() => calm.frames.some((f) => f.type === 'session.created'), 3000);
    calm.ws.close();
    await calm.closed;
    await waitFor(async () => (await records(token)).length === 1, 3000);

    const flood = await open(token);
    await waitFor(() => flood.frames.some((f) => f.type === 'session.created'), 3000);
    const append = JSON.stringify({ type: 'input_audio_buffer.append', audio: mic(1).subarray(0, 480).toString('base64') });
    for (let i = 0; i < 2000; i++) flood.ws.send(append);
    expect((await flood.closed).code).toBe(1013);
    await waitFor(async () => (await records(token)).length === 2, 3000);
    expect(await records(token)).toEqual(['server: RATE_LIMIT', 'client']);
  });

  it('an API key that may not use the realtime model is refused with INVALID_MODEL and closed with 1008 (a policy), not 1011', async () => {
    const { token } = await register(gw().url, 'realtime-key-models@example.com');
    const res = await fetch(`${gw().url}/api/v2/keys`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'chat only', models: ['local'] }),
    });
    expect(res.status).toBe(201);
    const { key } = (await res.json()) as { key: string };
    const session = await open(key);
    const closed = await session.closed;
    expect(session.frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'INVALID_MODEL' } });
    expect(closed).toEqual({ code: 1008, reason: 'INVALID_MODEL' });
  });

  it('an input_audio_buffer.append as large as REALTIME_MAX_AUDIO_CHUNK_BYTES is relayed; one byte more is refused and the session lives', async () => {
    const { token } = await register(gw().url, 'realtime-big-chunk@example.com');
    const session = await open(token);
    await waitFor(() => session.frames.some((f) => f.type === 'session.created'), 3000);
    const before = standin().audio.length;
    const largest = Buffer.alloc(2 * 1024 * 1024, 7);
    session.ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: largest.toString('base64') }));
    await waitFor(() => standin().audio.length > before, 5000);
    expect(standin().audio.at(-1)!.equals(largest)).toBe(true);
    expect(session.frames.filter((f) => f.type === 'error')).toEqual([]);
    session.ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: Buffer.alloc(2 * 1024 * 1024 + 3, 7).toString('base64'), event_id: 'too-big' }));
    await waitFor(() => session.frames.some((f) => f.type === 'error'), 3000);
    expect(session.frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'BAD_REQUEST', event_id: 'too-big' } });
    expect(session.ws.readyState).toBe(WebSocket.OPEN);
    session.ws.close();
    await session.closed;
  });
});

describe('realtime over the Gemini Live stand-in', () => {
  let live: GeminiLiveStandin;
  beforeAll(async () => {
    live = await startGeminiLiveStandin({ apiKey: GEMINI_KEY });
  });
  afterAll(() => live.close());
  const gw = socketGatewayForSuite(() => ({ REALTIME_PROVIDER: 'gemini', GEMINI_API_KEY: GEMINI_KEY, GEMINI_BASE_URL: live.url, DEFAULT_MODEL: 'local', RATE_LIMIT_ANON: '1000' }));

  for (const transport of TRANSPORTS) {
    it(`seed 004's client over ${transport}: audio in at 24 kHz, Gemini's audio out as binary, GA event names`, async () => {
      const audioBefore = live.audio.length;
      const { socket, received } = seed004Client(gw().url, transport === 'websocket' ? ['websocket', 'polling'] : ['polling']);
      await connected(socket);
      socket.emit('realtime-message', SEED_004_SESSION_CREATE);
      await waitFor(() => received.json.some((e) => e.type === 'session.created'), 5000);
      const chunks = [mic(5), mic(6)];
      for (const chunk of chunks) socket.emit('realtime-audio', chunk);
      socket.emit('realtime-message', { type: 'input_audio_buffer.commit' });
      socket.emit('realtime-message', { type: 'response.create' });
      await waitFor(() => received.json.some((e) => e.type === 'response.done'), 5000);
      const sent = live.audio.slice(audioBefore);
      expect(sent.map((a) => a.bytes)).toEqual(chunks);
      expect(new Set(sent.map((a) => a.mimeType))).toEqual(new Set(['audio/pcm;rate=24000']));
      expect(received.audio).toEqual([...GEMINI_STANDIN_AUDIO]);
      expect(received.json.map((e) => e.type)).toEqual(expect.arrayContaining(['session.created', 'response.created', 'response.output_audio_transcript.delta', 'response.done']));
      expect(received.errors).toEqual([]);
      noKeyIn(received, GEMINI_KEY);
      socket.close();
      await waitFor(() => live.connections.at(-1)?.closedAt !== undefined, 1000);
    });
  }
});

describe('realtime sessions open when the server shuts down', () => {
  it('each client is told why (INTERNAL), /v1/realtime closes with 1001, and each record says the server ended it', async () => {
    const standin = await startRealtimeStandin({ apiKey: OPENAI_KEY });
    const gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: OPENAI_KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_ANON: '1000' });
    try {
      const alice = await register(gw.url, 'alice-realtime-shutdown@example.com');
      const seed004 = seed004Client(gw.url, ['websocket'], { authorization: `Bearer ${alice.token}` });
      await connected(seed004.socket);
      seed004.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/realtime`, { headers: { Authorization: `Bearer ${alice.token}` } });
      const frames: Record<string, unknown>[] = [];
      ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
      const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
      await waitFor(() => seed004.received.json.some((e) => e.type === 'session.updated') && frames.some((f) => f.type === 'session.created'), 3000);

      await gw.server.close();
      await waitFor(() => seed004.received.errors.length > 0, 3000);
      expect(seed004.received.errors[0]).toEqual({ code: 'INTERNAL', message: 'The server is shutting down; reconnect in a moment' });
      expect(await closed).toEqual({ code: 1001, reason: 'INTERNAL' });
      expect(frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'INTERNAL' } });
      // Stored as the server closed: read back from its file.
      const stored = new SqliteConversationStore(join(gw.dataDir, 'gateway.sqlite'));
      const records = await stored.listRealtimeSessions(alice.user.id, { limit: 10 });
      await stored.close();
      expect(records.items.map((r) => r.endReason)).toEqual(['server: INTERNAL', 'server: INTERNAL']);
      seed004.socket.close();
    } finally {
      await gw.destroy();
      await standin.close();
    }
  });
});

describe('/v1/realtime without a token', () => {
  const { gw, standin } = openaiRealtimeForSuite({});

  it('is refused with 401 before any upstream connection, whatever AUTH_REQUIRED says; seed 004 on Socket.IO stays open to anonymous clients', async () => {
    const connections = standin().connections.length;
    const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/v1/realtime`);
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
    // The same route asked over plain HTTP says why, in OpenAI's error shape (an upgrade's refusal carries no body).
    const plain = await fetch(`${gw().url}/v1/realtime`);
    expect(plain.status).toBe(401);
    expect(await plain.json()).toEqual({ error: { message: 'Sign in to use this route', type: 'authentication_error', code: 'UNAUTHORIZED', param: null } });
    expect(standin().connections.length).toBe(connections);
    // Seed 004's Socket.IO client (no token) keeps its anonymous sessions.
    const { socket, received } = seed004Client(gw().url, ['websocket']);
    await connected(socket);
    socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => received.json.some((e) => e.type === 'session.updated'), 3000);
    socket.close();
  });
});

describe('realtime with no provider, and the rules shared with chat', () => {
  const gw = socketGatewayForSuite({ RATE_LIMIT_ANON: '2' });

  it('every realtime event answers REALTIME_UNAVAILABLE, on Socket.IO and /v1/realtime', async () => {
    const { socket, received } = seed004Client(gw().url, ['websocket']);
    await connected(socket);
    socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => received.errors.length > 0, 3000);
    expect(received.errors[0]).toEqual({ message: expect.any(String), code: 'REALTIME_UNAVAILABLE' });
    const { token } = await register(gw().url, 'realtime-unavailable@example.com');
    const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
    const frames: unknown[] = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    const code = await new Promise<number>((r) => ws.once('close', (c) => r(c)));
    expect(code).toBe(1013);
    expect(frames).toEqual([expect.objectContaining({ type: 'error', error: expect.objectContaining({ code: 'REALTIME_UNAVAILABLE' }) })]);
  });
});

describe('opening a realtime session counts against the chat rate limit', () => {
  const { gw, standin } = openaiRealtimeForSuite({ RATE_LIMIT_ANON: '2' });

  it('two turns use the anonymous quota; the session after them is refused with RATE_LIMIT and opens no upstream', async () => {
    const chat = await fetch(`${gw().url}/api/v2/ai/chat/stream`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"message":"hi"}' });
    await chat.text();
    const { socket, received } = seed004Client(gw().url, ['websocket']);
    await connected(socket);
    socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => received.json.some((e) => e.type === 'session.updated'), 3000);
    socket.close();
    const before = standin().connections.length;
    const again = seed004Client(gw().url, ['websocket']);
    await connected(again.socket);
    again.socket.emit('realtime-message', SEED_004_SESSION_CREATE);
    await waitFor(() => again.received.errors.length > 0, 3000);
    expect(again.received.errors[0]).toMatchObject({ code: 'RATE_LIMIT' });
    expect(standin().connections.length).toBe(before);
  });
});
