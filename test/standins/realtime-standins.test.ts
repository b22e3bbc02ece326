/**
 * Drives the realtime stand-ins with the real clients: the `ws` package speaking OpenAI
 * Realtime GA, and `@google/genai`'s `ai.live.connect` speaking Gemini Live, so both wire
 * formats are checked against real parsers before the gateway is tested against them.
 */
import { GoogleGenAI, Modality, type LiveServerMessage, type Session } from '@google/genai';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  GEMINI_LIVE_PATH,
  GEMINI_STANDIN_AUDIO,
  GEMINI_STANDIN_TRANSCRIPT,
  GEMINI_STANDIN_USAGE,
  defaultGeminiLiveScript,
  startGeminiLiveStandin,
  type GeminiLiveStandin,
} from './gemini-live-standin.js';
import {
  STANDIN_AUDIO,
  STANDIN_TRANSCRIPT,
  STANDIN_USAGE,
  defaultRealtimeScript,
  startRealtimeStandin,
  type RealtimeStandin,
} from './realtime-standin.js';
import { knownAudio, until } from './ws-standin-server.js';

const OPENAI_KEY = 'sk-realtime-standin-key-0123456789abcdef';
const GEMINI_KEY = 'AIzaStandinLiveKey0123456789abcdefghijk';
const MODEL = 'gpt-realtime';
const GEMINI_MODEL = 'gemini-2.5-flash-native-audio-preview-09-2025';

type Json = Record<string, unknown>;

/** A real `ws` client that records every event. */
class Client {
  readonly events: Json[] = [];
  readonly ws: WebSocket;
  closeCode: number | undefined;
  private readonly opened: Promise<void>;

  constructor(url: string, headers: Record<string, string>, handshakeTimeout?: number) {
    this.ws = new WebSocket(url, { headers, ...(handshakeTimeout ? { handshakeTimeout } : {}) });
    this.ws.on('message', (data) => this.events.push(JSON.parse(data.toString()) as Json));
    this.ws.on('close', (code) => {
      this.closeCode = code;
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }

  open(): Promise<void> {
    return this.opened;
  }

  send(event: Json): void {
    this.ws.send(JSON.stringify(event));
  }

  next(type: string, from = 0, timeoutMs = 3000): Promise<Json> {
    return until(() => this.events.slice(from).find((e) => e.type === type), `event ${type}`, timeoutMs);
  }

  of(type: string): Json[] {
    return this.events.filter((e) => e.type === type);
  }
}

/** Why a handshake failed: the HTTP status and body of the refusal. */
function refusal(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => reject(new Error('handshake unexpectedly accepted')));
    ws.on('error', () => undefined);
  });
}

