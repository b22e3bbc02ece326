import { countTokens as countO200k, encode, decode } from 'gpt-tokenizer/encoding/o200k_base';
import type { ModelMessage } from './language-model.js';

/** Token counts with OpenAI's o200k_base encoding: exact for current OpenAI models, a close estimate for others. */
export function countTokens(text: string): number {
  return countO200k(text);
}

/** Per-message framing overhead of the chat format (role markers and separators). */
const MESSAGE_OVERHEAD = 4;

export function countMessageTokens(messages: readonly ModelMessage[]): number {
  let total = 2;
  for (const m of messages) total += MESSAGE_OVERHEAD + countO200k(m.content);
  return total;
}

/** Splits text into the strings of its tokens (joined, they give back the text). */
export function splitTokens(text: string): string[] {
  const pieces: string[] = [];
  let pending: number[] = [];
  for (const token of encode(text)) {
    pending.push(token);
    const piece = decode(pending);
    // A multi-byte character can span tokens; wait until it decodes whole.
    if (piece.includes('\uFFFD')) continue;
    pieces.push(piece);
    pending = [];
  }
  if (pending.length) pieces.push(decode(pending));
  return pieces;
}
