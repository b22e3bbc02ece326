/**
 * The measuring client: one streamed POST, read as SSE with fetch (undici), timed with
 * performance.now(). Frame-safe: bytes are buffered across network chunks and only complete
 * frames (terminated by a blank line) are interpreted.
 */

/** direct: client -> stand-in; relay: client -> bare relay -> stand-in; gateway: client -> gateway -> stand-in. */
export type Mode = 'direct' | 'relay' | 'gateway';

/** Every mode, in the order of the report. */
export const MODES: readonly Mode[] = ['direct', 'relay', 'gateway'];

/** Incremental SSE parser: feed decoded text, get the `data` payload of every completed event. */
export class SseParser {
  #buffer = '';
  #pendingCR = false;

  push(text: string): string[] {
    if (this.#pendingCR) {
      text = `\r${text}`;
      this.#pendingCR = false;
    }
    if (text.endsWith('\r')) {
      // A CR at the end of a chunk may be the first half of a CRLF.
      this.#pendingCR = true;
      text = text.slice(0, -1);
    }
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    this.#buffer += text;

    const out: string[] = [];
    let end: number;
    while ((end = this.#buffer.indexOf('\n\n')) !== -1) {
      const frame = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      const data = frameData(frame);
      if (data !== undefined) out.push(data);
    }
    return out;
  }

  /** Bytes received after the last complete frame (should be empty when a stream ends cleanly). */
  get leftover(): string {
    return this.#buffer;
  }
}

/** Joined `data:` lines of one frame, or `undefined` for a frame without data (comment, keep-alive). */
function frameData(frame: string): string | undefined {
  let data: string | undefined;
  for (const line of frame.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  return data;
}

export interface StreamResult {
  mode: Mode;
  ok: boolean;
  /** Request sent -> first non-empty content event (NaN if none). */
  ttftMs: number;
  /** Request sent -> response body fully read. */
  totalMs: number;
  contentEvents: number;
  error?: string;
}

interface StreamState {
  contentEvents: number;
  /** Stand-in tokens (" w<i>") seen in the content: a gateway may send several in one event. */
  tokens: number;
  done: boolean;
  error: string | undefined;
}

export interface Target {
  url: string;
  body: string;
  headers?: Record<string, string>;
  /** Interprets one event's data; returns true when it carried (non-empty) content. */
  onData(data: string, state: StreamState): boolean;
}

/** The stand-in's tokens are " w<i>" (bench/standin-process.ts). */
export function countTokens(content: string): number {
  let n = 0;
  for (let i = content.indexOf(' w'); i !== -1; i = content.indexOf(' w', i + 2)) n++;
  return n;
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function parseJson(data: string, state: StreamState): Record<string, unknown> | undefined {
  try {
    const rec = asRecord(JSON.parse(data) as unknown);
    if (!rec) state.error ??= `non-object event: ${data.slice(0, 80)}`;
    return rec;
  } catch {
    state.error ??= `invalid JSON event: ${data.slice(0, 80)}`;
    return undefined;
  }
}

/** OpenAI chat-completions stream straight from the stand-in. */
export function directTarget(standinUrl: string): Target {
  return {
    url: `${standinUrl}/chat/completions`,
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'bench' }],
    }),
    onData(data, state) {
      if (data === '[DONE]') {
        state.done = true;
        return false;
      }
      const chunk = parseJson(data, state);
      if (!chunk) return false;
      if (chunk['error'] !== undefined) state.error ??= `error event: ${data.slice(0, 120)}`;
      const choices = chunk['choices'];
      const delta = Array.isArray(choices) ? asRecord(asRecord(choices[0] as unknown)?.['delta']) : undefined;
      const content = delta?.['content'];
      if (typeof content === 'string' && content.length > 0) {
        state.contentEvents++;
        state.tokens += countTokens(content);
        return true;
      }
      return false;
    },
  };
}

/** The gateway's SSE route (`data: {"content":...}` ... `data: {"done":true,...}`). */
export function gatewayTarget(gatewayUrl: string): Target {
  return {
    url: `${gatewayUrl}/api/v2/ai/chat/stream`,
    body: JSON.stringify({ message: 'bench', model: 'gpt-4o-mini' }),
    onData(data, state) {
      const event = parseJson(data, state);
      if (!event) return false;
      if (typeof event['content'] === 'string') {
        state.contentEvents++;
        state.tokens += countTokens(event['content']);
        return event['content'].length > 0;
      }
      if (event['done'] === true) {
        state.done = true;
        return false;
      }
      if (event['error'] !== undefined) state.error ??= `error event: ${String(event['code'])}: ${String(event['error'])}`;
      return false;
    },
  };
}

/** The bare relay (bench/relay-process.ts) speaks the gateway's SSE shape on the same route. */
export function relayTarget(relayUrl: string): Target {
  return gatewayTarget(relayUrl);
}

/**
 * Sends one request and reads the whole stream. Never throws: failures come back as
 * `ok: false` with a short reason. A stream is ok when it ended after its terminator
 * (`[DONE]` / `done:true`) with exactly `expectedTokens` content events and no error.
 */
export async function measureStream(
  mode: Mode,
  target: Target,
  expectedTokens: number,
  timeoutMs: number,
  stopSignal?: AbortSignal,
): Promise<StreamResult> {
  const state: StreamState = { contentEvents: 0, tokens: 0, done: false, error: undefined };
  let ttftMs = Number.NaN;
  const started = performance.now();
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...target.headers },
      body: target.body,
      signal: stopSignal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), stopSignal]) : AbortSignal.timeout(timeoutMs),
    });
    if (res.status !== 200 || !res.body) {
      const text = await res.text().catch(() => '');
      return fail(`HTTP ${res.status}: ${text.slice(0, 120)}`);
    }
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      const now = performance.now();
      if (done) break;
      for (const data of parser.push(decoder.decode(value, { stream: true }))) {
        if (target.onData(data, state) && Number.isNaN(ttftMs)) ttftMs = now - started;
      }
    }
    const totalMs = performance.now() - started;
    parser.push(decoder.decode());
    if (!state.error && !state.done) state.error = 'stream ended without its terminator';
    if (!state.error && parser.leftover.trim() !== '') state.error = 'stream ended inside a frame';
    if (!state.error && state.tokens !== expectedTokens) {
      state.error = `expected ${expectedTokens} tokens, got ${state.tokens} (in ${state.contentEvents} content events)`;
    }
    return { mode, ok: state.error === undefined, ttftMs, totalMs, contentEvents: state.contentEvents, ...(state.error ? { error: state.error } : {}) };
  } catch (err) {
    const name = err instanceof Error ? err.name : '';
    if (stopSignal?.aborted) return fail('run stopped');
    if (name === 'TimeoutError' || name === 'AbortError') return fail(`timeout after ${timeoutMs} ms`);
    return fail(describeError(err));
  }

  function fail(error: string): StreamResult {
    return { mode, ok: false, ttftMs, totalMs: performance.now() - started, contentEvents: state.contentEvents, error };
  }
}

/** `fetch failed` hides the interesting part (ECONNRESET, ECONNREFUSED...) in `cause`. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: unknown }).code;
    return `${err.message}: ${typeof code === 'string' ? code : cause.message}`;
  }
  return err.message;
}
