import { describe, expect, it } from 'vitest';
import { SseDecoder, SseError } from '../../src/models/sse-decoder.js';

const MiB = 1024 * 1024;

/** `bytes` cut into reads of `size` bytes, each its own Buffer (as a socket delivers them). */
function reads(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(Buffer.from(bytes.subarray(i, i + size)));
  return out;
}

/** CPU time (ms, user + system) of feeding `chunks` to a fresh decoder; checks the one event it must give. */
function cpuMs(chunks: Buffer[], expectedLength: number): number {
  const seen: number[] = [];
  const decoder = new SseDecoder((data) => seen.push(data.length));
  const before = process.cpuUsage();
  for (const chunk of chunks) decoder.push(chunk);
  const used = process.cpuUsage(before);
  expect(seen).toEqual([expectedLength]);
  expect(decoder.end()).toBe(true);
  return (used.user + used.system) / 1000;
}

describe('SseDecoder: long lines in small reads', () => {
  it('a line near the 4 MiB cap costs about as much in 1 KiB reads as in one read (linear, not a copy of the line per read)', { timeout: 30_000 }, () => {
    const line = Buffer.alloc(4 * MiB - 64 * 1024, 0x61);
    line.write('data: ');
    const event = Buffer.concat([line, Buffer.from('\n\n')]);
    const length = line.length - 'data: '.length;
    const oneRead = [event];
    const small = reads(event, 1024);
    // The fewest of a few runs: a loaded machine only ever adds time. Copying the pending line
    // on every read made the small reads cost hundreds of times one read; joined once, about 4 times.
    const best = (chunks: Buffer[]) => Math.min(...[0, 1, 2].map(() => cpuMs(chunks, length)));
    const reference = best(oneRead);
    const inSmallReads = best(small);
    expect(inSmallReads, `${inSmallReads.toFixed(1)} ms in 1 KiB reads, ${reference.toFixed(1)} ms in one read`).toBeLessThan(25 * Math.max(reference, 1));
  });

  it('keeps multi-byte characters and CR, CRLF or LF endings whole when a long line is cut into reads anywhere', () => {
    const text = '日本語🙂é'.repeat(20_000); // 260,000 bytes of 2-, 3- and 4-byte characters
    for (const nl of ['\n', '\r\n', '\r']) {
      const all = Buffer.from(`data: ${text}${nl}data: ${text.slice(0, 99)}${nl}${nl}data: [DONE]${nl}${nl}`);
      // 1,000 and 4,093 bytes cut characters; a cut right after the CR of the first line ending splits a CRLF.
      const crAt = Buffer.byteLength(`data: ${text}\r`);
      for (const chunks of [reads(all, 1000), reads(all, 4093), [all.subarray(0, crAt), all.subarray(crAt)]]) {
        const events: string[] = [];
        const decoder = new SseDecoder((data) => events.push(data));
        for (const chunk of chunks) decoder.push(chunk);
        expect(events.length).toBe(2);
        expect(events[0] === `${text}\n${text.slice(0, 99)}`, `${JSON.stringify(nl)} in ${chunks.length} reads`).toBe(true);
        expect(events[1]).toBe('[DONE]');
        expect(decoder.end()).toBe(true);
      }
    }
  });

  it('counts the pieces of a pending line against the cap: the read that takes an event past it is refused', () => {
    const decoder = new SseDecoder(() => {}, 64 * 1024);
    decoder.push(Buffer.from('data: first line\n'));
    const read = Buffer.alloc(1024, 0x62);
    let accepted = 0;
    expect(() => {
      for (;;) {
        decoder.push(read);
        accepted++;
      }
    }).toThrow(SseError);
    // 16 bytes of the first line, 1 KiB a read: the 64th read is the first past 64 KiB.
    expect(accepted).toBe(63);
    expect(decoder.end()).toBe(false);
  });

  it('starts afresh after a long line: the next events decode on their own and the stream ends clean', () => {
    const events: string[] = [];
    const decoder = new SseDecoder((data) => events.push(data));
    for (const chunk of reads(Buffer.from(`data: ${'x'.repeat(100_000)}\n\n`), 1024)) decoder.push(chunk);
    decoder.push(Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n'));
    expect(events.map((e) => e.length)).toEqual([100_000, 7, 6]);
    expect(events.slice(1)).toEqual(['{"a":1}', '[DONE]']);
    expect(decoder.end()).toBe(true);
  });
});
