/**
 * Gemini Live edge cases: upstream sockets given up while opening, cancelled and interrupted
 * turns, and malformed model audio. RealtimeSession over the real `@google/genai` live client
 * against the local Gemini Live stand-in (and, for a handshake that is never answered, a bare
 * HTTP server), all on loopback.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GeminiRealtimeProvider } from '../../src/realtime/gemini-realtime-provider.js';
import { pcmRateOf } from '../../src/realtime/pcm16.js';
import {
  GEMINI_STANDIN_AUDIO,
  GEMINI_STANDIN_TRANSCRIPT,
  defaultGeminiLiveScript,
  startGeminiLiveStandin,
  type GeminiLiveStandin,
} from '../standins/gemini-live-standin.js';
import { until } from '../standins/ws-standin-server.js';
import { SEED_004_SESSION_CREATE } from './seed-004.js';
import type { RealtimeUsage } from '../../src/realtime/realtime-usage.js';
import { Harness } from './realtime-harness.js';

const GEMINI_KEY = 'AIzaEdgeCaseTestKey0123456789abcdefghijk';
const GEMINI_MODEL = 'gemini-2.5-flash-native-audio-preview-09-2025';
/** The stand-in's usage (GEMINI_STANDIN_USAGE) as the session counts it. */
const STANDIN_USAGE: Partial<RealtimeUsage> = {
  responses: 1,
  inputTokens: 90,
  outputTokens: 70,
  totalTokens: 160,
  inputTextTokens: 30,
  inputAudioTokens: 60,
  outputTextTokens: 10,
  outputAudioTokens: 60,
};

let standin: GeminiLiveStandin;
const harnesses: Harness[] = [];

function provider(overrides: Partial<ConstructorParameters<typeof GeminiRealtimeProvider>[0]> = {}): GeminiRealtimeProvider {
  return new GeminiRealtimeProvider({ apiKey: GEMINI_KEY, baseUrl: standin.url, model: GEMINI_MODEL, ...overrides });
}

function harness(p: GeminiRealtimeProvider = provider()): Harness {
  const h = new Harness(p);
  harnesses.push(h);
  return h;
}

/** A session whose first connection is open, and that connection's index at the stand-in. */
async function opened(): Promise<{ h: Harness; conn: number }> {
  const conn = standin.connections.length;
  const h = harness();
  h.session.handleClientEvent(SEED_004_SESSION_CREATE);
  await h.nth('session.updated', 0);
  return { h, conn };
}

/** Waits until the stand-in holds connection `conn`'s setup (the SDK's socket is open and waiting for `setupComplete`). */
function setupReceived(conn: number): Promise<unknown> {
  return until(() => standin.connections[conn]?.setup, `setup of connection ${conn}`);
}

beforeAll(async () => {
  standin = await startGeminiLiveStandin({ apiKey: GEMINI_KEY });
});
afterAll(async () => {
  await standin.close();
});
afterEach(() => {
  for (const h of harnesses.splice(0)) {
    h.session.close();
    expect(h.everything().includes(GEMINI_KEY), 'provider key leaked').toBe(false);
  }
  standin.holdSetup(false);
  standin.setScript(defaultGeminiLiveScript());
});

