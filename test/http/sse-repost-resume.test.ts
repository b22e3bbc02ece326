/**
 * `POST /api/v2/ai/chat/stream` sent again with `Last-Event-ID` (a client retrying the request
 * it lost): it resumes that turn while the turn has something left to send, and answers 204
 * (as the GET resume does) when it has nothing more: never an empty stream, never a second turn.
 */
import { describe, expect, it } from 'vitest';
import { messagesOf } from '../helpers/conversations.js';
import { gatewayForSuite } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';

const idsOf = (raw: string) => [...raw.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
const turnOf = (id: string) => id.slice(0, id.lastIndexOf('-'));

describe('re-POST with Last-Event-ID, finished turns', () => {
  const gw = gatewayForSuite({ RATE_LIMIT_ANON: '1000', MEMORY_ENABLED: 'false' });

  it('naming the end of a finished turn (the client has all of it): 204, as the GET resume answers, and nothing stored (a retry is not a second turn)', async () => {
    const sessionId = 'repost-after-end';
    const first = await (await postChat(gw().url, { message: 'first question', sessionId, maxTokens: 3 })).text();
    const firstIds = idsOf(first);

    // A client library that re-POSTs when a stream closes, naming the last event it got.
    for (let retry = 0; retry < 3; retry++) {
      const res = await postChat(gw().url, { message: 'first question', sessionId, maxTokens: 3 }, { 'Last-Event-ID': firstIds.at(-1)! });
      expect(res.status).toBe(204);
      expect(await res.text()).toBe('');
    }
    const stored = await messagesOf(gw(), sessionId);
    expect(stored.map((m) => [m.role, m.role === 'user' ? m.content : m.finishReason])).toEqual([
      ['user', 'first question'],
      ['assistant', 'length'],
    ]);
  });

  it('naming a turn that is not kept, or an older turn already received, while the conversation has a newer one: 204, nothing stored', async () => {
    const sessionId = 'repost-stale-id';
    const first = idsOf(await (await postChat(gw().url, { message: 'one', sessionId, maxTokens: 2 })).text());
    await (await postChat(gw().url, { message: 'two', sessionId, maxTokens: 2 })).text();

    for (const [lastEventId, message] of [
      ['deadbeef0000-5', 'three'],
      [first.at(-1)!, 'four'],
    ] as const) {
      const res = await postChat(gw().url, { message, sessionId, maxTokens: 2 }, { 'Last-Event-ID': lastEventId });
      expect(res.status).toBe(204);
      await res.text();
    }
    const users = (await messagesOf(gw(), sessionId)).filter((m) => m.role === 'user').map((m) => m.content);
    expect(users).toEqual(['one', 'two']);
  });

  it('an id of ours in a conversation with nothing kept is a new turn (its stream cannot be resumed, the message may never have arrived)', async () => {
    const sessionId = 'repost-nothing-kept';
    const events = await readSse(await postChat(gw().url, { message: 'hello again', sessionId, maxTokens: 2 }, { 'Last-Event-ID': 'deadbeef0000-5' }));
    expect(events.at(-1)).toMatchObject({ done: true, sessionId });
    const users = (await messagesOf(gw(), sessionId)).filter((m) => m.role === 'user').map((m) => m.content);
    expect(users).toEqual(['hello again']);
  });

  it('naming an event before the end of a kept turn: the rest of that turn, byte for byte, and nothing new stored', async () => {
    const sessionId = 'repost-tail';
    const whole = await (await postChat(gw().url, { message: 'tell me', sessionId, maxTokens: 6 })).text();
    const ids = idsOf(whole);
    const rest = await (await postChat(gw().url, { message: 'tell me', sessionId, maxTokens: 6 }, { 'Last-Event-ID': ids.at(-3)! })).text();
    expect(rest).toBe(whole.slice(whole.indexOf(`id: ${ids.at(-2)}\n`)));
    expect((await readSse(new Response(rest))).at(-1)).toMatchObject({ done: true, sessionId });
    expect(await messagesOf(gw(), sessionId)).toHaveLength(2);
  });
});

describe('re-POST with Last-Event-ID, a running turn (STREAM_ON_DISCONNECT=continue)', () => {
  const gw = gatewayForSuite({ RATE_LIMIT_ANON: '1000', MEMORY_ENABLED: 'false', STREAM_ON_DISCONNECT: 'continue', LOCAL_MODEL_TOKEN_DELAY_MS: '20' });

  it('a client that lost the stream mid-reply re-POSTs with its last id: the rest, live, to done; one turn stored', async () => {
    const sessionId = 'repost-running';
    const body = { message: 'a long answer please', sessionId, maxTokens: 20 };
    const controller = new AbortController();
    const res = await postChat(gw().url, body, {}, controller.signal);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    while ((received.match(/\n\n/g) ?? []).length < 3) received += decoder.decode((await reader.read()).value, { stream: true });
    controller.abort();
    const head = received.slice(0, received.lastIndexOf('\n\n') + 2);
    const lastId = idsOf(head).at(-1)!;

    const rest = await (await postChat(gw().url, body, { 'Last-Event-ID': lastId })).text();
    const events = await readSse(new Response(head + rest));
    expect(events.at(-1)).toMatchObject({ done: true, sessionId, finishReason: 'length' });
    expect(events.filter((e) => 'content' in e)).toHaveLength(20);
    expect(new Set(idsOf(head + rest).map(turnOf)).size).toBe(1);
    const stored = await messagesOf(gw(), sessionId);
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(stored[1]!.content).toBe(contentOf(events));
  });
});
