/**
 * An incremental Server-Sent Events decoder over raw bytes, for model streams read straight
 * from the socket. Lines are split on bytes (LF, CRLF or CR), so a multi-byte character split
 * across network chunks is decoded whole; `data:` lines are joined with LF; a blank line ends
 * an event; comments (`:`) and unknown fields are ignored (WHATWG HTML, "event stream
 * interpretation"). `id` and `retry` are not needed for model streams and are dropped.
 */
export class SseDecoder {
  /** Bytes of a line that has not ended yet. */
  #pending: Uint8Array | undefined;
  /** The previous chunk ended with CR: an LF at the start of this one belongs to it. */
  #afterCR = false;
  readonly #data: string[] = [];
  #event: string | undefined;
  #bytes = 0;

  /**
   * @param onEvent called for every complete event with its data (and `event` field, if any)
   * @param maxEventBytes an event larger than this is a protocol failure (a runaway upstream), not a buffer to grow
   */
  constructor(
    private readonly onEvent: (data: string, event: string | undefined) => void,
    private readonly maxEventBytes = 4 * 1024 * 1024,
  ) {}

  /** Feeds a network chunk; calls `onEvent` for each event it completes. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return; // (an empty read must not forget a CR at the end of the last one)
    let start = 0;
    if (this.#afterCR) {
      this.#afterCR = false;
      if (chunk[0] === LF) start = 1;
    }
    // Most streams end lines with LF alone: then the native indexOf finds them.
    const lfOnly = chunk.indexOf(CR, start) === -1;
    for (let i = start; i < chunk.length; i++) {
      if (lfOnly) {
        i = chunk.indexOf(LF, i);
        if (i === -1) break;
      }
      const byte = chunk[i];
      if (byte !== LF && byte !== CR) continue;
      this.#line(chunk, start, i);
      if (byte === CR) {
        if (i + 1 < chunk.length) {
          if (chunk[i + 1] === LF) i++;
        } else this.#afterCR = true;
      }
      start = i + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#pending = this.#pending ? concat(this.#pending, rest) : rest.slice();
      if (this.#bytes + this.#pending.length > this.maxEventBytes) throw new SseError(`an event exceeds ${this.maxEventBytes} bytes`);
    }
  }

  /** The stream ended: true when it ended on an event boundary (nothing half-received). */
  end(): boolean {
    const clean = this.#pending === undefined && this.#data.length === 0;
    this.#pending = undefined;
    this.#data.length = 0;
    this.#event = undefined;
    return clean;
  }

  #line(chunk: Uint8Array, start: number, end: number): void {
    let text: string;
    let length = end - start;
    if (this.#pending) {
      length += this.#pending.length;
      text = utf8(concat(this.#pending, chunk.subarray(start, end)), 0, length);
      this.#pending = undefined;
    } else {
      text = utf8(chunk, start, end);
    }
    if (text === '') {
      this.#dispatch();
      return;
    }
    this.#bytes += length;
    if (this.#bytes > this.maxEventBytes) throw new SseError(`an event exceeds ${this.maxEventBytes} bytes`);
    if (text.charCodeAt(0) === COLON) return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    const value = colon < 0 ? '' : text.charCodeAt(colon + 1) === SPACE ? text.slice(colon + 2) : text.slice(colon + 1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
  }

  #dispatch(): void {
    this.#bytes = 0;
    if (this.#data.length === 0) {
      this.#event = undefined;
      return;
    }
    const data = this.#data.length === 1 ? this.#data[0]! : this.#data.join('\n');
    const event = this.#event;
    this.#data.length = 0; // the same array for every event: one allocation less per token
    this.#event = undefined;
    this.onEvent(data, event);
  }
}

/** The stream broke the SSE framing in a way that cannot be recovered from. */
export class SseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SseError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

const decoder = new TextDecoder();
interface NodeBufferLike extends Uint8Array {
  utf8Slice(start: number, end: number): string;
}
const NodeBuffer = (globalThis as unknown as { Buffer?: { from(b: ArrayBufferLike, o: number, l: number): NodeBufferLike } }).Buffer;

/**
 * UTF-8 text of bytes [start, end): sliced straight out of a Node Buffer (what a socket
 * delivers), through a Buffer view of other bytes on Node, with TextDecoder elsewhere.
 */
function utf8(bytes: Uint8Array, start: number, end: number): string {
  if (typeof (bytes as NodeBufferLike).utf8Slice === 'function') return (bytes as NodeBufferLike).utf8Slice(start, end);
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset + start, end - start).utf8Slice(0, end - start);
  return decoder.decode(bytes.subarray(start, end));
}
