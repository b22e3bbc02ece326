import { describe, expect, it } from 'vitest';
import { InProcessTurnStreams, parseEventId } from '../../src/chat/turn-streams.js';
import { AppError } from '../../src/errors.js';
import { postChat, readSse } from '../helpers/sse.js';
import { startGateway } from '../helpers/gateway.js';

const end = { type: 'end' as const, conversationId: 'c', messageId: 'm', content: 'ab', finishReason: 'stop' as const, usage: undefined, model: 'local' };

describe('in-process turn logs', () => {
  it('replays after a sequence number, then follows live to the end', async () => {
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 1_000_000 });
    const log = streams.open('o/c');
    log.append({ type: 'delta', text: 'a' });
    const seen: number[] = [];
    const following = (async () => {
      for await (const { seq } of streams.follow('o/c', log.turnId, 1, new AbortController().signal)) seen.push(seq);
    })();
    log.append({ type: 'delta', text: 'b' });
    log.append(end);
    await following;
    expect(seen).toEqual([2, 3]);
    expect(await streams.latest('o/c')).toEqual({ turnId: log.turnId, ended: true });
    expect(await streams.extent('o/c', log.turnId)).toEqual({ lastSeq: 3, ended: true });
    expect(await streams.extent('o/c', 'unknown')).toBeUndefined();
    expect(parseEventId(`${log.turnId}-3`)).toEqual({ turnId: log.turnId, seq: 3 });
    expect(parseEventId('garbage')).toBeUndefined();
  });

  it('an ended turn is kept packed: every event replays as it was recorded, from any point, and the buffer counts what it holds then', async () => {
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 1_000_000 });
    const collect = async (turnId: string, after: number) => {
      const got: { seq: number; event: unknown }[] = [];
      for await (const e of streams.follow('o/p', turnId, after, new AbortController().signal)) got.push(e);
      return got;
    };
    const texts = ['Hel', 'lo ', '🙂', ' wörld', '', '!'.repeat(300), ...Array.from({ length: 200 }, (_, i) => String(i % 10))];
    const start = { type: 'start' as const, conversationId: 'p', conversationCreated: true, userMessageId: 'u', content: 'hi', model: 'local' };
    const recorded = [start, ...texts.map((text) => ({ type: 'delta' as const, text })), { ...end, content: texts.join('') }];
    const log = streams.open('o/p');
    // A client following from the start, live, while the turn runs and as it is packed.
    const live = collect(log.turnId, 0);
    await Promise.resolve();
    for (const event of recorded.slice(0, -1)) log.append(event);
    const runningBytes = streams.bytes;
    log.append(recorded.at(-1)!);
    const expected = recorded.map((event, i) => ({ seq: i + 1, event }));
    expect(await live).toEqual(expected);
    expect(streams.bytes).toBeLessThan(runningBytes);
    for (let after = 0; after <= recorded.length; after++) expect(await collect(log.turnId, after)).toEqual(expected.slice(after));

    // Deltas that do not add up to the reply (a log cut short) replay as recorded too.
    const cut = streams.open('o/p');
    cut.append({ type: 'delta', text: 'par' });
    cut.append({ type: 'delta', text: 'tial' });
    cut.append({ type: 'error', conversationId: 'p', messageId: undefined, content: 'something else', error: new AppError('PROVIDER_ERROR', 'cut') });
    expect((await collect(cut.turnId, 0)).map((e) => e.event)).toEqual([
      { type: 'delta', text: 'par' },
      { type: 'delta', text: 'tial' },
      expect.objectContaining({ type: 'error', content: 'something else' }),
    ]);
  });

  it('holds at most maxBytes, evicting ended turns first', () => {
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 10_000 });
    const old = streams.open('o/old');
    old.append({ type: 'delta', text: 'x'.repeat(1_000) });
    old.append(end);
    const running = streams.open('o/running');
    for (let i = 0; i < 20; i++) running.append({ type: 'delta', text: 'y'.repeat(500) });
    expect(streams.bytes).toBeLessThanOrEqual(10_000);
    return expect(streams.latest('o/old')).resolves.toBeUndefined();
  });

  it('a running turn evicted from the buffer records nothing more unless a client already follows it, which still gets every event to the end', async () => {
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 5_000 });
    const followed = streams.open('o/followed');
    followed.append({ type: 'delta', text: 'f' });
    const seen: number[] = [];
    const following = (async () => {
      for await (const { seq } of streams.follow('o/followed', followed.turnId, 0, new AbortController().signal)) seen.push(seq);
    })();
    await Promise.resolve();
    const lone = streams.open('o/lone');
    // Past the bound: both running logs are dropped (oldest first).
    for (let i = 0; i < 10; i++) lone.append({ type: 'delta', text: 'z'.repeat(500) });
    expect(await streams.latest('o/followed')).toBeUndefined();
    expect(await streams.latest('o/lone')).toBeUndefined();
    // The turns go on; their sequence numbers too.
    for (let i = 0; i < 1_000; i++) lone.append({ type: 'delta', text: 'z'.repeat(500) });
    expect(lone.append(end)).toBe(1_011);
    expect(streams.bytes).toBeLessThanOrEqual(5_000);
    followed.append({ type: 'delta', text: 'g' });
    expect(followed.append(end)).toBe(3);
    await following;
    expect(seen).toEqual([1, 2, 3]);
  });

  it('one node, no Redis: an SSE stream resumes with Last-Event-ID', async () => {
    const gw = await startGateway({ STREAM_ON_DISCONNECT: 'continue', LOCAL_MODEL_TOKEN_DELAY_MS: '5' });
    try {
      const sessionId = 'single-node-resume';
      const whole = await (await postChat(gw.url, { message: 'hello there', sessionId, maxTokens: 20 })).text();
      const frames = whole.split('\n\n').filter(Boolean);
      const third = /^id: (\S+)/.exec(frames[2]!)![1]!;
      const rest = await (await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: { 'Last-Event-ID': third } })).text();
      expect(frames.slice(0, 3).map((f) => `${f}\n\n`).join('') + rest).toBe(whole);
      expect((await readSse(new Response(rest))).at(-1)).toMatchObject({ done: true });
      expect((await fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=nothing-here`)).status).toBe(204);
    } finally {
      await gw.destroy();
    }
  });

  it('one node: resuming a finished reply answers 204 when the client has all of it or names a turn not kept, and the whole reply without an id', async () => {
    const gw = await startGateway({ LOCAL_MODEL_TOKEN_DELAY_MS: '0' });
    try {
      const sessionId = 'single-node-finished';
      const whole = await (await postChat(gw.url, { message: 'hello there', sessionId, maxTokens: 10 })).text();
      const ids = [...whole.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
      const resume = (lastEventId?: string) => fetch(`${gw.url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers: lastEventId ? { 'Last-Event-ID': lastEventId } : {} });
      const [allOfIt, unknownTurn, again] = await Promise.all([resume(ids.at(-1)), resume('unknownturn-3'), resume()]);
      expect(allOfIt.status).toBe(204);
      expect(await allOfIt.text()).toBe('');
      expect(unknownTurn.status).toBe(204);
      expect(again.status).toBe(200);
      expect(await again.text()).toBe(whole);
      // One event short of the end: that last event.
      const last = await resume(ids.at(-2));
      expect(last.status).toBe(200);
      expect(await last.text()).toBe(whole.slice(whole.lastIndexOf(`id: ${ids.at(-1)}`)));
    } finally {
      await gw.destroy();
    }
  });
});
