import { countTokens as countO200k, encode, decode, setMergeCacheSize } from 'gpt-tokenizer/encoding/o200k_base';
import type { ModelMessage } from './language-model.js';

/**
 * Token counts with OpenAI's o200k_base encoding: exact for current OpenAI models, a close
 * estimate for others.
 *
 * BPE costs grow with the square of a word's length, and a client controls the words: one
 * message of 32,000 "é" held the event loop for over a second. So text is counted in
 * segments of at most SEGMENT characters (split at a space where one is near): the cost is
 * linear in the text, a few milliseconds for the largest message, and the count differs from
 * the exact one only where a segment boundary splits a word (by a token or so per segment).
 */
const SEGMENT = 512;

// The encoder caches merges per distinct word; bound what clients can make it keep.
setMergeCacheSize(10_000);

export function countTokens(text: string): number {
  if (text.length <= SEGMENT) return countO200k(text);
  let total = 0;
  for (const segment of segments(text)) total += countO200k(segment);
  return total;
}

/** Text longer than this is not tokenised on the event loop: its count is estimated (see `countTokensBounded`). */
export const EXACT_COUNT_MAX_CHARS = 32_768;

/**
 * A token count whose cost is bounded whatever the text: exact up to EXACT_COUNT_MAX_CHARS,
 * beyond that the text's UTF-8 length, an upper bound (no token is shorter than a byte), so a
 * context budget built on it never overflows. For replies a provider sent no usage for (a
 * client that stopped reading can leave megabytes of one), where exact counting took
 * hundreds of milliseconds of main-thread time.
 */
export function countTokensBounded(text: string): number {
  if (text.length <= EXACT_COUNT_MAX_CHARS) return countTokens(text);
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code >= 0xd800 && code <= 0xdfff ? 2 : 3; // a surrogate pair is 4 bytes, 2 per half
  }
  return bytes;
}

/** Per-message framing overhead of the chat format (role markers and separators). */
export const MESSAGE_OVERHEAD = 4;

export function countMessageTokens(messages: readonly ModelMessage[]): number {
  let total = 2;
  for (const m of messages) total += MESSAGE_OVERHEAD + countTokens(m.content);
  return total;
}

/** Splits text into the strings of its tokens (joined, they give back the text); linear, like `countTokens`. */
export function splitTokens(text: string): string[] {
  const pieces: string[] = [];
  for (const segment of segments(text)) {
    let pending: number[] = [];
    for (const token of encode(segment)) {
      pending.push(token);
      const piece = decode(pending);
      // A multi-byte character can span tokens; wait until it decodes whole.
      if (piece.includes('\uFFFD')) continue;
      pieces.push(piece);
      pending = [];
    }
    if (pending.length) pieces.push(decode(pending));
  }
  return pieces;
}

function* segments(text: string): Generator<string> {
  for (let start = 0; start < text.length; ) {
    let end = Math.min(text.length, start + SEGMENT);
    if (end < text.length) {
      const space = text.lastIndexOf(' ', end);
      if (space > start + SEGMENT / 2) end = space;
      // Never cut a surrogate pair in two.
      else if (isHighSurrogate(text.charCodeAt(end - 1))) end--;
    }
    yield text.slice(start, end);
    start = end;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
