/**
 * GA `session` → Gemini Live `setup` (LiveConnectConfig). Gemini fixes its configuration when
 * the connection opens, so this runs at connect time, and again when a reconfiguring
 * `session.update` makes the adapter reconnect.
 */
import type { ActivityHandling, AudioTranscriptionConfig, LiveConnectConfig, Modality } from '@google/genai';
import type { RealtimeAudioInputTurnDetection, RealtimeSessionCreateRequest } from 'openai/resources/realtime/realtime';

export type GaSession = RealtimeSessionCreateRequest;

export interface GeminiSetup {
  config: LiveConnectConfig;
  /** The GA session actually in effect: what `session.created` / `session.updated` report. */
  effective: GaSession;
  /** `turn_detection: null`: the client marks turns (commit), so activity is signalled explicitly. */
  manualTurns: boolean;
  /** Requested settings Gemini cannot honour and the client must hear about (error events). */
  refused: string[];
  /** Requested settings without a Gemini equivalent, left out (logged). */
  ignored: string[];
}

export interface GeminiSetupOptions {
  model: string;
  /** Gemini prebuilt voice used when the client asks for none or for an OpenAI voice name. */
  defaultVoice?: string | undefined;
}

/** OpenAI's voice names; Gemini has other voices (Puck, Kore, ...), so these fall back to the default. */
const OPENAI_VOICES = new Set(['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar', 'fable', 'onyx', 'nova']);

const PCM_24K = { type: 'audio/pcm', rate: 24000 } as const;

type Json = Record<string, unknown>;

/** Applies a GA `session.update` payload: top-level fields replace, `audio.input` / `audio.output` merge field by field. */
export function mergeGaSession(base: GaSession, update: Json): GaSession {
  const out: Json = { ...base, ...update, type: 'realtime' };
  const baseAudio = (base.audio ?? {}) as Json;
  const updAudio = isRecord(update.audio) ? update.audio : undefined;
  if (updAudio) {
    out.audio = {
      input: { ...asRecord(baseAudio.input), ...asRecord(updAudio.input) },
      output: { ...asRecord(baseAudio.output), ...asRecord(updAudio.output) },
    };
  } else {
    out.audio = base.audio;
  }
  return out as unknown as GaSession;
}

export function geminiSetup(session: GaSession, options: GeminiSetupOptions): GeminiSetup {
  const refused: string[] = [];
  const ignored: string[] = [];
  const config: LiveConnectConfig = {};
  const s = session as unknown as Json;
  const audio = asRecord(s.audio);
  const input = asRecord(audio.input);
  const output = asRecord(audio.output);

  const textOnly = Array.isArray(s.output_modalities) && s.output_modalities.length > 0 && !s.output_modalities.includes('audio');
  // The SDK's string enums, by value: this module does not load the SDK (see models/genai-sdk.ts).
  config.responseModalities = [(textOnly ? 'TEXT' : 'AUDIO') as Modality];
  if (!textOnly) config.outputAudioTranscription = {};

  if (typeof s.instructions === 'string' && s.instructions.length > 0) config.systemInstruction = s.instructions;
  if (typeof s.max_output_tokens === 'number' && s.max_output_tokens > 0) config.maxOutputTokens = Math.floor(s.max_output_tokens);

  const voice = geminiVoice(output.voice, options.defaultVoice, ignored);
  if (voice) config.speechConfig = { voiceConfig: { prebuiltVoiceConfig: { voiceName: voice } } };

  if (!isPcm24k(input.format)) refused.push('audio.input.format (only audio/pcm at 24000 Hz)');
  if (!isPcm24k(output.format)) refused.push('audio.output.format (only audio/pcm at 24000 Hz)');

  let transcription: Json | null = null;
  if (isRecord(input.transcription)) {
    transcription = input.transcription;
    const cfg: AudioTranscriptionConfig = {};
    if (typeof transcription.language === 'string' && transcription.language) cfg.languageCodes = [transcription.language];
    config.inputAudioTranscription = cfg;
  }

  const turn = turnDetection(input.turn_detection, config, ignored);

  // Function calls are not relayed from Gemini (no functionDeclarations in the setup, no
  // function_call items): a client that configured tools would wait for calls that never come,
  // so it is told. No tools (an empty list), or a choice that needs none, is fine.
  const tools = s.tools;
  if (tools !== undefined && tools !== null && !(Array.isArray(tools) && tools.length === 0)) {
    refused.push('tools (function calling is not available with Gemini Live on this gateway)');
  } else if (s.tool_choice !== undefined && s.tool_choice !== null && s.tool_choice !== 'none' && s.tool_choice !== 'auto') {
    refused.push('tool_choice (no tools: function calling is not available with Gemini Live on this gateway)');
  }
  for (const key of ['tracing', 'truncation', 'prompt', 'include']) {
    const v = s[key];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) ignored.push(key);
  }
  for (const key of ['noise_reduction']) if (input[key] !== undefined && input[key] !== null) ignored.push(`audio.input.${key}`);
  if (output.speed !== undefined) ignored.push('audio.output.speed');

  const effective: GaSession = {
    type: 'realtime',
    model: options.model,
    output_modalities: [textOnly ? 'text' : 'audio'],
    ...(typeof config.systemInstruction === 'string' ? { instructions: config.systemInstruction } : {}),
    ...(config.maxOutputTokens ? { max_output_tokens: config.maxOutputTokens } : {}),
    audio: {
      input: {
        format: { ...PCM_24K },
        transcription: transcription as GaInputTranscription,
        turn_detection: turn.effective,
      },
      output: { format: { ...PCM_24K }, ...(voice ? { voice } : {}) },
    },
  };
  return { config, effective, manualTurns: turn.manual, refused, ignored };
}

