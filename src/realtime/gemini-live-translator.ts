/**
 * Gemini Live server messages → OpenAI Realtime GA server events. Gemini has turns, not
 * responses: a response (and its output item and content part) is synthesized at the first
 * model output of a turn and completed at `turnComplete`, with ids generated here.
 */
import type { LiveServerContent, LiveServerMessage, ModalityTokenCount, Part, UsageMetadata } from '@google/genai';
import type * as GA from 'openai/resources/realtime/realtime';
import type { Logger } from '../logger.js';
import { GA_PCM_RATE, pcmRateOf, resamplePcm16 } from './pcm16.js';
import { newId } from './realtime-ids.js';
import type { RealtimeServerEvent } from './realtime-provider.js';
import type { GaSession } from './gemini-live-setup.js';

interface ResponseState {
  id: string;
  itemId: string;
  transcript: string;
  text: string;
  partsDone: boolean;
}

type Status = 'completed' | 'cancelled' | 'incomplete';

export interface GeminiLiveTranslatorOptions {
  logger: Logger;
  emit(event: RealtimeServerEvent): void;
  /** A `response.done` that is counted for the session's usage but not sent (see cancelResponse). */
  unreportedUsage(event: RealtimeServerEvent): void;
  /** Milliseconds of client audio sent so far (for `audio_start_ms`, transcription duration). */
  inputAudioMs(): number;
}

export class GeminiLiveTranslator {
  /** Output modality of the session in effect (`audio` carries a transcript, `text` does not). */
  outputModality: 'audio' | 'text' = 'audio';
  private response: ResponseState | undefined;
  /** Output of the current turn is dropped after an interruption or a client cancel. */
  /**
   * `pendingDone`: the response whose `response.done` waits for `turnComplete` (an interruption);
   * `usageOwed`: the response already reported done whose usage comes with `turnComplete` (a cancel).
   */
  private turnCancelled:
    | { reason: 'turn_detected' | 'client_cancelled'; pendingDone: ResponseState | undefined; usageOwed?: ResponseState }
    | undefined;
  private turnUsage: UsageMetadata | undefined;
  /** Model audio that cannot be played is logged once per session, not once per part. */
  private unplayableAudioLogged = false;
  private lastItemId: string | null = null;
  /** The user input item; `announced` once the client was told of it (`conversation.item.added`). */
  private input: { itemId: string; startMs: number; transcript: string; done: boolean; announced: boolean } | undefined;

  constructor(private readonly options: GeminiLiveTranslatorOptions) {}

  sessionEvent(type: 'session.created' | 'session.updated', session: GaSession): void {
    this.emit({ type, event_id: newId('event'), session });
  }

  /** A GA `error` event, as the OpenAI server would send it for a refused client event. */
  error(code: string, message: string, clientEventId?: string, type = 'invalid_request_error', param: string | null = null): void {
    this.emit({ type: 'error', event_id: newId('event'), error: { type, code, message, param, event_id: clientEventId ?? null } });
  }

  /**
   * A client event or setting this adapter does not carry out, refused with the gateway's code
   * for refused client events (BAD_REQUEST, as the session's own refusals): it is the request,
   * not the provider, that failed.
   */
  refuse(message: string, clientEventId?: string, param: string | null = null): void {
    this.error('BAD_REQUEST', message, clientEventId, 'invalid_request_error', param);
  }

  /** A server event answering a client event the adapter handles itself (Gemini has no counterpart). */
  reply(event: RealtimeServerEvent): void {
    this.emit({ ...event, event_id: newId('event') } as unknown as GA.RealtimeServerEvent);
  }

  /** The user input item audio is currently going into (created on first use). */
  inputItemId(): string {
    if (!this.input || this.input.done) {
      this.input = { itemId: newId('item'), startMs: this.options.inputAudioMs(), transcript: '', done: false, announced: false };
    }
    return this.input.itemId;
  }

