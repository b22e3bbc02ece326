/**
 * Translates OpenAI Realtime beta-shaped client events into the GA shape, so that seed 004's
 * client (which sends a beta `session.create` with flat `modalities`, `voice`,
 * `input_audio_format: "pcm16"`, ...) keeps working against a GA upstream. GA-shaped events
 * pass through untouched.
 */

type Json = Record<string, unknown>;

export interface GaTranslation {
  event: Json;
  /** Beta fields that have no GA equivalent and were left out (for the log). */
  dropped: string[];
}

/** GA `session` fields copied as they are when a beta-shaped session also carries them. */
const GA_SESSION_FIELDS = [
  'instructions',
  'output_modalities',
  'tools',
  'tool_choice',
  'max_output_tokens',
  'tracing',
  'truncation',
  'include',
  'prompt',
] as const;

/** Beta session fields handled below; any other field is dropped. */
const BETA_SESSION_FIELDS = new Set([
  'modalities',
  'voice',
  'input_audio_format',
  'output_audio_format',
  'input_audio_transcription',
  'turn_detection',
  'input_audio_noise_reduction',
  'speed',
  'max_response_output_tokens',
  'audio',
  'type',
  ...GA_SESSION_FIELDS,
]);

export function toGaClientEvent(event: Json): GaTranslation {
  const dropped: string[] = [];
  switch (event.type) {
    case 'session.create':
    case 'session.update': {
      const session = isRecord(event.session) ? toGaSession(event.session, dropped) : { type: 'realtime' };
      return { event: { ...event, type: 'session.update', session }, dropped };
    }
    case 'response.create':
      if (!isRecord(event.response)) return { event, dropped };
      return { event: { ...event, response: toGaResponse(event.response, dropped) }, dropped };
    case 'conversation.item.create':
      if (!isRecord(event.item)) return { event, dropped };
      return { event: { ...event, item: toGaItem(event.item) }, dropped };
    default:
      return { event, dropped };
  }
}

/** A session without a `type` is beta-shaped (GA requires `type: "realtime" | "transcription"`). */
export function toGaSession(session: Json, dropped: string[] = []): Json {
  if (typeof session.type === 'string') return session;
  const out: Json = { type: 'realtime' };
  for (const key of GA_SESSION_FIELDS) {
    if (session[key] !== undefined) out[key] = session[key];
  }
  const audio = isRecord(session.audio) ? session.audio : {};
  const input: Json = isRecord(audio.input) ? { ...audio.input } : {};
  const output: Json = isRecord(audio.output) ? { ...audio.output } : {};

  if (Array.isArray(session.modalities)) out.output_modalities = outputModalities(session.modalities);
  if (session.voice !== undefined) output.voice = session.voice;
  if (session.speed !== undefined) output.speed = session.speed;
  if (session.input_audio_format !== undefined) setFormat(input, session.input_audio_format, 'input_audio_format', dropped);
  if (session.output_audio_format !== undefined) setFormat(output, session.output_audio_format, 'output_audio_format', dropped);
  if (session.input_audio_transcription !== undefined) input.transcription = session.input_audio_transcription;
  if (session.turn_detection !== undefined) input.turn_detection = session.turn_detection;
  if (session.input_audio_noise_reduction !== undefined) input.noise_reduction = session.input_audio_noise_reduction;
  if (session.max_response_output_tokens !== undefined && out.max_output_tokens === undefined) {
    out.max_output_tokens = session.max_response_output_tokens;
  }

  const gaAudio: Json = {};
  if (Object.keys(input).length > 0) gaAudio.input = input;
  if (Object.keys(output).length > 0) gaAudio.output = output;
  if (Object.keys(gaAudio).length > 0) out.audio = gaAudio;

  for (const key of Object.keys(session)) {
    if (!BETA_SESSION_FIELDS.has(key)) dropped.push(`session.${key}`);
  }
  return out;
}

function toGaResponse(response: Json, dropped: string[]): Json {
  const beta = ['modalities', 'voice', 'output_audio_format', 'max_response_output_tokens', 'temperature'];
  if (!beta.some((k) => response[k] !== undefined)) return response;
  const { modalities, voice, output_audio_format, max_response_output_tokens, temperature, ...rest } = response;
  const out: Json = { ...rest };
  if (Array.isArray(modalities) && out.output_modalities === undefined) out.output_modalities = outputModalities(modalities);
  const audio = isRecord(out.audio) ? { ...out.audio } : {};
  const output: Json = isRecord(audio.output) ? { ...audio.output } : {};
  if (voice !== undefined) output.voice = voice;
  if (output_audio_format !== undefined) setFormat(output, output_audio_format, 'response.output_audio_format', dropped);
  if (Object.keys(output).length > 0) out.audio = { ...audio, output };
  if (max_response_output_tokens !== undefined && out.max_output_tokens === undefined) out.max_output_tokens = max_response_output_tokens;
  if (temperature !== undefined) dropped.push('response.temperature');
  return out;
}

/** Beta message content used `text` for both roles; GA wants `input_text` (user, system) or `output_text` (assistant). */
function toGaItem(item: Json): Json {
  if (item.type !== 'message' || !Array.isArray(item.content)) return item;
  const textType = item.role === 'assistant' ? 'output_text' : 'input_text';
  if (!item.content.some((part) => isRecord(part) && part.type === 'text')) return item;
  return {
    ...item,
    content: item.content.map((part: unknown) => (isRecord(part) && part.type === 'text' ? { ...part, type: textType } : part)),
  };
}

/** GA produces either audio (with its transcript) or text, never both at once. */
function outputModalities(modalities: unknown[]): string[] {
  return modalities.includes('audio') ? ['audio'] : ['text'];
}

const BETA_FORMATS: Record<string, Json> = {
  pcm16: { type: 'audio/pcm', rate: 24000 },
  g711_ulaw: { type: 'audio/pcmu' },
  g711_alaw: { type: 'audio/pcma' },
};

function setFormat(target: Json, value: unknown, name: string, dropped: string[]): void {
  if (typeof value === 'string') {
    const format = BETA_FORMATS[value];
    if (format) target.format = { ...format };
    else dropped.push(name);
    return;
  }
  if (isRecord(value)) target.format = value;
  else dropped.push(name);
}

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
