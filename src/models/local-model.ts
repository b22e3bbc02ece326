import { memoriesIn, type LanguageModel, type ModelCallOptions, type ModelFinish, type ModelMessage, type ModelStream } from './language-model.js';
import { countMessageTokens, splitTokens } from './tokenizer.js';

export interface LocalModelOptions {
  modelId?: string;
  /** The model the client asked for, when the local model answers in its place (no provider configured). */
  requested?: string | undefined;
  /** Whether a real provider is configured (the reply then does not tell the user to configure one). */
  remoteConfigured?: boolean;
  /** Pause before each token, to imitate a remote model's pace. */
  tokenDelayMs: number;
  contextTokens: number;
}

/**
 * The embedded offline development model. It is not a language model: it answers
 * deterministically from what it received (the latest message, what memory recalled and how
 * much history came along), so every part around it can be exercised without keys.
 */
export class LocalModel implements LanguageModel {
  readonly provider = 'local';
  readonly modelId: string;
  readonly contextTokens: number;
  readonly #tokenDelayMs: number;
  readonly #about: ReplyContext;

  constructor(options: LocalModelOptions) {
    this.modelId = options.modelId ?? 'local';
    this.contextTokens = options.contextTokens;
    this.#tokenDelayMs = options.tokenDelayMs;
    this.#about = { requested: options.requested, remoteConfigured: options.remoteConfigured ?? false };
  }

  /**
   * Token by token: one `onText` call per token, `tokenDelayMs` apart (none: all in one turn
   * of the event loop, pausing when asked).
   */
  stream(options: ModelCallOptions, onText: (text: string) => void): ModelStream {
    const { signal } = options;
    // The reply and the input count are worked out here, where no closure below sees the
    // messages: a reply that streams does not keep the conversation it answers.
    const pieces = signal.aborted ? [] : splitTokens(cutAtStop(composeReply(options.messages, this.#about), options.stop));
    const limit = Math.min(options.maxTokens ?? Number.POSITIVE_INFINITY, pieces.length);
    const inputTokens = signal.aborted ? 0 : countMessageTokens(options.messages);
    let paused = false;
    let wake: (() => void) | undefined;
    const done = new Promise<ModelFinish>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let emitted = 0;
      const finish = () => {
        signal.removeEventListener('abort', onAbort);
        resolve({ finishReason: emitted < pieces.length ? 'length' : 'stop', usage: { inputTokens, outputTokens: emitted } });
      };
      const step = () => {
        timer = undefined;
        while (emitted < limit) {
          if (signal.aborted) return;
          if (paused) {
            wake = step;
            return;
          }
          onText(pieces[emitted++]!);
          if (this.#tokenDelayMs > 0 && emitted < limit) {
            timer = setTimeout(step, this.#tokenDelayMs);
            return;
          }
        }
        if (!signal.aborted) finish();
      };
      // Text starts on a later turn, as a remote model's would.
      if (this.#tokenDelayMs > 0) timer = setTimeout(step, this.#tokenDelayMs);
      else nextTurn(step);
    });
    return {
      done,
      pause: () => {
        paused = true;
      },
      resume: () => {
        paused = false;
        const next = wake;
        wake = undefined;
        next?.();
      },
    };
  }
}

/** The reply up to the earliest stop sequence, as a remote model ends there. */
function cutAtStop(reply: string, stop: readonly string[] | undefined): string {
  let end = reply.length;
  for (const s of stop ?? []) {
    const at = s ? reply.indexOf(s) : -1;
    if (at >= 0 && at < end) end = at;
  }
  return reply.slice(0, end);
}

export interface ReplyContext {
  requested: string | undefined;
  remoteConfigured: boolean;
}

export function composeReply(messages: readonly ModelMessage[], about: ReplyContext = { requested: undefined, remoteConfigured: false }): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  const earlier = messages.filter((m) => m.role !== 'system').length - (last ? 1 : 0);
  const recalled = messages.filter((m) => m.role === 'system').flatMap((m) => memoriesIn(m.content));

  const parts = [
    about.requested && about.requested !== 'local'
      ? `This is the offline development model answering in place of "${clip(about.requested, 80)}": no model provider is configured, so this reply is generated locally.`
      : about.remoteConfigured
        ? 'This is the offline development model (you asked for "local"): not a language model, this reply is generated locally.'
        : 'This is the offline development model: no model provider is configured, so this reply is generated locally.',
    last ? `You said: "${clip(last.content, 400)}".` : 'There was no user message.',
    earlier > 0
      ? `This conversation has ${earlier} earlier message${earlier === 1 ? '' : 's'} in context.`
      : 'This is the start of the conversation.',
  ];
  if (recalled.length) parts.push(`I recall: ${recalled.map((r) => `"${clip(r, 120)}"`).join('; ')}.`);
  if (!about.remoteConfigured) parts.push('Set OPENAI_API_KEY, OPENAI_BASE_URL or GEMINI_API_KEY to talk to a real model.');
  return parts.join(' ');
}


function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max)}…`;
}

/** The next turn of the event loop, without setTimeout's 1 ms floor where setImmediate exists (Node). */
const nextTurn: (fn: () => void) => void =
  typeof globalThis.setImmediate === 'function' ? (fn) => void globalThis.setImmediate(fn) : (fn) => void setTimeout(fn, 0);
