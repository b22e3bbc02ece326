/**
 * RealtimeSession over each provider adapter, against the local stand-ins (real WebSockets on
 * loopback, the real `ws` client and the real `@google/genai` live client). Everything the
 * session hands the client adapter is recorded and scanned for the provider key after every test.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GeminiRealtimeProvider } from '../../src/realtime/gemini-realtime-provider.js';
import { OpenAIRealtimeProvider } from '../../src/realtime/openai-realtime-provider.js';
import { resamplePcm16 } from '../../src/realtime/pcm16.js';
import { realtimeErrorEvent } from '../../src/realtime/realtime-error-event.js';
import type { RealtimeProvider } from '../../src/realtime/realtime-provider.js';
import type { RealtimeSessionError } from '../../src/realtime/realtime-session.js';
import type { RealtimeUsage } from '../../src/realtime/realtime-usage.js';
import { Harness } from './realtime-harness.js';
import {
  GEMINI_STANDIN_AUDIO,
  GEMINI_STANDIN_TRANSCRIPT,
  defaultGeminiLiveScript,
  startGeminiLiveStandin,
  type GeminiLiveStandin,
} from '../standins/gemini-live-standin.js';
import {
  STANDIN_AUDIO,
  STANDIN_TRANSCRIPT,
  defaultRealtimeScript,
  startRealtimeStandin,
  type RealtimeStandin,
} from '../standins/realtime-standin.js';
import { knownAudio, until } from '../standins/ws-standin-server.js';
import { SEED_004_SESSION_CREATE } from './seed-004.js';

const OPENAI_KEY = 'sk-proj-sessionTestKey0123456789abcdefXYZ';
const GEMINI_KEY = 'AIzaSessionTestKey0123456789abcdefghijkl';
const GEMINI_MODEL = 'gemini-2.5-flash-native-audio-preview-09-2025';
const KEYS = [OPENAI_KEY, GEMINI_KEY];

type Json = Record<string, unknown>;

const harnesses: Harness[] = [];
function harness(provider: RealtimeProvider | null, opts?: ConstructorParameters<typeof Harness>[1]): Harness {
  const h = new Harness(provider, opts);
  harnesses.push(h);
  return h;
}

afterEach(() => {
  for (const h of harnesses.splice(0)) {
    h.session.close();
    const text = h.everything();
    for (const key of KEYS) expect(text.includes(key), 'provider key leaked to the client or the log').toBe(false);
    expect(h.closes.length).toBeLessThanOrEqual(1);
  }
});

// --- what differs between the providers ---------------------------------------------------

interface Fixture {
  name: 'openai' | 'gemini';
  provider(overrides?: Json): RealtimeProvider;
  /** Upstream connections opened so far. */
  connections(): number;
  /** Connection attempts so far (OpenAI: handshakes, even unanswered ones). */
  attempts(): number;
  waitForUpstreamClose(connection: number, timeoutMs?: number): Promise<{ closedAt: number | undefined }>;
  /** Decoded audio the provider received, in order, with its MIME type where the protocol has one. */
  upstreamAudio(): Array<{ bytes: Buffer; mimeType?: string }>;
  /** Holds new connections before they are usable; `false` releases them. */
  holdConnect(on: boolean): void;
  /** Makes the provider report an error in-band (OpenAI `error` event; Gemini `goAway`). */
  upstreamError(): void;
  upstreamErrorText: RegExp;
  /** The provider drops the connection. */
  loseUpstream(): void;
  expectedAudio: readonly Buffer[];
  expectedTranscript: readonly string[];
  expectedUsage: Partial<RealtimeUsage>;
  reset(): void;
}

let openaiStandin: RealtimeStandin;
let geminiStandin: GeminiLiveStandin;

beforeAll(async () => {
  openaiStandin = await startRealtimeStandin({ apiKey: OPENAI_KEY });
  geminiStandin = await startGeminiLiveStandin({ apiKey: GEMINI_KEY });
});
afterAll(async () => {
  await openaiStandin.close();
  await geminiStandin.close();
});

const openai: Fixture = {
  name: 'openai',
  provider: (overrides = {}) => new OpenAIRealtimeProvider({ apiKey: OPENAI_KEY, url: openaiStandin.url, handshakeTimeoutMs: 5000, ...overrides }),
  connections: () => openaiStandin.connections.length,
  attempts: () => openaiStandin.handshakes.length,
  waitForUpstreamClose: (i, t) => openaiStandin.waitForClose(i, t),
  upstreamAudio: () => openaiStandin.audio.map((bytes) => ({ bytes })),
  holdConnect: (on) => openaiStandin.hang(on),
  upstreamError: () => openaiStandin.sendError('Upstream is unhappy', 'server_error'),
  upstreamErrorText: /Upstream is unhappy/,
  loseUpstream: () => openaiStandin.closeConnections(1011, 'upstream going away'),
  expectedAudio: STANDIN_AUDIO,
  expectedTranscript: STANDIN_TRANSCRIPT,
  expectedUsage: { responses: 1, inputTokens: 120, outputTokens: 60, totalTokens: 180, inputTextTokens: 20, inputAudioTokens: 100, outputTextTokens: 15, outputAudioTokens: 45 },
  reset: () => {
    openaiStandin.hang(false);
    openaiStandin.setScript(defaultRealtimeScript());
  },
};

