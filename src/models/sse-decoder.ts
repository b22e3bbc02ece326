/**
 * An incremental Server-Sent Events decoder over raw bytes, for model streams read straight
 * from the socket. Lines are split on bytes (LF, CRLF or CR), so a multi-byte character split
 * across network chunks is decoded whole; `data:` lines are joined with LF; a blank line ends
 * an event; comments (`:`) and unknown fields are ignored (WHATWG HTML, "event stream
 * interpretation"). `id` and `retry` are not needed for model streams and are dropped.
 */
export class SseDecoder {
  /**
   * Bytes of a line that has not ended yet, one piece per read, joined once when the line
   * ends: growing one buffer per read would copy a long line again on every read (quadratic).
   */
  readonly #pending: Uint8Array[] = [];
  /** The bytes in `#pending` (0: no line is pending). */
  #pendingBytes = 0;
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
      this.#pending.push(chunk.slice(start));
      this.#pendingBytes += chunk.length - start;
      if (this.#bytes + this.#pendingBytes > this.maxEventBytes) throw new SseError(`an event exceeds ${this.maxEventBytes} bytes`);
    }
  }

  /** The stream ended: true when it ended on an event boundary (nothing half-received). */
  end(): boolean {
    const clean = this.#pendingBytes === 0 && this.#data.length === 0;
    this.#pending.length = 0;
    this.#pendingBytes = 0;
    this.#data.length = 0;
    this.#event = undefined;
    return clean;
  }

  #line(chunk: Uint8Array, start: number, end: number): void {
    let text: string;
    let length = end - start;
    if (this.#pendingBytes !== 0) {
      length += this.#pendingBytes;
      text = utf8(join(this.#pending, length, chunk, start, end), 0, length);
      this.#pending.length = 0;
      this.#pendingBytes = 0;
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

/** The pending pieces of a line followed by its end, bytes [start, end) of `chunk`, in one array of `length` bytes. */
function join(pieces: Uint8Array[], length: number, chunk: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  out.set(chunk.subarray(start, end), offset);
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