type GaInputTranscription = NonNullable<NonNullable<GaSession['audio']>['input']>['transcription'];

function turnDetection(
  value: unknown,
  config: LiveConnectConfig,
  ignored: string[],
): { manual: boolean; effective: RealtimeAudioInputTurnDetection | null } {
  if (value === null) {
    config.realtimeInputConfig = { automaticActivityDetection: { disabled: true } };
    return { manual: true, effective: null };
  }
  const td = asRecord(value);
  const type = td.type === 'semantic_vad' ? 'semantic_vad' : 'server_vad';
  const detection: NonNullable<NonNullable<LiveConnectConfig['realtimeInputConfig']>['automaticActivityDetection']> = { disabled: false };
  const effective: Json = { type };
  if (type === 'server_vad') {
    if (isCount(td.prefix_padding_ms)) detection.prefixPaddingMs = effective.prefix_padding_ms = td.prefix_padding_ms;
    if (isCount(td.silence_duration_ms)) detection.silenceDurationMs = effective.silence_duration_ms = td.silence_duration_ms;
    if (td.threshold !== undefined) ignored.push('audio.input.turn_detection.threshold');
    if (td.idle_timeout_ms !== undefined && td.idle_timeout_ms !== null) ignored.push('audio.input.turn_detection.idle_timeout_ms');
  } else if (td.eagerness !== undefined) {
    ignored.push('audio.input.turn_detection.eagerness');
  }
  if (td.create_response === false) ignored.push('audio.input.turn_detection.create_response (Gemini always answers a detected turn)');
  const realtimeInputConfig: NonNullable<LiveConnectConfig['realtimeInputConfig']> = { automaticActivityDetection: detection };
  if (td.interrupt_response === false) {
    realtimeInputConfig.activityHandling = 'NO_INTERRUPTION' as ActivityHandling;
    effective.interrupt_response = false;
  }
  config.realtimeInputConfig = realtimeInputConfig;
  return { manual: false, effective: effective as unknown as RealtimeAudioInputTurnDetection };
}

function geminiVoice(requested: unknown, fallback: string | undefined, ignored: string[]): string | undefined {
  if (typeof requested !== 'string' || requested.length === 0) return fallback;
  if (OPENAI_VOICES.has(requested.toLowerCase())) {
    ignored.push(`audio.output.voice "${requested}" (an OpenAI voice)`);
    return fallback;
  }
  return requested;
}

function isPcm24k(format: unknown): boolean {
  if (format === undefined || format === null) return true;
  const f = asRecord(format);
  return (f.type === undefined || f.type === 'audio/pcm') && (f.rate === undefined || f.rate === 24000);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asRecord(v: unknown): Json {
  return isRecord(v) ? v : {};
}