const gemini: Fixture = {
  name: 'gemini',
  provider: (overrides = {}) => new GeminiRealtimeProvider({ apiKey: GEMINI_KEY, baseUrl: geminiStandin.url, model: GEMINI_MODEL, defaultVoice: 'Puck', ...overrides }),
  connections: () => geminiStandin.connections.length,
  attempts: () => geminiStandin.connections.length,
  waitForUpstreamClose: (i, t) => geminiStandin.waitForClose(i, t),
  upstreamAudio: () => geminiStandin.audio.map(({ bytes, mimeType }) => ({ bytes, mimeType })),
  holdConnect: (on) => geminiStandin.holdSetup(on),
  upstreamError: () => geminiStandin.goAway('30s'),
  upstreamErrorText: /end this session in 30s/,
  loseUpstream: () => geminiStandin.closeConnections(1011, 'upstream going away'),
  expectedAudio: GEMINI_STANDIN_AUDIO,
  expectedTranscript: GEMINI_STANDIN_TRANSCRIPT,
  expectedUsage: { responses: 1, inputTokens: 90, outputTokens: 70, totalTokens: 160, inputTextTokens: 30, inputAudioTokens: 60, outputTextTokens: 10, outputAudioTokens: 60 },
  reset: () => {
    geminiStandin.holdSetup(false);
    geminiStandin.setScript(defaultGeminiLiveScript());
  },
};