  /**
   * `input_audio_buffer.commit`, or a turn Gemini's activity detection found in the audio (its
   * transcription comes first): the input item is complete; acknowledge it the GA way, once.
   */
  committed(): void {
    const itemId = this.inputItemId();
    const previous = this.lastItemId;
    this.emit({ type: 'input_audio_buffer.committed', event_id: newId('event'), item_id: itemId, previous_item_id: previous });
    // Announced already (its transcription came before the client's commit): acknowledged only.
    if (this.input!.announced) return;
    this.input!.announced = true;
    this.lastItemId = itemId;
    const item: GA.ConversationItem = {
      id: itemId,
      object: 'realtime.item',
      type: 'message',
      role: 'user',
      status: 'completed',
      content: [{ type: 'input_audio' }],
    };
    this.emit({ type: 'conversation.item.added', event_id: newId('event'), previous_item_id: previous, item });
    this.emit({ type: 'conversation.item.done', event_id: newId('event'), previous_item_id: previous, item });
  }

  /** `conversation.item.create` was forwarded: acknowledge the item. */
  itemCreated(item: GA.ConversationItem): void {
    const previous = this.lastItemId;
    this.lastItemId = item.id ?? null;
    this.emit({ type: 'conversation.item.added', event_id: newId('event'), previous_item_id: previous, item });
    this.emit({ type: 'conversation.item.done', event_id: newId('event'), previous_item_id: previous, item });
  }

  /**
   * `response.cancel`: ends the response now (a cancelled `response.done`, as OpenAI answers at
   * once) and drops the rest of the turn's output. Gemini cannot stop a turn: it generates (and
   * bills) it to the end and reports the usage only with `turnComplete`, after the client was
   * told the response is done; that usage is then counted for the session through
   * `unreportedUsage`, not sent. False when no response is active.
   */
  cancelResponse(): boolean {
    if (this.turnCancelled || !this.response) return false;
    const r = this.response;
    this.response = undefined;
    this.turnCancelled = { reason: 'client_cancelled', pendingDone: undefined, usageOwed: r };
    this.finish(r, 'cancelled', 'client_cancelled', undefined);
    return true;
  }

  handle(msg: LiveServerMessage): void {
    if (msg.usageMetadata) this.turnUsage = msg.usageMetadata;
    if (msg.serverContent) this.content(msg.serverContent);
    if (msg.goAway) {
      const left = msg.goAway.timeLeft ? ` in ${msg.goAway.timeLeft}` : ' soon';
      this.error('session_expiring', `The realtime provider will end this session${left}`, undefined, 'server_error');
    }
  }

  private content(c: LiveServerContent): void {
    if (c.interrupted) this.interrupted();
    if (c.inputTranscription?.text) this.inputTranscript(c.inputTranscription.text);
    if (c.inputTranscription?.finished) this.inputCompleted();
    for (const part of c.modelTurn?.parts ?? []) this.part(part);
    if (c.outputTranscription?.text) this.outputTranscript(c.outputTranscription.text);
    if (c.generationComplete && this.response) this.finishParts(this.response);
    if (c.turnComplete) this.turnComplete();
  }

  private part(part: Part): void {
    if (part.thought) return;
    const data = part.inlineData?.data;
    if (data && part.inlineData?.mimeType?.startsWith('audio/')) {
      const rate = pcmRateOf(part.inlineData.mimeType);
      if (rate === undefined) {
        this.unplayableAudio(part.inlineData.mimeType);
        return;
      }
      const r = this.ensureResponse();
      if (!r) return;
      const delta = rate === GA_PCM_RATE ? data : resamplePcm16(Buffer.from(data, 'base64'), rate, GA_PCM_RATE).toString('base64');
      this.emit({ type: 'response.output_audio.delta', event_id: newId('event'), ...this.where(r), delta });
      return;
    }
    if (typeof part.text === 'string' && part.text.length > 0) {
      const r = this.ensureResponse();
      if (!r) return;
      r.text += part.text;
      this.emit({ type: 'response.output_text.delta', event_id: newId('event'), ...this.where(r), delta: part.text });
    }
  }

