import { describe, expect, it } from 'vitest';
import { SseDecoder, SseError } from '../../src/models/sse-decoder.js';

const bytes = (s: string) => new TextEncoder().encode(s);

function decode(chunks: Uint8Array[]): { events: [string, string | undefined][]; clean: boolean } {
  const events: [string, string | undefined][] = [];
  const d = new SseDecoder((data, event) => events.push([data, event]));
  for (const c of chunks) d.push(c);
  return { events, clean: d.end() };
}

/** Every way to cut `input` into two network chunks. */
function everySplit(input: string): Uint8Array[][] {
  const all = bytes(input);
  return Array.from({ length: all.length + 1 }, (_, i) => [all.slice(0, i), all.slice(i)]);
}

describe('SseDecoder', () => {
  it('decodes events, joins multi-line data, keeps event names, ignores comments and unknown fields', () => {
    const { events, clean } = decode([bytes(': keep-alive\n\ndata: {"a":1}\n\nevent: error\ndata: line one\ndata: line two\nid: 7\nretry: 10\n\ndata:no-space\n\n')]);
    expect(events).toEqual([
      ['{"a":1}', undefined],
      ['line one\nline two', 'error'],
      ['no-space', undefined],
    ]);
    expect(clean).toBe(true);
  });

  it('Node Buffers (what a socket delivers) decode like Uint8Arrays, in any cut, with mixed line ends in one chunk', () => {
    const input = 'data: {"text":"naïve 日本語 🙂"}\n\ndata: a\r\ndata: b\r\rdata: c\n\r\ndata: [DONE]\n\n';
    const expected = decode([bytes(input)]).events;
    expect(expected).toEqual([
      ['{"text":"naïve 日本語 🙂"}', undefined],
      ['a\nb', undefined],
      ['c', undefined],
      ['[DONE]', undefined],
    ]);
    const all = Buffer.from(input);
    for (let i = 0; i <= all.length; i++) {
      for (let j = i; j <= all.length; j += 7) {
        // Buffers that are views into a larger pool, as the socket's are.
        const chunks = [all.subarray(0, i), all.subarray(i, j), all.subarray(j)];
        expect(decode(chunks).events, `cut at ${i}, ${j}`).toEqual(expected);
      }
    }
  });

  it('gives the same events however the bytes are cut, with LF, CRLF or CR line ends', () => {
    for (const nl of ['\n', '\r\n', '\r']) {
      const input = `data: {"text":"naïve 日本語 🙂"}${nl}${nl}data: [DONE]${nl}${nl}`;
      for (const chunks of everySplit(input)) {
        expect(decode(chunks).events).toEqual([
          ['{"text":"naïve 日本語 🙂"}', undefined],
          ['[DONE]', undefined],
        ]);
      }
    }
  });

  it('keeps a multi-byte character split across many one-byte chunks whole', () => {
    const all = bytes('data: 🙂é漢\n\n');
    const { events } = decode(Array.from(all, (b) => new Uint8Array([b])));
    expect(events).toEqual([['🙂é漢', undefined]]);
  });

  it('reports an ending inside an event as not clean', () => {
    expect(decode([bytes('data: {"a":1}\n\ndata: {"half":')]).clean).toBe(false);
    expect(decode([bytes('data: {"a":1}\n')]).clean).toBe(false);
  });

  it('refuses an event larger than its bound instead of growing without one', () => {
    const d = new SseDecoder(() => {}, 1024);
    expect(() => d.push(bytes(`data: ${'x'.repeat(2000)}`))).toThrow(SseError);
    const lines = new SseDecoder(() => {}, 1024);
    expect(() => {
      for (let i = 0; i < 100; i++) lines.push(bytes(`data: ${'y'.repeat(50)}\n`));
    }).toThrow(SseError);
  });
});
