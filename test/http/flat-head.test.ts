import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { flattenHead, lastFlattenedHeadByte } from '../../src/http/flat-head.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A response head like the gateway's: about twenty headers (security headers, cookie, rate limits). */
function headers(i: number): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'text/event-stream', 'x-request-id': `req-${i}` };
  for (let n = 0; n < 18; n++) h[`x-header-${n}`] = `value-${n}-${i}`;
  return h;
}

/** Heap bytes held per response by `count` responses whose heads were written (and flattened or not). */
function heldPerResponse(count: number, flatten: boolean): number {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: ServerResponse[] = [];
  for (let i = 0; i < count; i++) {
    const res = new ServerResponse(new IncomingMessage(new Socket()));
    res.writeHead(200, headers(i));
    if (flatten) flattenHead(res);
    kept.push(res);
  }
  gc();
  gc();
  const held = (process.memoryUsage().heapUsed - before) / count;
  expect(kept).toHaveLength(count);
  return held;
}

describe('flattenHead', () => {
  it('a written head is kept as one string, not as the pieces Node appended (over 1 KB less per response)', () => {
    heldPerResponse(200, true); // warm-up: the code and its feedback are not measured
    heldPerResponse(200, false);
    const pieces = heldPerResponse(3000, false);
    const flat = heldPerResponse(3000, true);
    expect(pieces - flat).toBeGreaterThan(1024);
  });

  it('leaves the head as it was, and does nothing to a message without one', () => {
    const res = new ServerResponse(new IncomingMessage(new Socket()));
    flattenHead(res); // no head yet
    expect(res.headersSent).toBe(false);
    res.writeHead(200, headers(1));
    const head = (res as unknown as { _header: string })._header;
    const copy = `${head}`;
    flattenHead(res);
    expect((res as unknown as { _header: string })._header).toBe(copy);
    expect(lastFlattenedHeadByte()).toBe('H'.charCodeAt(0));
    flattenHead({});
  });
});
