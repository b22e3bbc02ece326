/** Token usage of a realtime session, from the `usage` of each GA `response.done`. */
export interface RealtimeUsage {
  /** `response.done` events that carried usage. */
  responses: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  inputTextTokens: number;
  inputAudioTokens: number;
  inputImageTokens: number;
  inputCachedTokens: number;
  outputTextTokens: number;
  outputAudioTokens: number;
}

export function emptyUsage(): RealtimeUsage {
  return {
    responses: 0,
    inputTokens: 0,
    outputTokens: 0,
    totalTokens: 0,
    inputTextTokens: 0,
    inputAudioTokens: 0,
    inputImageTokens: 0,
    inputCachedTokens: 0,
    outputTextTokens: 0,
    outputAudioTokens: 0,
  };
}

/** The usage of one `response.done` event, or undefined when it carries none. */
export function usageOfResponseDone(event: { readonly [field: string]: unknown }): RealtimeUsage | undefined {
  const usage = field(event.response, 'usage');
  if (!isRecord(usage)) return undefined;
  const input = field(usage, 'input_token_details');
  const output = field(usage, 'output_token_details');
  const inputTokens = count(usage, 'input_tokens');
  const outputTokens = count(usage, 'output_tokens');
  return {
    responses: 1,
    inputTokens,
    outputTokens,
    totalTokens: count(usage, 'total_tokens') || inputTokens + outputTokens,
    inputTextTokens: count(input, 'text_tokens'),
    inputAudioTokens: count(input, 'audio_tokens'),
    inputImageTokens: count(input, 'image_tokens'),
    inputCachedTokens: count(input, 'cached_tokens'),
    outputTextTokens: count(output, 'text_tokens'),
    outputAudioTokens: count(output, 'audio_tokens'),
  };
}

export function addUsage(a: RealtimeUsage, b: RealtimeUsage): RealtimeUsage {
  const out = emptyUsage();
  for (const key of Object.keys(out) as Array<keyof RealtimeUsage>) out[key] = a[key] + b[key];
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function field(v: unknown, key: string): unknown {
  return isRecord(v) ? v[key] : undefined;
}

/** A non-negative finite count; anything else (missing, negative, a string) counts as 0. */
function count(v: unknown, key: string): number {
  const n = field(v, key);
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}