describe('OpenAI Realtime GA stand-in with the ws client', () => {
  let standin: RealtimeStandin;
  const clients: Client[] = [];
  const auth = { Authorization: `Bearer ${OPENAI_KEY}` };
  const url = (): string => `${standin.url}?model=${MODEL}`;
  const connect = async (): Promise<Client> => {
    const c = new Client(url(), auth);
    clients.push(c);
    await c.open();
    await c.next('session.created');
    return c;
  };

  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: OPENAI_KEY });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.ws.terminate();
    standin.setScript(defaultRealtimeScript());
    standin.hang(false);
  });
  afterAll(async () => {
    await standin.close();
  });

  it('serves ws:// on loopback at /v1/realtime', () => {
    expect(standin.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1\/realtime$/);
  });

  it('refuses a handshake that carries OpenAI-Beta', async () => {
    const r = await refusal(url(), { ...auth, 'OpenAI-Beta': 'realtime=v1' });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.code).toBe('beta_api_retired');
    expect(standin.handshakes.at(-1)?.headers['openai-beta']).toBe('realtime=v1');
  });

  it('refuses a missing or wrong key, echoing a masked key like the real API', async () => {
    expect((await refusal(url(), {})).status).toBe(401);
    const wrong = await refusal(url(), { Authorization: 'Bearer sk-wrong-key-abcdef' });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body).error.message).toContain('sk-wro***cdef');
  });

  it('refuses a handshake without the model query parameter', async () => {
    const r = await refusal(standin.url, auth);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.param).toBe('model');
  });

  it('sends session.created on connect and answers a GA session.update with session.updated', async () => {
    const c = await connect();
    const created = c.of('session.created')[0] as Json;
    expect(created.session).toMatchObject({ type: 'realtime', model: MODEL, output_modalities: ['audio'] });
    expect(standin.handshakes.at(-1)).toMatchObject({ path: '/v1/realtime', query: { model: MODEL }, status: 101 });
    c.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.', audio: { output: { voice: 'marin' } } } });
    const updated = await c.next('session.updated');
    expect(updated.session).toMatchObject({ instructions: 'Be brief.', audio: { output: { voice: 'marin', format: { type: 'audio/pcm', rate: 24000 } } } });
  });

  it('rejects a beta-shaped session.update with an error event', async () => {
    const c = await connect();
    c.send({ type: 'session.update', event_id: 'evt_beta', session: { modalities: ['text', 'audio'], voice: 'alloy' } });
    const err = await c.next('error');
    expect(err.error).toMatchObject({ code: 'missing_required_parameter', param: 'session.type', event_id: 'evt_beta' });
    c.send({ type: 'session.update', session: { type: 'realtime', voice: 'alloy' } });
    const unknown = await c.next('error', c.events.indexOf(err) + 1);
    expect(unknown.error).toMatchObject({ code: 'unknown_parameter', param: 'session.voice' });
  });

  it('records decoded audio and acknowledges a commit with committed and the user item', async () => {
    const c = await connect();
    const before = standin.audio.length;
    const chunks = knownAudio(2, 480, 3);
    for (const chunk of chunks) c.send({ type: 'input_audio_buffer.append', audio: chunk.toString('base64') });
    c.send({ type: 'input_audio_buffer.commit' });
    const committed = await c.next('input_audio_buffer.committed');
    const added = await c.next('conversation.item.added');
    await c.next('conversation.item.done');
    expect(added.item).toMatchObject({ id: committed.item_id, role: 'user', type: 'message' });
    expect(standin.audio.slice(before)).toEqual(chunks);
    expect(standin.frames.some((f) => typeof f.event === 'object' && f.event.type === 'input_audio_buffer.commit')).toBe(true);
  });

  it('answers an empty commit with input_audio_buffer_commit_empty', async () => {
    const c = await connect();
    c.send({ type: 'input_audio_buffer.commit' });
    expect((await c.next('error')).error).toMatchObject({ code: 'input_audio_buffer_commit_empty' });
  });

  it('answers response.create with the scripted audio, transcript and usage', async () => {
    const c = await connect();
    c.send({ type: 'response.create' });
    const done = await c.next('response.done');
    const created = c.of('response.created')[0] as Json;
    const deltas = c.of('response.output_audio.delta');
    expect(deltas.map((d) => Buffer.from(d.delta as string, 'base64'))).toEqual(STANDIN_AUDIO);
    expect(deltas.every((d) => d.response_id === (created.response as Json).id)).toBe(true);
    expect(c.of('response.output_audio_transcript.delta').map((d) => d.delta)).toEqual(STANDIN_TRANSCRIPT);
    expect(done.response).toMatchObject({ status: 'completed', usage: STANDIN_USAGE });
    const order = c.events.map((e) => e.type);
    expect(order.indexOf('response.created')).toBeLessThan(order.indexOf('response.output_audio.delta'));
    expect(order.indexOf('response.output_audio.done')).toBeLessThan(order.indexOf('response.done'));
  });

  it('cancels a response in progress', async () => {
    standin.setScript({ ...defaultRealtimeScript(), delayMs: 200 });
    const c = await connect();
    c.send({ type: 'response.create' });
    await c.next('response.created');
    c.send({ type: 'response.cancel' });
    const done = await c.next('response.done');
    expect(done.response).toMatchObject({ status: 'cancelled' });
  });

  it('answers unknown event types and non-JSON frames with error events', async () => {
    const c = await connect();
    c.send({ type: 'session.create', event_id: 'evt_1' });
    const err = await c.next('error');
    expect(err.error).toMatchObject({ code: 'invalid_value', param: 'type', event_id: 'evt_1' });
    c.ws.send('not json');
    await until(() => c.of('error').length === 2, 'second error');
    expect((c.of('error')[1] as Json).error).toMatchObject({ code: 'invalid_json' });
  });

  it('can send an error event and close connections from the server side', async () => {
    const c = await connect();
    const id = standin.connections.length - 1;
    standin.sendError('Something upstream broke', 'server_error');
    expect((await c.next('error')).error).toMatchObject({ message: 'Something upstream broke', type: 'server_error' });
    standin.closeConnections(1011, 'bye');
    await until(() => c.closeCode, 'client close');
    expect(c.closeCode).toBe(1011);
    expect((await standin.waitForClose(id)).closeCode).toBe(1011);
  });

  it('can hang the handshake so the client times out', async () => {
    standin.hang(true);
    const c = new Client(url(), auth, 300);
    clients.push(c);
    await expect(c.open()).rejects.toThrow(/handshake has timed out/);
    expect(standin.handshakes.at(-1)?.status).toBeUndefined();
  });
});

