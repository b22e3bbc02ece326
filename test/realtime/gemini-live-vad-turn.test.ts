/**
 * Gemini Live finding a user turn by itself (activity detection, the client commits nothing):
 * the user item is announced, as OpenAI announces the items its server VAD commits, before any
 * event refers to it by id.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GeminiRealtimeProvider } from '../../src/realtime/gemini-realtime-provider.js';
import { defaultGeminiLiveScript, startGeminiLiveStandin, type GeminiLiveStandin } from '../standins/gemini-live-standin.js';
import { until } from '../standins/ws-standin-server.js';
import { Harness } from './realtime-harness.js';
import { SEED_004_SESSION_CREATE } from './seed-004.js';

const KEY = 'AIzaVadTurnKey0123456789abcdefghijklmno';
let standin: GeminiLiveStandin;
const harnesses: Harness[] = [];

async function opened(): Promise<Harness> {
  const h = new Harness(new GeminiRealtimeProvider({ apiKey: KEY, baseUrl: standin.url, model: 'gemini-2.5-flash-native-audio-preview-09-2025' }));
  harnesses.push(h);
  h.session.handleClientEvent(SEED_004_SESSION_CREATE);
  await h.nth('session.updated', 0);
  return h;
}

beforeAll(async () => {
  standin = await startGeminiLiveStandin({ apiKey: KEY });
});
afterAll(async () => standin.close());
afterEach(() => {
  for (const h of harnesses.splice(0)) h.session.close();
  standin.setScript(defaultGeminiLiveScript());
});

describe('Gemini Live: a turn found by activity detection', () => {
  it('announces the user item (committed, added, done) before its transcription, once', async () => {
    const h = await opened();
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    await until(() => standin.audio.length > 0, 'audio upstream');
    standin.sendMessage({ serverContent: { inputTranscription: { text: 'hello ' } } });
    standin.sendMessage({ serverContent: { inputTranscription: { text: 'there' } } });
    standin.sendMessage({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(480).toString('base64') } }] } } });
    standin.sendMessage({ serverContent: { outputTranscription: { text: 'Hi' } } });
    standin.sendMessage({ serverContent: { generationComplete: true } });
    standin.sendMessage({ serverContent: { turnComplete: true }, usageMetadata: { promptTokenCount: 5, responseTokenCount: 3, totalTokenCount: 8 } });
    await h.next('response.done');

    const completed = h.of('conversation.item.input_audio_transcription.completed')[0]!;
    expect(completed).toMatchObject({ transcript: 'hello there' });
    const itemId = completed.item_id;
    const about = h.events.filter((e) => e.item_id === itemId || (e.item as { id?: string } | undefined)?.id === itemId).map((e) => e.type);
    expect(about).toEqual([
      'input_audio_buffer.committed',
      'conversation.item.added',
      'conversation.item.done',
      'conversation.item.input_audio_transcription.delta',
      'conversation.item.input_audio_transcription.delta',
      'conversation.item.input_audio_transcription.completed',
    ]);
    // The response that follows comes after the user item.
    const added = h.of('conversation.item.added');
    expect(added[0]).toMatchObject({ item: { id: itemId, role: 'user' } });
  });
});
