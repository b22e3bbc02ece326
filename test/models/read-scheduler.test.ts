import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { responseBytes, type ByteSource } from '../../src/models/byte-source.js';
import { ReadScheduler } from '../../src/models/read-scheduler.js';
import { createNodeFetch } from '../../src/node/node-fetch.js';
import { waitFor } from '../helpers/wait.js';

const STREAMS = 60;
const ROUNDS = 8;
/** Between rounds: longer than a round's reads take (STREAMS x WORK_MS), so each round is one burst. */
const ROUND_MS = 80;
/** CPU a handler burns per network read it is handed (decode, batch, write, in the gateway). */
const WORK_MS = 1;

const burn = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

/** Reads handed to a consumer so far (each costs WORK_MS). */
let handled = 0;

/**
 * The most reads handed over between two runs of the timers phase (what a long pass delays)
 * while `run` goes. Counted, not timed: on a loaded machine the process can lose the core for tens
 * of milliseconds in any pass, while the count only depends on what the scheduler let through.
 */
async function mostReadsInAPass<T>(run: () => Promise<T>): Promise<{ result: T; most: number }> {
  let at = handled;
  let most = 0;
  let on = true;
  const tick = () => {
    most = Math.max(most, handled - at);
    at = handled;
    if (on) setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  try {
    const result = await run();
    tick();
    return { result, most };
  } finally {
    on = false;
  }
}

interface Received {
  text: string;
  reads: number;
  flushes: number;
  ended?: 'end' | 'error';
  /** Text handed over when the consumer paused the source. */
  atPause?: string;
  /** Text handed over when the server cut the stream. */
  beforeCut?: string;
}

/**
 * Streams from a real HTTP server through the Node entry's fetch: every `ROUNDS` round writes one
 * chunk to all `STREAMS` responses in one go, so that their sockets are readable in the same pass.
 */
describe('ReadScheduler with Node response bodies', () => {
  let server: http.Server;
  let url: string;
  const { fetch: nodeFetch, nodeBody } = createNodeFetch({ maxSockets: 1000 });
  let open: { res: http.ServerResponse; id: number }[] = [];
  let chunkBytes = 64;
  const chunk = (id: number, round: number) => `[${id}:${round}]`.padEnd(chunkBytes, '.');
  const expected = (id: number, rounds: number) => Array.from({ length: rounds }, (_, r) => chunk(id, r)).join('');
  /** Pauses of the response streams (the scheduler's and the consumers'). */
  let pauses = 0;
  const countingBody: typeof nodeBody = (response) => {
    const stream = nodeBody(response);
    if (stream) {
      const pause = stream.pause.bind(stream);
      stream.pause = () => {
        pauses++;
        return pause();
      };
    }
    return stream;
  };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      open.push({ res, id: Number(new URL(req.url!, 'http://x').searchParams.get('id')) });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  /** Opens the streams, reads them through `reads` (a handler burning WORK_MS a read), and writes the rounds. */
  async function run(reads: ReadScheduler | undefined, opts: { cut?: number; pauseAt?: number; chunkBytes?: number; endWithLastRound?: boolean } = {}) {
    open = [];
    pauses = 0;
    chunkBytes = opts.chunkBytes ?? 64;
    const got: Received[] = [];
    const sources: ByteSource[] = [];
    const ended: Promise<void>[] = [];
    for (let id = 0; id < STREAMS; id++) {
      const response = await nodeFetch(`${url}/?id=${id}`);
      const r: Received = { text: '', reads: 0, flushes: 0 };
      got.push(r);
      const source = responseBytes(response, { nodeBody: countingBody, reads });
      sources.push(source);
      ended.push(
        new Promise<void>((resolve) =>
          source.start({
            data(bytes) {
              r.text += Buffer.from(bytes).toString();
              r.reads++;
              handled++;
              burn(WORK_MS);
            },
            flush: () => void r.flushes++,
            end: () => resolve(void (r.ended = 'end')),
            error: () => resolve(void (r.ended = 'error')),
          }),
        ),
      );
    }
    await waitFor(() => open.length === STREAMS, 5000, 5);
    open.sort((a, b) => a.id - b.id);
    for (let round = 0; round < ROUNDS; round++) {
      for (const { res, id } of open) res.write(chunk(id, round));
      if (opts.cut !== undefined && round === ROUNDS - 1) {
        got[opts.cut]!.beforeCut = got[opts.cut]!.text;
        open[opts.cut]!.res.socket!.end();
      }
      if (opts.pauseAt !== undefined && round === 0) {
        // The consumer of the last stream pauses once this round's reads are in (some held).
        setImmediate(() => {
          got[opts.pauseAt!]!.atPause = got[opts.pauseAt!]!.text;
          sources[opts.pauseAt!]!.pause();
        });
      }
      if (opts.endWithLastRound && round === ROUNDS - 1) break;
      await new Promise((r) => setTimeout(r, ROUND_MS));
    }
    for (const { res, id } of open) if (id !== opts.cut) res.end();
    if (opts.pauseAt !== undefined) {
      await new Promise((r) => setTimeout(r, 100));
      const pausedText = got[opts.pauseAt]!.text;
      sources[opts.pauseAt]!.resume();
      await Promise.all(ended);
      return { got, pausedText };
    }
    await Promise.all(ended);
    return { got, pausedText: undefined };
  }

  it('bounds the time a pass spends on reads, and every stream gets all its bytes in order', async () => {
    // Control: without a scheduler a round's 60 reads run in one pass.
    const control = await mostReadsInAPass(() => run(undefined));
    expect(control.most).toBeGreaterThanOrEqual(STREAMS * 0.9);
    for (const [id, r] of control.result.got.entries()) expect(r.text).toBe(expected(id, ROUNDS));

    const reads = new ReadScheduler(5);
    const { result, most } = await mostReadsInAPass(() => run(reads));
    // A 5 ms slice of 1 ms reads: five, and the one that crossed it (the clock is read before a read).
    // A turn that crosses it hands over everything its stream held, which on a loaded machine (the
    // rounds keep coming while streams wait) can be a few reads: at most 10 here, against 60 without.
    expect(most).toBeLessThanOrEqual(10);
    for (const [id, r] of result.got.entries()) {
      expect(r.text).toBe(expected(id, ROUNDS));
      expect(r.ended).toBe('end');
    }
    // Held streams were served in later passes, each turn's batch flushed at its end.
    expect(result.got.reduce((n, r) => n + r.flushes, 0)).toBeGreaterThan(0);
    // A pass's worth of tokens is kept without pausing a socket.
    expect(pauses).toBe(0);
    // A stream that ended while it waited ended in its turn; nothing is left in the queue.
    expect(reads.waiting).toBe(0);
  });

  it('streams that end while they wait end in their turn, after what they held, the pass still bounded', async () => {
    const reads = new ReadScheduler(5);
    // The last round's chunks and every stream's end arrive together: most streams are held when their end comes.
    const { result, most } = await mostReadsInAPass(() => run(reads, { endWithLastRound: true }));
    // The slice and the last turn's batch, as above; 60 if the ends handed everything over at once.
    expect(most).toBeLessThanOrEqual(10);
    for (const [id, r] of result.got.entries()) {
      expect(r.text).toBe(expected(id, ROUNDS));
      expect(r.ended).toBe('end');
    }
    expect(reads.waiting).toBe(0);
  });

  it('pauses a waiting stream that holds more than 16 KiB; its turn hands over what its socket buffered since, in order', async () => {
    const reads = new ReadScheduler(3);
    const { got } = await run(reads, { chunkBytes: 20_000 });
    expect(pauses).toBeGreaterThan(0);
    for (const [id, r] of got.entries()) {
      expect(r.text.length).toBe(expected(id, ROUNDS).length);
      expect(r.text === expected(id, ROUNDS)).toBe(true);
      expect(r.ended).toBe('end');
    }
  });

  it('hands over what a stream held before the stream fails', async () => {
    const reads = new ReadScheduler(3);
    const cut = STREAMS - 1;
    const { got } = await run(reads, { cut });
    // The last stream in the round is held (the slice is long gone when its read comes): its
    // socket is destroyed right after its last chunk, and that chunk still arrives before the error.
    expect(got[cut]!.text).toBe(expected(cut, ROUNDS));
    expect(got[cut]!.ended).toBe('error');
    for (let id = 0; id < cut; id++) expect(got[id]!.text).toBe(expected(id, ROUNDS));
  });

  it("keeps a consumer's pause: a held stream's turn hands over what it held and reads no more until resumed", async () => {
    const reads = new ReadScheduler(3);
    const pauseAt = STREAMS - 1;
    const { got, pausedText } = await run(reads, { pauseAt });
    const r = got[pauseAt]!;
    // Paused after round 0: at most round 0's chunk (possibly held at the pause) came after the pause.
    expect(pausedText!.length - r.atPause!.length).toBeLessThanOrEqual(64);
    expect(pausedText!.length).toBeLessThan(expected(pauseAt, ROUNDS).length);
    expect(r.text).toBe(expected(pauseAt, ROUNDS));
    expect(r.ended).toBe('end');
  });

  it("hands over everything a paused consumer's stream read before it failed", async () => {
    // No scheduler: the stream's own buffer, filled while its consumer was paused, is delivered before the error.
    const last = STREAMS - 1;
    const { got } = await run(undefined, { cut: last, pauseAt: last });
    // The later rounds waited in the stream's buffer while the consumer was paused.
    expect(got[last]!.beforeCut!.length).toBeLessThanOrEqual(2 * 64);
    expect(got[last]!.text).toBe(expected(last, ROUNDS));
    expect(got[last]!.ended).toBe('error');
  });

  it('a stream cancelled while it waits leaves the gauge at once, and its turn hands nothing over', async () => {
    const reads = new ReadScheduler(3);
    open = [];
    const sources: ByteSource[] = [];
    const got = [0, 0];
    let check: { before: number; after: number; cancelled: number } | undefined;
    for (let id = 0; id < 2; id++) {
      const source = responseBytes(await nodeFetch(`${url}/?id=${id}`), { nodeBody, reads });
      sources.push(source);
      source.start({
        data() {
          got[id]!++;
          if (check) return;
          // The first read of the pass spends the slice: the other stream's read, in the same pass, is held.
          burn(10);
          const other = 1 - id;
          setImmediate(() => {
            const before = reads.waiting;
            sources[other]!.cancel();
            check = { before, after: reads.waiting, cancelled: other };
          });
        },
        end() {},
        error() {},
      });
    }
    await waitFor(() => open.length === 2, 5000, 5);
    for (const { res } of open) res.write('x'.repeat(64));
    await waitFor(() => check !== undefined, 5000, 5);
    expect(check).toMatchObject({ before: 1, after: 0 });
    // Its turn came (two passes on) and found nothing to hand over.
    await new Promise((r) => setTimeout(r, 20));
    expect(got[check!.cancelled]).toBe(0);
    expect(reads.waiting).toBe(0);
    for (const { res } of open) res.end();
  });

  it('lets everything through with a slice of 0', async () => {
    const reads = new ReadScheduler(0);
    const { most } = await mostReadsInAPass(() => run(reads));
    expect(most).toBeGreaterThanOrEqual(STREAMS * 0.9);
    expect(reads.waiting).toBe(0);
  });
});