describe('Gemini Live: no upstream socket outlives its session', () => {
  it('closes the socket of a connection given up while its setup is unanswered', async () => {
    standin.holdSetup(true);
    const conn = standin.connections.length;
    const h = harness();
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    await setupReceived(conn);
    h.session.close();
    // The setup is still held: the SDK never hands this session over, yet its socket closes.
    const closed = await standin.waitForClose(conn, 1500);
    expect(closed.closedAt).toBeDefined();
    expect(h.closes).toEqual([{ initiator: 'client', message: 'The client closed the realtime session' }]);
    expect(h.errors).toEqual([]);
  });

  it('closes the socket of a connection whose setup times out', async () => {
    standin.holdSetup(true);
    const conn = standin.connections.length;
    const h = harness(provider({ connectTimeoutMs: 300 }));
    h.session.handleClientEvent(SEED_004_SESSION_CREATE);
    const closed = await h.closed();
    expect(closed).toMatchObject({ initiator: 'upstream', code: 'PROVIDER_ERROR', message: 'The realtime provider did not answer in time' });
    await standin.waitForClose(conn, 1500);
  });

  it('abandons a WebSocket handshake the provider never answers', async () => {
    // A server that accepts the TCP connection and never answers the upgrade.
    const sockets: Array<{ socket: Socket; hungUp: boolean }> = [];
    const server = http.createServer();
    server.on('upgrade', (_req, socket: Socket) => {
      const entry = { socket, hungUp: false };
      sockets.push(entry);
      socket.on('error', () => undefined);
      socket.on('end', () => {
        entry.hungUp = true;
        socket.destroy();
      });
      socket.on('close', () => (entry.hungUp = true));
      socket.resume(); // read, so that the client hanging up is noticed
    });
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const h = harness(provider({ baseUrl: `http://127.0.0.1:${port}`, connectTimeoutMs: 300 }));
      h.session.handleClientEvent(SEED_004_SESSION_CREATE);
      const closed = await h.closed();
      expect(closed).toMatchObject({ code: 'PROVIDER_ERROR', message: 'The realtime provider did not answer in time' });
      await until(() => sockets.length === 1 && sockets.every((s) => s.hungUp), 'the client to hang up', 1500);
    } finally {
      for (const { socket } of sockets) socket.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('closes the new connection when the session closes while a session.update reconnects', async () => {
    const { h, conn } = await opened();
    standin.holdSetup(true);
    h.session.handleClientEvent({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.' } });
    await standin.waitForClose(conn);
    await setupReceived(conn + 1);
    h.session.close();
    await standin.waitForClose(conn + 1, 1500);
    // The provider answering the setup afterwards opens nothing again.
    standin.holdSetup(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(standin.connections.slice(conn).map((c) => c.closedAt !== undefined)).toEqual([true, true]);
    expect(h.closes).toEqual([{ initiator: 'client', message: 'The client closed the realtime session' }]);
  });
});

describe('Gemini Live: cancelled and interrupted turns', () => {
  it('a cancelled response is done at once, and the usage Gemini bills for its turn is still counted for the session', async () => {
    standin.setScript({ ...defaultGeminiLiveScript(), delayMs: 150 });
    const { h } = await opened();
    h.session.handleClientEvent({ type: 'response.create' });
    await until(() => h.audio[0], 'first audio');
    h.session.handleClientEvent({ type: 'response.cancel' });
    // Done at once, as OpenAI answers a cancel: the client need not wait for Gemini's turn to end.
    expect(h.of('response.output_item.done')).toHaveLength(1);
    const done = h.of('response.done');
    expect(done).toHaveLength(1);
    expect(done[0]!.response).toMatchObject({ status: 'cancelled', status_details: { type: 'cancelled', reason: 'client_cancelled' } });
    expect(done[0]!.response).not.toHaveProperty('usage');
    const audioAtCancel = h.audio.length;
    // Gemini generates the turn to its end and reports its usage then: counted, not sent.
    await until(() => h.usages.length === 1, 'the cancelled turn\'s usage');
    expect(h.session.usage).toMatchObject(STANDIN_USAGE);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.audio).toHaveLength(audioAtCancel);
    expect(h.of('response.done')).toHaveLength(1);
    expect(h.errors).toEqual([]);
  });

  it('an interruption while the model is silent does not swallow the next reply', async () => {
    const { h } = await opened();
    h.session.handleClientEvent({ type: 'response.create' });
    await h.nth('response.done', 0);
    standin.interrupt(); // no turn running: only `interrupted`, no turnComplete follows
    await h.nth('input_audio_buffer.speech_started', 0);
    const audioBefore = h.audio.length;
    h.session.handleClientEvent({ type: 'response.create' });
    const done = await h.nth('response.done', 1);
    expect(done.response).toMatchObject({ status: 'completed', usage: { total_tokens: 160 } });
    expect(h.audio.slice(audioBefore)).toEqual(GEMINI_STANDIN_AUDIO);
    expect(h.of('response.created')).toHaveLength(2);
    expect(h.session.usage.responses).toBe(2);
  });
});

describe('Gemini Live: model audio at an implausible sample rate', () => {
  it('accepts PCM rates from 8 to 48 kHz only', () => {
    expect(pcmRateOf('audio/pcm')).toBe(24000);
    expect(pcmRateOf('audio/pcm;rate=8000')).toBe(8000);
    expect(pcmRateOf('audio/pcm; rate=16000')).toBe(16000);
    expect(pcmRateOf('audio/L16;rate=48000')).toBe(48000);
    for (const rate of ['0', '1', '7999', '48001', '96000', '9'.repeat(30)]) expect(pcmRateOf(`audio/pcm;rate=${rate}`), rate).toBeUndefined();
    expect(pcmRateOf('audio/mpeg')).toBeUndefined();
  });

  it('drops audio parts declared at rate=1 with one warning, and the turn goes on', async () => {
    // Two bytes (one sample) per part: resampled from 1 Hz, each would become 48,000 bytes.
    const parts = [Buffer.from([1, 0]), Buffer.from([2, 0]), Buffer.from([3, 0])];
    standin.setScript({ ...defaultGeminiLiveScript(), audioChunks: parts, mimeType: 'audio/pcm;rate=1' });
    const { h } = await opened();
    h.session.handleClientEvent({ type: 'response.create' });
    const done = await h.nth('response.done', 0);
    expect(done.response).toMatchObject({ status: 'completed', usage: { total_tokens: 160 } });
    expect(h.audio).toEqual([]);
    expect(h.of('response.output_audio_transcript.delta').map((e) => e.delta)).toEqual(GEMINI_STANDIN_TRANSCRIPT);
    const warnings = h.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 'warn' && /dropped model audio/.test(String(l.msg)));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ mimeType: 'audio/pcm;rate=1' });
  });
});