  /** Not PCM, or PCM at a rate no real model sends: nothing a GA client could play, so it is dropped. */
  private unplayableAudio(mimeType: string): void {
    if (this.unplayableAudioLogged) return;
    this.unplayableAudioLogged = true;
    this.options.logger.warn({ mimeType: mimeType.slice(0, 100) }, 'gemini realtime: dropped model audio in a format a client cannot play');
  }

  private outputTranscript(text: string): void {
    const r = this.ensureResponse();
    if (!r) return;
    r.transcript += text;
    this.emit({ type: 'response.output_audio_transcript.delta', event_id: newId('event'), ...this.where(r), delta: text });
  }

  private inputTranscript(text: string): void {
    const itemId = this.inputItemId();
    // A turn Gemini found by itself (server VAD): the client commits nothing, so the item it is
    // about to hear of is announced first, as OpenAI announces the items its VAD commits.
    if (!this.input!.announced) this.committed();
    this.input!.transcript += text;
    this.emit({
      type: 'conversation.item.input_audio_transcription.delta',
      event_id: newId('event'),
      item_id: itemId,
      content_index: 0,
      delta: text,
    });
  }

  private inputCompleted(): void {
    const input = this.input;
    if (!input || input.done || input.transcript.length === 0) return;
    input.done = true;
    const seconds = Math.max(0, (this.options.inputAudioMs() - input.startMs) / 1000);
    this.emit({
      type: 'conversation.item.input_audio_transcription.completed',
      event_id: newId('event'),
      item_id: input.itemId,
      content_index: 0,
      transcript: input.transcript,
      usage: { type: 'duration', seconds },
    });
  }

  /** Gemini's barge-in: the user started talking over the model. */
  private interrupted(): void {
    const r = this.response;
    this.response = undefined;
    this.inputCompleted();
    this.emit({
      type: 'input_audio_buffer.speech_started',
      event_id: newId('event'),
      audio_start_ms: Math.round(this.options.inputAudioMs()),
      item_id: this.inputItemId(),
    });
    // With no response active (the user spoke while the model was silent) there is no turn to
    // cancel, and no turnComplete need follow to end the cancellation: nothing is marked.
    if (!r || this.turnCancelled) return;
    // The cancelled response is reported at turnComplete, which follows at once and carries the usage.
    this.turnCancelled = { reason: 'turn_detected', pendingDone: r };
  }

  private turnComplete(): void {
    this.inputCompleted();
    const usage = this.turnUsage;
    this.turnUsage = undefined;
    const cancelled = this.turnCancelled;
    this.turnCancelled = undefined;
    if (cancelled?.pendingDone) this.finish(cancelled.pendingDone, 'cancelled', cancelled.reason, usage);
    if (cancelled?.usageOwed && usage) {
      const r = cancelled.usageOwed;
      this.options.unreportedUsage({
        type: 'response.done',
        event_id: newId('event'),
        response: { id: r.id, object: 'realtime.response', status: 'cancelled', usage: gaUsage(usage) },
      } as unknown as RealtimeServerEvent);
    }
    const r = this.response;
    this.response = undefined;
    if (r) this.finish(r, 'completed', undefined, usage);
  }

  private ensureResponse(): ResponseState | undefined {
    if (this.turnCancelled) return undefined;
    if (this.response) return this.response;
    const r: ResponseState = { id: newId('resp'), itemId: newId('item'), transcript: '', text: '', partsDone: false };
    this.response = r;
    this.inputCompleted();
    const previous = this.lastItemId;
    this.lastItemId = r.itemId;
    this.emit({
      type: 'response.created',
      event_id: newId('event'),
      response: {
        id: r.id,
        object: 'realtime.response',
        status: 'in_progress',
        output: [],
        output_modalities: [this.outputModality],
      },
    });
    const item = this.item(r, 'in_progress', false);
    this.emit({ type: 'response.output_item.added', event_id: newId('event'), response_id: r.id, output_index: 0, item });
    this.emit({ type: 'conversation.item.added', event_id: newId('event'), previous_item_id: previous, item });
    this.emit({
      type: 'response.content_part.added',
      event_id: newId('event'),
      ...this.where(r),
      part: this.outputModality === 'audio' ? { type: 'audio', transcript: '' } : { type: 'text', text: '' },
    });
    return r;
  }