describe.each([openai, gemini])('RealtimeSession over $name', (fx) => {
  afterEach(() => fx.reset());

  /**
   * Closes a session whose upstream connection is held (`holdConnect`) once that connection was
   * attempted, lets the held connections go on, and waits until every upstream connection made
   * since `conn` is closed. OpenAI: the half-open socket was destroyed (the stand-in may still
   * complete the upgrade before it notices). Gemini: the socket was open awaiting setupComplete;
   * it is closed as soon as the SDK hands it over. Either way nothing stays open.
   */
  async function closeWhileConnecting(h: Harness, conn: number, attempts: number): Promise<void> {
    await until(() => fx.attempts() > attempts, 'connection attempt');
    h.session.close();
    fx.holdConnect(false);
    await new Promise((r) => setTimeout(r, 100));
    for (let i = conn; i < fx.connections(); i++) await fx.waitForUpstreamClose(i, 2500);
  }

  /** Opens the session with seed 004's session.create and waits for the acknowledgement. */
  async function started(opts?: ConstructorParameters<typeof Harness>[1]): Promise<{ h: Harness; conn: number }> {
    const h = harness(fx.provider(), opts);
    const conn = fx.connections();
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await h.next('session.updated');
    return { h, conn };
  }

  it('opens the upstream lazily, on the first client event', async () => {
    const before = fx.connections();
    const h = harness(fx.provider());
    await new Promise((r) => setTimeout(r, 50));
    expect(fx.connections()).toBe(before);
    expect(h.session.state).toBe('idle');
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await h.next('session.created');
    expect(fx.connections()).toBe(before + 1);
    expect(h.session.state).toBe('open');
  });

  it('sends binary audio upstream byte for byte and returns the model audio as Buffers', async () => {
    const { h } = await started();
    const before = fx.upstreamAudio().length;
    const chunks = knownAudio(3, 4800, 11);
    for (const c of chunks) h.session.handleClientAudio(c);
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit' });
    h.session.handleClientEvent({ type: 'response.create' });
    const done = await h.next('response.done');

    const received = fx.upstreamAudio().slice(before);
    expect(received.map((a) => a.bytes)).toEqual(chunks);
    if (fx.name === 'gemini') expect(received.every((a) => a.mimeType === 'audio/pcm;rate=24000')).toBe(true);

    expect(h.audio).toEqual(fx.expectedAudio);
    expect(h.of('response.output_audio.delta')).toEqual([]);
    expect(h.of('response.output_audio_transcript.delta').map((e) => e.delta)).toEqual(fx.expectedTranscript);
    expect(h.of('input_audio_buffer.committed')).toHaveLength(1);
    const types = h.events.map((e) => e.type);
    expect(types.indexOf('response.created')).toBeLessThan(types.indexOf('response.output_audio_transcript.delta'));
    expect(done.response).toMatchObject({ status: 'completed' });
    expect(h.session.usage).toMatchObject(fx.expectedUsage);
    expect(h.usages).toHaveLength(1);
    expect(h.usages[0]?.total).toEqual(h.session.usage);
    expect(h.errors).toEqual([]);
  });

  it('accepts JSON input_audio_buffer.append as well', async () => {
    const { h } = await started();
    const before = fx.upstreamAudio().length;
    const chunk = knownAudio(1, 960, 2)[0] as Buffer;
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: chunk.toString('base64') });
    await until(() => fx.upstreamAudio().length > before, 'audio upstream');
    expect(fx.upstreamAudio()[before]?.bytes).toEqual(chunk);
  });

  it('refuses event types outside the GA allow-list without forwarding them', async () => {
    const { h } = await started();
    for (const type of ['transcription_session.update', 'session.delete', 'response.output_audio.delta']) {
      h.session.handleClientEvent({ type, event_id: `evt_${type}` });
    }
    h.session.handleClientEvent('{"no":"type"}');
    h.session.handleClientEvent('not json at all');
    h.session.handleClientEvent(42);
    await until(() => h.errors.length >= 6, 'six refusals');
    expect(h.errors.every((e) => e.code === 'BAD_REQUEST' && !e.fromUpstreamEvent)).toBe(true);
    expect(h.errors[0]).toMatchObject({ message: 'Unsupported realtime event type "transcription_session.update"', eventId: 'evt_transcription_session.update' });
    expect(h.session.state).toBe('open');
    // Nothing of it went upstream: the next real event still works and no provider error came back.
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    expect(h.errors).toHaveLength(6);
  });

  it('refuses an oversized audio chunk and lives on', async () => {
    const { h } = await started({ limits: { maxAudioChunkBytes: 4096 } });
    const before = fx.upstreamAudio().length;
    h.session.handleClientAudio(Buffer.alloc(4097, 1));
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: Buffer.alloc(5000, 2).toString('base64'), event_id: 'evt_big' });
    const small = Buffer.alloc(4096, 3);
    h.session.handleClientAudio(small);
    await until(() => fx.upstreamAudio().length > before, 'small chunk upstream');
    expect(h.errors).toEqual([
      { code: 'BAD_REQUEST', message: 'Audio chunk of 4097 bytes exceeds the 4096-byte limit', fromUpstreamEvent: false },
      { code: 'BAD_REQUEST', message: 'Audio chunk of 5000 bytes exceeds the 4096-byte limit', fromUpstreamEvent: false, eventId: 'evt_big' },
    ]);
    expect(fx.upstreamAudio().slice(before).map((a) => a.bytes)).toEqual([small]);
    expect(h.session.state).toBe('open');
  });

  it('queues while the upstream connects, refuses past the bound, then forwards the queue in order', async () => {
    fx.holdConnect(true);
    const h = harness(fx.provider(), { limits: { maxQueuedEvents: 3 } });
    const before = fx.upstreamAudio().length;
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const chunks = knownAudio(5, 960, 4);
    for (const c of chunks) h.session.handleClientAudio(c);
    expect(h.session.state).toBe('connecting');
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toMatchObject({ code: 'RATE_LIMIT', fromUpstreamEvent: false });
    expect(h.errors[0]?.message).toMatch(/provider connection is opening/);
    fx.holdConnect(false);
    await until(() => fx.upstreamAudio().length >= before + 3, 'queued audio upstream');
    await new Promise((r) => setTimeout(r, 50));
    expect(fx.upstreamAudio().slice(before).map((a) => a.bytes)).toEqual(chunks.slice(0, 3));
    expect(h.session.state).toBe('open');
  });

  it('bounds the queue by bytes too', async () => {
    fx.holdConnect(true);
    const conn = fx.connections();
    const attempts = fx.attempts();
    const h = harness(fx.provider(), { limits: { maxQueuedBytes: 3000 } });
    h.session.handleClientAudio(Buffer.alloc(960, 1)); // 1280 base64 + overhead
    h.session.handleClientAudio(Buffer.alloc(960, 2));
    expect(h.errors).toEqual([]);
    h.session.handleClientAudio(Buffer.alloc(960, 3));
    expect(h.errors.map((e) => e.code)).toEqual(['RATE_LIMIT']);
    // Its upstream connection is still on its way: closed here, not in the next test (which counts connections).
    await closeWhileConnecting(h, conn, attempts);
  });

  it('closes an idle session with BAD_REQUEST and closes the upstream', async () => {
    const { h, conn } = await started({ limits: { idleTimeoutMs: 600 } });
    // Activity keeps it open well past the idle time...
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 100));
      h.session.handleClientAudio(Buffer.alloc(480, i));
    }
    expect(h.closes).toEqual([]);
    // ...silence ends it.
    const closed = await h.closed(2000);
    expect(closed).toMatchObject({ initiator: 'server', code: 'BAD_REQUEST' });
    expect(h.errors.at(-1)).toMatchObject({ code: 'BAD_REQUEST', message: 'Realtime session closed after 600 ms without client activity' });
    await fx.waitForUpstreamClose(conn, 1500);
    expect(h.session.state).toBe('closed');
  });

  it('closes a session at its maximum length however active it is', async () => {
    const { h, conn } = await started({ limits: { maxSessionMs: 400 } });
    const ticker = setInterval(() => h.session.handleClientAudio(Buffer.alloc(480, 9)), 50);
    try {
      const closed = await h.closed(2000);
      expect(closed).toMatchObject({ initiator: 'server', code: 'BAD_REQUEST', message: 'Realtime session closed: it reached the maximum length of 400 ms' });
    } finally {
      clearInterval(ticker);
    }
    await fx.waitForUpstreamClose(conn, 1500);
    const errorsAtClose = h.errors.length;
    h.session.handleClientAudio(Buffer.alloc(480, 1));
    expect(h.errors).toHaveLength(errorsAtClose);
  });

  it('reports an in-band upstream error through onError and onServerEvent, and lives on', async () => {
    const { h } = await started();
    fx.upstreamError();
    const err = await h.error('PROVIDER_ERROR');
    expect(err.fromUpstreamEvent).toBe(true);
    expect(err.message).toMatch(fx.upstreamErrorText);
    expect(h.of('error')).toHaveLength(1);
    expect(h.session.state).toBe('open');
  });

  it('reports upstream loss and closes the session', async () => {
    const { h } = await started();
    fx.loseUpstream();
    const closed = await h.closed();
    expect(closed).toMatchObject({ initiator: 'upstream', code: 'PROVIDER_ERROR' });
    expect(closed.message).toMatch(/closed the connection \(code 1011: upstream going away\)/);
    expect(h.errors.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR', fromUpstreamEvent: false });
  });

  it('close() closes the upstream within a second and calls onClose once', async () => {
    const { h, conn } = await started();
    const t0 = Date.now();
    h.session.close();
    const upstream = await fx.waitForUpstreamClose(conn, 1500);
    expect((upstream.closedAt as number) - t0).toBeLessThan(1000);
    expect(h.closes).toEqual([{ initiator: 'client', message: 'The client closed the realtime session' }]);
    h.session.close();
    h.session.handleClientEvent({ type: 'response.create' });
    expect(h.closes).toHaveLength(1);
  });

  it('close() while the upstream is still connecting abandons it', async () => {
    fx.holdConnect(true);
    const h = harness(fx.provider());
    const conn = fx.connections();
    const attempts = fx.attempts();
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await closeWhileConnecting(h, conn, attempts);
    if (fx.name === 'gemini') expect(fx.connections()).toBe(conn + 1);
    expect(h.closes).toEqual([{ initiator: 'client', message: 'The client closed the realtime session' }]);
    expect(h.errors).toEqual([]);
  });

  it('pauses upstream reading while the client backlog is over the bound, then resumes', async () => {
    const many = knownAudio(40, 2400, 6);
    if (fx.name === 'openai') openaiStandin.setScript({ ...defaultRealtimeScript(), audioChunks: many, transcript: [] });
    else geminiStandin.setScript({ ...defaultGeminiLiveScript(), audioChunks: many, transcript: [] });
    const { h } = await started({ limits: { maxClientBacklogBytes: 10_000, maxClientStallMs: 5000 } });
    h.backlog = 50_000;
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.created');
    // Unpaused, the stand-in would deliver all 40 chunks well within this time.
    await new Promise((r) => setTimeout(r, 300));
    const whilePaused = h.audio.length;
    expect(whilePaused).toBeLessThan(many.length);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.audio.length).toBe(whilePaused);
    h.backlog = 0;
    await h.next('response.done');
    expect(h.audio).toEqual(many);
    expect(h.errors).toEqual([]);
  });

  it('closes a session whose client stays behind longer than the stall limit', async () => {
    const many = knownAudio(40, 2400, 8);
    if (fx.name === 'openai') openaiStandin.setScript({ ...defaultRealtimeScript(), audioChunks: many, transcript: [] });
    else geminiStandin.setScript({ ...defaultGeminiLiveScript(), audioChunks: many, transcript: [] });
    const { h } = await started({ limits: { maxClientBacklogBytes: 10_000, maxClientStallMs: 300 } });
    h.backlog = 50_000;
    h.session.handleClientEvent({ type: 'response.create' });
    const closed = await h.closed(3000);
    expect(closed).toMatchObject({ initiator: 'server', code: 'RATE_LIMIT' });
  });

  it('drops client events with RATE_LIMIT while the upstream socket holds too much', async () => {
    const { h } = await started({ limits: { maxUpstreamBufferedBytes: 2000 } });
    const before = fx.upstreamAudio().length;
    h.session.handleClientAudio(Buffer.alloc(1600, 1)); // ~2200 bytes as base64 JSON: over the bound
    const small = Buffer.alloc(480, 2);
    h.session.handleClientAudio(small);
    await until(() => fx.upstreamAudio().length > before, 'small chunk');
    expect(h.errors.map((e) => e.code)).toEqual(['RATE_LIMIT']);
    expect(fx.upstreamAudio().slice(before).map((a) => a.bytes)).toEqual([small]);
  });

  it('an upstream that stays full: events are dropped with one RATE_LIMIT, then the session closes after the stall limit', async () => {
    const { h } = await started({ limits: { maxUpstreamBufferedBytes: 2000, maxClientStallMs: 300 } });
    h.session.handleClientAudio(Buffer.alloc(1600, 1)); // over the bound: dropped, told once
    h.session.handleClientAudio(Buffer.alloc(1600, 1));
    expect(h.errors.map((e) => e.code)).toEqual(['RATE_LIMIT']);
    expect(h.closes).toEqual([]);
    await new Promise((r) => setTimeout(r, 400));
    h.session.handleClientAudio(Buffer.alloc(1600, 1)); // still nothing goes through, past the stall limit
    expect(await h.closed()).toMatchObject({ initiator: 'server', code: 'RATE_LIMIT', message: expect.stringMatching(/provider stopped reading/) });
  });

  it('a client that does not read is not sent its refusals (they would pile up); once it reads again, it is told again', async () => {
    const { h } = await started({ limits: { maxClientBacklogBytes: 10_000, maxClientStallMs: 300 } });
    h.backlog = 50_000; // the client stopped reading
    const id = 'e'.repeat(200);
    for (let i = 0; i < 20; i++) h.session.handleClientEvent({ type: 'not.a.client.event', event_id: id });
    expect(h.errors).toEqual([]); // nothing queued towards a client that does not read
    await new Promise((r) => setTimeout(r, 400));
    h.backlog = 0; // it caught up
    h.session.handleClientEvent({ type: 'not.a.client.event', event_id: 'again' });
    expect(h.errors.map((e) => [e.code, e.eventId])).toEqual([['BAD_REQUEST', 'again']]);
    // Behind again, well after the first time: still no answers, and the session is not closed for it.
    h.backlog = 50_000;
    h.session.handleClientEvent({ type: 'not.a.client.event' });
    expect(h.errors).toHaveLength(1);
    expect(h.closes).toEqual([]);
  });

  it('a refusal echoes an event_id up to 256 characters, a longer one not at all', async () => {
    const { h } = await started();
    h.session.handleClientEvent({ type: 'not.a.client.event', event_id: 'e'.repeat(256) });
    h.session.handleClientEvent({ type: 'not.a.client.event', event_id: 'f'.repeat(257) });
    expect(h.errors.map((e) => [e.code, e.eventId])).toEqual([
      ['BAD_REQUEST', 'e'.repeat(256)],
      ['BAD_REQUEST', undefined],
    ]);
  });

  it('the upstream-full refusal echoes the event_id under the same cap', async () => {
    const { h } = await started({ limits: { maxUpstreamBufferedBytes: 10 } });
    h.session.handleClientEvent({ type: 'response.create', event_id: 'x'.repeat(100_000) });
    expect(h.errors.map((e) => [e.code, e.eventId])).toEqual([['RATE_LIMIT', undefined]]);
  });

  it('refused events are no activity: a client that only sends refused events is closed when idle', async () => {
    const { h } = await started({ limits: { idleTimeoutMs: 400 } });
    const sending = setInterval(() => h.session.handleClientEvent({ type: 'not.a.client.event' }), 50);
    try {
      expect(await h.closed(3000)).toMatchObject({ initiator: 'server', code: 'BAD_REQUEST', message: expect.stringMatching(/without client activity/) });
    } finally {
      clearInterval(sending);
    }
  });

  it('end(): the adapter ends the session for the server, its upstream closes, and the client is not told again', async () => {
    const { h, conn } = await started();
    const errorsBefore = h.errors.length;
    h.session.end('RATE_LIMIT', 'flood');
    expect(await h.closed()).toEqual({ initiator: 'server', code: 'RATE_LIMIT', message: 'flood' });
    expect(h.errors.length).toBe(errorsBefore);
    await fx.waitForUpstreamClose(conn, 2500);
  });

  it('delivers audio deltas as JSON events when no onAudio is given (verbatim relay)', async () => {
    const { h } = await started({ binaryAudio: false });
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    const deltas = h.of('response.output_audio.delta');
    expect(deltas.map((d) => Buffer.from(d.delta as string, 'base64'))).toEqual(fx.expectedAudio);
    expect(h.audio).toEqual([]);
  });

  it('refuses the connection with a safe PROVIDER_ERROR when the key is wrong', async () => {
    const h = harness(fx.provider({ apiKey: fx.name === 'openai' ? 'sk-wrong-key-000000000000' : 'AIzaWrongKey000000000000000' }));
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const closed = await h.closed();
    expect(closed).toMatchObject({ initiator: 'upstream', code: 'PROVIDER_ERROR' });
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]?.message).not.toMatch(/sk-|AIza|\*\*\*/);
    expect(h.errors[0]?.message).toMatch(fx.name === 'openai' ? /refused the server credentials \(HTTP 401\)/ : /API key not valid/);
  });
});