describe('Gemini Live stand-in with the real @google/genai live client', () => {
  let standin: GeminiLiveStandin;
  let ai: GoogleGenAI;
  const sessions: Session[] = [];

  async function connect(config: Parameters<GoogleGenAI['live']['connect']>[0]['config'] = {}): Promise<{ session: Session; messages: LiveServerMessage[]; closed: { code?: number; reason?: string } }> {
    const messages: LiveServerMessage[] = [];
    const closed: { code?: number; reason?: string } = {};
    const session = await ai.live.connect({
      model: GEMINI_MODEL,
      config: { responseModalities: [Modality.AUDIO], ...config },
      callbacks: {
        onmessage: (m) => messages.push(m),
        onclose: (e) => {
          closed.code = e.code;
          closed.reason = e.reason;
        },
      },
    });
    sessions.push(session);
    return { session, messages, closed };
  }

  beforeAll(async () => {
    standin = await startGeminiLiveStandin({ apiKey: GEMINI_KEY });
    ai = new GoogleGenAI({ apiKey: GEMINI_KEY, httpOptions: { baseUrl: standin.url } });
  });
  afterEach(() => {
    for (const s of sessions.splice(0)) s.close();
    standin.setScript(defaultGeminiLiveScript());
    standin.holdSetup(false);
  });
  afterAll(async () => {
    await standin.close();
  });

  it('is reached at the double-slash BidiGenerateContent path, setup first, setupComplete back', async () => {
    const { messages } = await connect({ systemInstruction: 'Be brief.', outputAudioTranscription: {} });
    expect(standin.paths.at(-1)).toBe(GEMINI_LIVE_PATH);
    const conn = standin.connections.at(-1);
    expect(conn?.query.key).toBe(GEMINI_KEY);
    expect(conn?.setup).toMatchObject({
      model: `models/${GEMINI_MODEL}`,
      generationConfig: { responseModalities: ['AUDIO'] },
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      outputAudioTranscription: {},
    });
    expect(messages[0]?.setupComplete).toEqual({});
  });

  it('records realtime audio with its MIME type and answers audioStreamEnd with a full turn', async () => {
    const { session, messages } = await connect();
    const before = standin.audio.length;
    const chunks = knownAudio(2, 640, 5);
    for (const c of chunks) session.sendRealtimeInput({ audio: { data: c.toString('base64'), mimeType: 'audio/pcm;rate=24000' } });
    session.sendRealtimeInput({ audioStreamEnd: true });
    await until(() => messages.find((m) => m.serverContent?.turnComplete), 'turnComplete');
    expect(standin.audio.slice(before)).toEqual(chunks.map((bytes) => ({ connection: standin.connections.length - 1, mimeType: 'audio/pcm;rate=24000', bytes })));
    const audio = messages.flatMap((m) => m.serverContent?.modelTurn?.parts ?? []).map((p) => p.inlineData);
    expect(audio.map((d) => d?.mimeType)).toEqual(GEMINI_STANDIN_AUDIO.map(() => 'audio/pcm;rate=24000'));
    expect(audio.map((d) => Buffer.from(d?.data ?? '', 'base64'))).toEqual(GEMINI_STANDIN_AUDIO);
    expect(messages.map((m) => m.serverContent?.outputTranscription?.text).filter(Boolean)).toEqual(GEMINI_STANDIN_TRANSCRIPT);
    expect(messages.map((m) => m.serverContent?.inputTranscription?.text).filter(Boolean)).toEqual(['what is', ' the weather']);
    expect(messages.some((m) => m.serverContent?.generationComplete)).toBe(true);
    const last = messages.find((m) => m.serverContent?.turnComplete);
    expect(last?.usageMetadata).toEqual(GEMINI_STANDIN_USAGE);
  });

  it('answers a text turn sent with sendClientContent', async () => {
    const { session, messages } = await connect();
    const from = standin.frames.length; // this test's frames only: others may have sent clientContent before
    session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Hello' }] }], turnComplete: true });
    await until(() => messages.find((m) => m.serverContent?.turnComplete), 'turnComplete');
    const frame = await standin.waitForFrame((m) => typeof m.clientContent === 'object', 3000, from);
    expect(frame.clientContent).toEqual({ turns: [{ role: 'user', parts: [{ text: 'Hello' }] }], turnComplete: true });
    expect(messages.filter((m) => m.data).length).toBe(GEMINI_STANDIN_AUDIO.length);
  });

  it('can interrupt a turn in progress, send goAway and close the connection', async () => {
    standin.setScript({ ...defaultGeminiLiveScript(), delayMs: 200 });
    const { session, messages, closed } = await connect();
    session.sendClientContent({ turns: 'Tell me a story', turnComplete: true });
    await until(() => messages.find((m) => m.serverContent?.modelTurn), 'first audio');
    standin.interrupt();
    await until(() => messages.find((m) => m.serverContent?.interrupted), 'interrupted');
    await until(() => messages.find((m) => m.serverContent?.turnComplete), 'turnComplete after interruption');
    standin.goAway('5s');
    await until(() => messages.find((m) => m.goAway), 'goAway');
    expect(messages.find((m) => m.goAway)?.goAway).toEqual({ timeLeft: '5s' });
    standin.closeConnections(1011, 'stand-in closing');
    await until(() => closed.code, 'close');
    expect(closed).toEqual({ code: 1011, reason: 'stand-in closing' });
  });

  it('closes the socket with a reason when the key is wrong', async () => {
    const bad = new GoogleGenAI({ apiKey: 'AIzaWrongKey', httpOptions: { baseUrl: standin.url } });
    const closed: { code?: number; reason?: string } = {};
    // The SDK's connect never settles when the socket closes before setupComplete; only onclose tells.
    void bad.live.connect({
      model: GEMINI_MODEL,
      callbacks: {
        onmessage: () => undefined,
        onclose: (e) => {
          closed.code = e.code;
          closed.reason = e.reason;
        },
      },
    });
    await until(() => closed.code, 'close');
    expect(closed).toEqual({ code: 1008, reason: 'API key not valid. Please pass a valid API key.' });
  });
});