  /** The `*.done` events of the single output item (OpenAI's order: audio, transcript, part, item). */
  private finishParts(r: ResponseState): void {
    if (r.partsDone) return;
    r.partsDone = true;
    const where = this.where(r);
    if (this.outputModality === 'audio') {
      this.emit({ type: 'response.output_audio.done', event_id: newId('event'), ...where });
      this.emit({ type: 'response.output_audio_transcript.done', event_id: newId('event'), ...where, transcript: r.transcript });
      this.emit({ type: 'response.content_part.done', event_id: newId('event'), ...where, part: { type: 'audio', transcript: r.transcript } });
    } else {
      this.emit({ type: 'response.output_text.done', event_id: newId('event'), ...where, text: r.text });
      this.emit({ type: 'response.content_part.done', event_id: newId('event'), ...where, part: { type: 'text', text: r.text } });
    }
    const item = this.item(r, 'completed', true);
    this.emit({ type: 'response.output_item.done', event_id: newId('event'), response_id: r.id, output_index: 0, item });
    this.emit({ type: 'conversation.item.done', event_id: newId('event'), item });
  }

  private finish(r: ResponseState, status: Status, reason: GA.RealtimeResponseStatus['reason'], usage: UsageMetadata | undefined): void {
    this.finishParts(r);
    this.emit({
      type: 'response.done',
      event_id: newId('event'),
      response: {
        id: r.id,
        object: 'realtime.response',
        status,
        status_details: { type: status, ...(reason ? { reason } : {}) },
        output: [this.item(r, status === 'completed' ? 'completed' : 'incomplete', true)],
        output_modalities: [this.outputModality],
        ...(usage ? { usage: gaUsage(usage) } : {}),
      },
    });
  }

  private item(r: ResponseState, status: 'in_progress' | 'completed' | 'incomplete', withContent: boolean): GA.ConversationItem {
    const content: GA.RealtimeConversationItemAssistantMessage.Content[] = !withContent
      ? []
      : this.outputModality === 'audio'
        ? [{ type: 'output_audio', transcript: r.transcript }]
        : [{ type: 'output_text', text: r.text }];
    return { id: r.itemId, object: 'realtime.item', type: 'message', role: 'assistant', status, content };
  }

  private where(r: ResponseState): { response_id: string; item_id: string; output_index: number; content_index: number } {
    return { response_id: r.id, item_id: r.itemId, output_index: 0, content_index: 0 };
  }

  private emit(event: GA.RealtimeServerEvent): void {
    this.options.emit(event as unknown as RealtimeServerEvent);
  }
}

/** Gemini `usageMetadata` → GA `response.done` usage (token counts by modality). */
export function gaUsage(u: UsageMetadata): GA.RealtimeResponseUsage {
  const input = byModality(u.promptTokensDetails);
  const output = byModality(u.responseTokensDetails);
  const inputTokens = u.promptTokenCount ?? input.total;
  const outputTokens = (u.responseTokenCount ?? output.total) + (u.thoughtsTokenCount ?? 0);
  return {
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    total_tokens: u.totalTokenCount ?? inputTokens + outputTokens,
    input_token_details: {
      text_tokens: input.TEXT,
      audio_tokens: input.AUDIO,
      image_tokens: input.IMAGE + input.VIDEO,
      cached_tokens: u.cachedContentTokenCount ?? 0,
    },
    output_token_details: { text_tokens: output.TEXT, audio_tokens: output.AUDIO },
  };
}

function byModality(details: ModalityTokenCount[] | undefined): Record<'TEXT' | 'AUDIO' | 'IMAGE' | 'VIDEO', number> & { total: number } {
  const out = { TEXT: 0, AUDIO: 0, IMAGE: 0, VIDEO: 0, total: 0 };
  for (const d of details ?? []) {
    const n = d.tokenCount ?? 0;
    out.total += n;
    if (d.modality === 'TEXT' || d.modality === 'AUDIO' || d.modality === 'IMAGE' || d.modality === 'VIDEO') out[d.modality] += n;
  }
  return out;
}
