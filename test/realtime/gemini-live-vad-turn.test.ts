/**
 * Gemini Live finding a user turn by itself (activity detection, the client commits nothing):
 * the user item is announced, as OpenAI announces the items its server VAD commits, before any
 * event refers to it by id.
 */
import { describe, expect, it } from 'vitest';
import { until } from '../standins/ws-standin-server.js';
import { geminiLiveSuite } from './gemini-live-suite.js';

const KEY = 'AIzaVadTurnKey0123456789abcdefghijklmno';
const live = geminiLiveSuite(KEY);
const opened = () => live.open();

describe('Gemini Live: a turn found by activity detection', () => {
  it('announces the user item (committed, added, done) before its transcription, once', async () => {
    const h = await opened();
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    await until(() => live.standin.audio.length > 0, 'audio upstream');
    live.standin.sendMessage({ serverContent: { inputTranscription: { text: 'hello ' } } });
    live.standin.sendMessage({ serverContent: { inputTranscription: { text: 'there' } } });
    live.standin.sendMessage({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(480).toString('base64') } }] } } });
    live.standin.sendMessage({ serverContent: { outputTranscription: { text: 'Hi' } } });
    live.standin.sendMessage({ serverContent: { generationComplete: true } });
    live.standin.sendMessage({ serverContent: { turnComplete: true }, usageMetadata: { promptTokenCount: 5, responseTokenCount: 3, totalTokenCount: 8 } });
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