describe('RealtimeSession over OpenAI: the GA protocol passes through', () => {
  afterEach(() => openai.reset());

  it("translates seed 004's beta session.create into a GA session.update upstream", async () => {
    const h = harness(openai.provider());
    const from = openaiStandin.frames.length;
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const updated = await h.next('session.updated');
    const frame = await openaiStandin.waitForFrame((e) => e.type === 'session.update', 3000, from);
    expect(frame).toEqual({
      type: 'session.update',
      session: {
        type: 'realtime',
        instructions: 'You are a helpful assistant.',
        output_modalities: ['audio'],
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: { model: 'whisper-1' },
            turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200 },
          },
          output: { voice: 'alloy', format: { type: 'audio/pcm', rate: 24000 } },
        },
      },
    });
    expect(updated.session).toMatchObject({ instructions: 'You are a helpful assistant.', audio: { output: { voice: 'alloy' } } });
    expect(h.of('session.created')).toHaveLength(1);
    expect(h.errors).toEqual([]);
  });

  it('translates a beta session.update, beta response.create and beta text items; GA events pass untouched', async () => {
    const h = harness(openai.provider());
    const from = openaiStandin.frames.length;
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime', instructions: 'GA already' } });
    await h.next('session.updated');
    h.session.handleClientEvent({ type: 'session.update', session: { modalities: ['text'], voice: 'verse', temperature: 0.7, turn_detection: null } });
    await h.nth('session.updated', 1);
    h.session.handleClientEvent({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Earlier answer' }] } });
    h.session.handleClientEvent({ type: 'response.create', response: { modalities: ['text', 'audio'], voice: 'ash', max_response_output_tokens: 200 } });
    await h.next('response.done');
    const sent = openaiStandin.frames.slice(from).map((f) => f.event as Json);
    expect(sent[0]).toEqual({ type: 'session.update', session: { type: 'realtime', instructions: 'GA already' } });
    expect(sent[1]).toEqual({ type: 'session.update', session: { type: 'realtime', output_modalities: ['text'], audio: { input: { turn_detection: null }, output: { voice: 'verse' } } } });
    expect(sent[2]).toEqual({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Earlier answer' }] } });
    expect(sent[3]).toEqual({ type: 'response.create', response: { output_modalities: ['audio'], audio: { output: { voice: 'ash' } }, max_output_tokens: 200 } });
    expect(h.errors).toEqual([]);
  });

  it('an append goes upstream as its audio and id only: other fields are neither sent nor held (nor counted) in the queue', async () => {
    const h = harness(openai.provider());
    const from = openaiStandin.frames.length;
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime' } });
    await h.next('session.updated');
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: 'AAAA', event_id: 'evt_pad', pad: 'x'.repeat(500_000), extra: { nested: true } });
    const frame = await openaiStandin.waitForFrame((e) => e.type === 'input_audio_buffer.append', 3000, from);
    expect(frame).toEqual({ type: 'input_audio_buffer.append', audio: 'AAAA', event_id: 'evt_pad' });
    expect(h.errors).toEqual([]);
  });

  it('an event nested deeper than JSON can be written is refused with BAD_REQUEST, and the session goes on', async () => {
    const h = harness(openai.provider());
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime' } });
    await h.next('session.updated');
    let deep: unknown = [];
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    h.session.handleClientEvent({ type: 'conversation.item.create', event_id: 'evt_deep', item: deep });
    expect(h.errors).toEqual([{ code: 'BAD_REQUEST', message: 'Realtime event could not be read: nested too deeply', fromUpstreamEvent: false, eventId: 'evt_deep' }]);
    const from = openaiStandin.frames.length;
    h.session.handleClientEvent({ type: 'response.create' });
    await openaiStandin.waitForFrame((e) => e.type === 'response.create', 3000, from);
    expect(h.session.state).toBe('open');
  });

  it('connects with Bearer auth and the model query parameter only, no OpenAI-Beta header', async () => {
    const h = harness(openai.provider({ model: 'gpt-realtime-mini' }));
    h.session.open();
    await h.next('session.created');
    const hs = openaiStandin.handshakes.at(-1);
    expect(hs?.query).toEqual({ model: 'gpt-realtime-mini' });
    expect(hs?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(hs?.headers['openai-beta']).toBeUndefined();
  });

  it('redacts a key echoed in an upstream error event, in the relayed event and in onError', async () => {
    const h = harness(openai.provider());
    h.session.open();
    await h.next('session.created');
    openaiStandin.sendError(`Incorrect API key provided: ${OPENAI_KEY} and sk-abc***wxyz`, 'invalid_api_key');
    const err = await h.error('PROVIDER_ERROR');
    expect(err.message).toBe('Realtime provider error: Incorrect API key provided: [redacted] and [redacted]');
    const relayed = h.of('error')[0] as Json;
    expect((relayed.error as Json).message).toBe('Incorrect API key provided: [redacted] and [redacted]');
  });

  it("redacts a masked key in every text of an upstream error event (its code and param too), not only in its message", async () => {
    const h = harness(openai.provider());
    h.session.open();
    await h.next('session.created');
    openaiStandin.sendEvent({ type: 'error', event_id: 'evt_1', error: { type: 'invalid_request_error', code: 'bad sk-rev***7890', param: 'key=sk-rev***7890', message: 'no good' } });
    await h.error('PROVIDER_ERROR');
    const relayed = (h.of('error')[0] as Json).error as Json;
    expect(relayed).toEqual({ type: 'invalid_request_error', code: 'bad [redacted]', param: 'key=[redacted]', message: 'no good' });
    expect(JSON.stringify(h.events)).not.toContain('sk-rev');
  });

  it('times out a provider that never answers the handshake', async () => {
    openaiStandin.hang(true);
    const h = harness(openai.provider({ handshakeTimeoutMs: 300 }));
    h.session.handleClientEvent({ type: 'response.create' });
    const closed = await h.closed(3000);
    expect(closed).toMatchObject({ initiator: 'upstream', code: 'PROVIDER_ERROR', message: 'The realtime provider did not answer in time' });
  });

  it('sheds audio with one RATE_LIMIT when the upstream cannot pause', async () => {
    openaiStandin.setScript({ ...defaultRealtimeScript(), audioChunks: knownAudio(10, 960, 3), transcript: [] });
    const real = openai.provider();
    // The real adapter with one capability removed: an upstream that cannot pause reading.
    const cannotPause: RealtimeProvider = {
      kind: 'openai',
      connect: async (options) => {
        const upstream = await real.connect(options);
        return { send: (e) => upstream.send(e), get bufferedAmount() { return upstream.bufferedAmount; }, pause: () => false, resume: () => upstream.resume(), close: () => upstream.close() };
      },
    };
    const h = harness(cannotPause, { limits: { maxClientBacklogBytes: 10_000 } });
    h.session.open();
    await h.next('session.created');
    h.backlog = 50_000;
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    expect(h.audio).toEqual([]);
    expect(h.errors).toEqual([{ code: 'RATE_LIMIT', message: 'The client is not reading realtime audio fast enough; audio is being dropped', fromUpstreamEvent: false }]);
    expect(h.of('response.output_audio_transcript.done')).toHaveLength(1);
    h.backlog = 0;
    h.session.handleClientEvent({ type: 'response.create' });
    await h.nth('response.done', 1);
    expect(h.audio).toHaveLength(10);
    expect(h.session.state).toBe('open');
  });

  it('answers REALTIME_UNAVAILABLE when no provider is configured', () => {
    const h = harness(null);
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    expect(h.errors).toEqual([{ code: 'REALTIME_UNAVAILABLE', message: 'No realtime provider is configured on this server', fromUpstreamEvent: false }]);
    expect(h.closes).toEqual([{ initiator: 'server', code: 'REALTIME_UNAVAILABLE', message: 'No realtime provider is configured on this server' }]);
    expect(realtimeErrorEvent({ ...(h.errors[0] as RealtimeSessionError) })).toMatchObject({
      type: 'error',
      error: { type: 'server_error', code: 'REALTIME_UNAVAILABLE', message: 'No realtime provider is configured on this server', param: null, event_id: null },
    });
  });
});

describe('RealtimeSession over Gemini Live: the GA protocol is mapped', () => {
  afterEach(() => gemini.reset());

  it("builds the Live setup from seed 004's session.create and acknowledges it as GA", async () => {
    const h = harness(gemini.provider());
    const conn = geminiStandin.connections.length;
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const updated = await h.next('session.updated');
    expect(geminiStandin.connections[conn]?.setup).toEqual({
      model: `models/${GEMINI_MODEL}`,
      generationConfig: { responseModalities: ['AUDIO'], speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: 'Puck' } } } },
      systemInstruction: { parts: [{ text: 'You are a helpful assistant.' }], role: 'user' },
      inputAudioTranscription: {},
      outputAudioTranscription: {},
      realtimeInputConfig: { automaticActivityDetection: { disabled: false, prefixPaddingMs: 300, silenceDurationMs: 200 } },
    });
    expect(h.events.slice(0, 2).map((e) => e.type)).toEqual(['session.created', 'session.updated']);
    expect(updated.session).toEqual({
      type: 'realtime',
      model: GEMINI_MODEL,
      output_modalities: ['audio'],
      instructions: 'You are a helpful assistant.',
      audio: {
        input: {
          format: { type: 'audio/pcm', rate: 24000 },
          transcription: { model: 'whisper-1' },
          turn_detection: { type: 'server_vad', prefix_padding_ms: 300, silence_duration_ms: 200 },
        },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'Puck' },
      },
    });
    expect(h.errors).toEqual([]);
  });

  it('maps input transcription, the synthesized response lifecycle and usage', async () => {
    const h = harness(gemini.provider());
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await h.next('session.updated');
    const from = geminiStandin.frames.length; // this test's frames, not an earlier test's
    h.session.handleClientAudio(Buffer.alloc(960, 1));
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit' });
    const done = await h.next('response.done');
    const frame = await geminiStandin.waitForFrame((m) => (m.realtimeInput as Json | undefined)?.audioStreamEnd === true, 3000, from);
    expect(frame).toEqual({ realtimeInput: { audioStreamEnd: true } });

    const committed = h.of('input_audio_buffer.committed')[0] as Json;
    expect(h.of('conversation.item.input_audio_transcription.delta').map((e) => [e.item_id, e.delta])).toEqual([
      [committed.item_id, 'what is'],
      [committed.item_id, ' the weather'],
    ]);
    expect(h.of('conversation.item.input_audio_transcription.completed')[0]).toMatchObject({ item_id: committed.item_id, transcript: 'what is the weather' });

    const created = h.of('response.created')[0] as Json;
    const responseId = (created.response as Json).id as string;
    expect(responseId).toMatch(/^resp_/);
    const types = h.events.map((e) => e.type);
    const lifecycle = [
      'response.created',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_audio_transcript.delta',
      'response.output_audio.done',
      'response.output_audio_transcript.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.done',
    ];
    const positions = lifecycle.map((t) => types.indexOf(t));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(h.of('response.output_audio_transcript.done')[0]).toMatchObject({ response_id: responseId, transcript: GEMINI_STANDIN_TRANSCRIPT.join('') });
    expect(h.events.every((e) => typeof e.event_id === 'string' && e.event_id.startsWith('event_'))).toBe(true);
    expect(done.response).toMatchObject({
      id: responseId,
      status: 'completed',
      output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript: GEMINI_STANDIN_TRANSCRIPT.join('') }] }],
      usage: {
        input_tokens: 90,
        output_tokens: 70,
        total_tokens: 160,
        input_token_details: { text_tokens: 30, audio_tokens: 60, image_tokens: 0, cached_tokens: 0 },
        output_token_details: { text_tokens: 10, audio_tokens: 60 },
      },
    });
    expect(h.audio).toEqual(GEMINI_STANDIN_AUDIO);
  });

  it('maps a text-only session to TEXT responses and output_text events', async () => {
    const h = harness(gemini.provider());
    const conn = geminiStandin.connections.length;
    h.session.handleClientEvent({ type: 'session.update', session: { modalities: ['text'], instructions: 'Type.' } });
    await h.next('session.updated');
    expect(geminiStandin.connections[conn]?.setup).toMatchObject({ generationConfig: { responseModalities: ['TEXT'] } });
    expect(geminiStandin.connections[conn]?.setup?.outputAudioTranscription).toBeUndefined();
    h.session.handleClientEvent({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] } });
    h.session.handleClientEvent({ type: 'response.create' });
    const done = await h.next('response.done');
    const text = GEMINI_STANDIN_TRANSCRIPT.join('');
    expect(h.of('response.output_text.delta').map((e) => e.delta)).toEqual(GEMINI_STANDIN_TRANSCRIPT);
    expect(h.of('response.output_text.done')[0]).toMatchObject({ text });
    expect(h.of('response.output_audio_transcript.delta')).toEqual([]);
    expect(h.audio).toEqual([]);
    expect(done.response).toMatchObject({ output_modalities: ['text'], output: [{ content: [{ type: 'output_text', text }] }] });
  });

  it('resamples model audio that is not 24 kHz', async () => {
    const chunks = knownAudio(2, 640, 12);
    geminiStandin.setScript({ ...defaultGeminiLiveScript(), audioChunks: chunks, mimeType: 'audio/pcm;rate=16000' });
    const h = harness(gemini.provider());
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    expect(h.audio).toEqual(chunks.map((c) => resamplePcm16(c, 16000, 24000)));
    expect(h.audio.map((b) => b.length)).toEqual([960, 960]);
  });

  it('sends text items with sendClientContent and closes the turn on response.create', async () => {
    const h = harness(gemini.provider());
    const from = geminiStandin.frames.length;
    h.session.handleClientEvent({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello there' }] } });
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    const frames = geminiStandin.frames.slice(from).map((f) => f.message as Json).filter((m) => m.clientContent);
    expect(frames).toEqual([
      { clientContent: { turns: [{ role: 'user', parts: [{ text: 'Hello there' }] }], turnComplete: false } },
      { clientContent: { turnComplete: true } },
    ]);
    expect(h.of('conversation.item.added')[0]).toMatchObject({ item: { type: 'message', role: 'user', status: 'completed' } });
    expect(h.audio).toEqual(GEMINI_STANDIN_AUDIO);
  });

  it('maps an interruption to speech_started and a cancelled response.done carrying the usage', async () => {
    geminiStandin.setScript({ ...defaultGeminiLiveScript(), delayMs: 150 });
    const h = harness(gemini.provider());
    h.session.handleClientEvent({ type: 'response.create' });
    await until(() => h.audio.length > 0, 'first audio');
    geminiStandin.interrupt();
    const done = await h.next('response.done');
    const types = h.events.map((e) => e.type);
    expect(types.indexOf('input_audio_buffer.speech_started')).toBeLessThan(types.indexOf('response.done'));
    expect(done.response).toMatchObject({ status: 'cancelled', status_details: { type: 'cancelled', reason: 'turn_detected' }, usage: { total_tokens: 160 } });
    expect(h.audio.length).toBeLessThan(GEMINI_STANDIN_AUDIO.length);
    expect(h.session.usage.responses).toBe(1);
  });

  it('maps response.cancel to an immediate cancelled response.done and drops the rest of the turn', async () => {
    geminiStandin.setScript({ ...defaultGeminiLiveScript(), delayMs: 150 });
    const h = harness(gemini.provider());
    h.session.handleClientEvent({ type: 'response.create' });
    await until(() => h.audio.length > 0, 'first audio');
    h.session.handleClientEvent({ type: 'response.cancel' });
    const done = await h.next('response.done');
    expect(done.response).toMatchObject({ status: 'cancelled', status_details: { reason: 'client_cancelled' } });
    const got = h.audio.length;
    await new Promise((r) => setTimeout(r, 500));
    expect(h.audio.length).toBe(got);
    expect(h.of('response.done')).toHaveLength(1);
  });

  it('uses explicit activity signals when turn detection is off', async () => {
    const h = harness(gemini.provider());
    const conn = geminiStandin.connections.length;
    const from = geminiStandin.frames.length;
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime', audio: { input: { turn_detection: null } } } });
    await h.next('session.updated');
    expect(geminiStandin.connections[conn]?.setup).toMatchObject({ realtimeInputConfig: { automaticActivityDetection: { disabled: true } } });
    h.session.handleClientAudio(Buffer.alloc(960, 5));
    h.session.handleClientAudio(Buffer.alloc(960, 6));
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit' });
    h.session.handleClientEvent({ type: 'response.create' });
    await h.next('response.done');
    const input = geminiStandin.frames
      .slice(from)
      .map((f) => f.message as Json)
      .filter((m) => m.realtimeInput || m.clientContent)
      .map((m) => Object.keys((m.realtimeInput ?? m.clientContent) as Json)[0]);
    expect(input).toEqual(['activityStart', 'audio', 'audio', 'activityEnd']);
    expect(h.of('response.done')).toHaveLength(1);
  });

  it('reconnects for a session.update before any content, and refuses one after', async () => {
    const h = harness(gemini.provider());
    const conn = geminiStandin.connections.length;
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await h.next('session.updated');
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime', instructions: 'Answer in French.', audio: { output: { voice: 'Kore' } } } });
    const second = await h.nth('session.updated', 1);
    await geminiStandin.waitForClose(conn);
    expect(geminiStandin.connections[conn + 1]?.setup).toMatchObject({
      systemInstruction: { parts: [{ text: 'Answer in French.' }] },
      generationConfig: { speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: 'Kore' } } } },
      inputAudioTranscription: {},
    });
    expect(second.session).toMatchObject({ instructions: 'Answer in French.', audio: { output: { voice: 'Kore' } } });
    expect(h.of('session.created')).toHaveLength(1);

    h.session.handleClientAudio(Buffer.alloc(960, 7));
    h.session.handleClientEvent({ type: 'session.update', event_id: 'evt_late', session: { type: 'realtime', instructions: 'Too late.' } });
    const err = await h.error('PROVIDER_ERROR');
    expect(err).toMatchObject({ fromUpstreamEvent: true, eventId: 'evt_late' });
    const third = await h.nth('session.updated', 2);
    expect(third.session).toMatchObject({ instructions: 'Answer in French.' });
    expect(geminiStandin.connections).toHaveLength(conn + 2);
  });

  it('refuses what Gemini cannot do with GA error events, and lives on', async () => {
    const h = harness(gemini.provider());
    // (input_audio_buffer.clear and conversation.item.truncate are answered: gemini-live-barge-in.test.ts)
    h.session.handleClientEvent({ type: 'conversation.item.delete', event_id: 'evt_del', item_id: 'item_1' });
    h.session.handleClientEvent({ type: 'conversation.item.create', event_id: 'evt_fn', item: { type: 'function_call_output', call_id: 'c1', output: '{}' } });
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit', event_id: 'evt_empty' });
    await until(() => h.errors.length >= 3, 'three errors');
    expect(h.of('error').map((e) => [(e.error as Json).code, (e.error as Json).event_id])).toEqual([
      ['BAD_REQUEST', 'evt_del'],
      ['unsupported_item', 'evt_fn'],
      ['input_audio_buffer_commit_empty', 'evt_empty'],
    ]);
    // Refused by the adapter: BAD_REQUEST for the Socket.IO client too; the others are Gemini's own answers.
    expect(h.errors.map((e) => [e.code, e.fromUpstreamEvent])).toEqual([
      ['BAD_REQUEST', true],
      ['PROVIDER_ERROR', true],
      ['PROVIDER_ERROR', true],
    ]);
    expect(h.session.state).toBe('open');
  });

  it('refuses a non-PCM audio format', async () => {
    const h = harness(gemini.provider());
    h.session.handleClientEvent({ ...SEED_004_SESSION_CREATE, session: { ...SEED_004_SESSION_CREATE.session, input_audio_format: 'g711_ulaw' } });
    const err = await h.error('BAD_REQUEST'); // refused by the adapter, not failed by Gemini
    expect(err.message).toMatch(/does not support audio\.input\.format/);
  });

  it('times out a provider that never completes the setup', async () => {
    geminiStandin.holdSetup(true);
    const h = harness(gemini.provider({ connectTimeoutMs: 300 }));
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const closed = await h.closed(3000);
    expect(closed).toMatchObject({ initiator: 'upstream', code: 'PROVIDER_ERROR', message: 'The realtime provider did not answer in time' });
  });
});
