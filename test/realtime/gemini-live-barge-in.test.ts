import { describe, expect, it } from 'vitest';
import { defaultGeminiLiveScript } from '../standins/gemini-live-standin.js';
import { until } from '../standins/ws-standin-server.js';
import { geminiLiveSuite } from './gemini-live-suite.js';

type Json = Record<string, unknown>;

const KEY = 'AIzaBargeInTestKey0123456789abcdefghijkl';
const live = geminiLiveSuite(KEY);
const opened = () => live.open();

describe('Gemini Live: what OpenAI clients send on a barge-in', () => {
  it('conversation.item.truncate and input_audio_buffer.clear are answered as OpenAI answers them, without errors', async () => {
    live.standin.setScript({ ...defaultGeminiLiveScript(), delayMs: 150 });
    const h = await opened();
    h.session.handleClientEvent({ type: 'response.create' });
    await until(() => h.audio[0], 'first audio');
    live.standin.interrupt();
    await h.next('input_audio_buffer.speech_started');
    const item = h.of('response.output_item.added')[0]!.item as { id: string };
    // What openai-realtime-api-beta's RealtimeClient and the realtime console send on speech_started.
    h.session.handleClientEvent({ type: 'conversation.item.truncate', event_id: 'evt_trunc', item_id: item.id, content_index: 0, audio_end_ms: 640 });
    h.session.handleClientEvent({ type: 'input_audio_buffer.clear', event_id: 'evt_clear' });
    const truncated = await h.next('conversation.item.truncated');
    expect(truncated).toMatchObject({ type: 'conversation.item.truncated', item_id: item.id, content_index: 0, audio_end_ms: 640 });
    expect(truncated.event_id).toEqual(expect.any(String));
    await h.next('input_audio_buffer.cleared');
    await new Promise((r) => setTimeout(r, 200));
    expect(h.of('error')).toEqual([]);
    expect(h.errors).toEqual([]);
    expect(h.session.state).toBe('open');
  });

  it('input_audio_buffer.clear forgets the uncommitted audio: a commit right after it is refused as empty', async () => {
    const h = await opened();
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    await until(() => live.standin.audio.length > 0, 'audio upstream');
    h.session.handleClientEvent({ type: 'input_audio_buffer.clear' });
    await h.next('input_audio_buffer.cleared');
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit', event_id: 'evt_commit' });
    await until(() => h.of('error')[0], 'error event');
    expect(h.of('error').map((e) => [(e.error as Json).code, (e.error as Json).event_id])).toEqual([['input_audio_buffer_commit_empty', 'evt_commit']]);
    expect(h.of('input_audio_buffer.committed')).toEqual([]);

    // New audio after the clear is committed as usual.
    h.session.handleClientEvent({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800, 1).toString('base64') });
    h.session.handleClientEvent({ type: 'input_audio_buffer.commit' });
    await h.next('input_audio_buffer.committed');
  });

  it('client events the adapter still cannot carry out are refused with BAD_REQUEST, and the session lives on', async () => {
    const h = await opened();
    h.session.handleClientEvent({ type: 'conversation.item.retrieve', event_id: 'evt_get', item_id: 'item_1' });
    h.session.handleClientEvent({ type: 'conversation.item.delete', event_id: 'evt_del', item_id: 'item_1' });
    await until(() => h.of('error').length >= 2 && h.of('error'), 'two error events');
    expect(h.of('error').map((e) => e.error as Json)).toEqual([
      expect.objectContaining({ type: 'invalid_request_error', code: 'BAD_REQUEST', event_id: 'evt_get', message: expect.stringContaining('conversation.item.retrieve') }),
      expect.objectContaining({ type: 'invalid_request_error', code: 'BAD_REQUEST', event_id: 'evt_del', message: expect.stringContaining('conversation.item.delete') }),
    ]);
    expect(h.session.state).toBe('open');
  });
});
