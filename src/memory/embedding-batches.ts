/** One text as it will be sent upstream. */
export interface EmbeddingInput {
  /** Position in the caller's list. */
  readonly index: number;
  readonly text: string;
  /** UTF-8 size of `text`. */
  readonly bytes: number;
}

const encoder = new TextEncoder();

/**
 * The texts worth sending, each cut to at most `maxInputBytes` UTF-8 bytes on a character
 * boundary. Blank texts are left out: providers reject empty input, and a text without content
 * embeds to the zero vector. The cut bounds what one message can cost upstream: a token covers
 * at least one byte, so `maxInputBytes` also bounds the tokens per input.
 */
export function prepareInputs(texts: readonly string[], maxInputBytes: number): EmbeddingInput[] {
  const buffer = new Uint8Array(maxInputBytes);
  const out: EmbeddingInput[] = [];
  texts.forEach((text, index) => {
    if (!/\S/u.test(text)) return;
    // encodeInto stops before a character that does not fit, so `read` is a safe cut.
    const { read, written } = encoder.encodeInto(text, buffer);
    out.push({ index, text: read === text.length ? text : text.slice(0, read), bytes: written });
  });
  return out;
}

/** Splits `inputs`, in order, into runs of at most `maxItems` inputs and `maxBytes` bytes (a lone larger input gets its own run). */
export function planBatches(inputs: readonly EmbeddingInput[], maxItems: number, maxBytes: number): EmbeddingInput[][] {
  const batches: EmbeddingInput[][] = [];
  let current: EmbeddingInput[] = [];
  let bytes = 0;
  for (const input of inputs) {
    if (current.length > 0 && (current.length === maxItems || bytes + input.bytes > maxBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(input);
    bytes += input.bytes;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
