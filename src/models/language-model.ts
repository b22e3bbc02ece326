/** A message as the model sees it. `system` only ever comes from the server. */
export interface ModelMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export type ModelFinishReason = 'stop' | 'length' | 'content-filter' | 'other';

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

export type ModelStreamPart =
  | { type: 'text-delta'; text: string }
  | { type: 'finish'; finishReason: ModelFinishReason; usage: TokenUsage | undefined };

export interface ModelCallOptions {
  messages: ModelMessage[];
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  /** Aborting it must end the upstream request, not just stop reading it. */
  signal: AbortSignal;
}

/**
 * The port every provider implements. `stream` yields text deltas and exactly one `finish`
 * part; failures are thrown as AppError('PROVIDER_ERROR') with a message safe for clients.
 * When `signal` aborts, the iterator ends by throwing the signal's reason.
 */
export interface LanguageModel {
  readonly provider: string;
  readonly modelId: string;
  /** Tokens the model accepts in one request (prompt plus output). */
  readonly contextTokens: number;
  stream(options: ModelCallOptions): AsyncIterable<ModelStreamPart>;
}

/** The system message that carries recalled long-term memory starts with this line, one memory per `- ` line after it. */
export const MEMORY_PREFIX = 'Relevant things the user said before:\n';
