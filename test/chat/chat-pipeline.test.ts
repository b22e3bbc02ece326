import { describe, expect, it } from 'vitest';
import { ChatPipeline, type ChatTurnEvent } from '../../src/chat/chat-pipeline.js';
import { buildContext } from '../../src/chat/context-builder.js';
import { TurnAbort } from '../../src/chat/turn-abort.js';
import { TurnTracker } from '../../src/chat/turn-tracker.js';
import { AppError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import type { LanguageModel, ModelCallOptions, ModelStreamPart } from '../../src/models/language-model.js';
import { LocalModel } from '../../src/models/local-model.js';
import { ModelRegistry } from '../../src/models/model-registry.js';
import { MemoryRateLimiter } from '../../src/ratelimit/memory-rate-limiter.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import type { StoredMessage } from '../../src/stores/conversation-store.js';

/** A model driven by the test, recording what it was called with. */
class ScriptedModel implements LanguageModel {
  readonly provider = 'local';
  readonly modelId = 'scripted';
  readonly contextTokens = 100_000;
  calls: ModelCallOptions[] = [];
  constructor(private readonly script: (o: ModelCallOptions) => AsyncIterable<ModelStreamPart>) {}
  stream(o: ModelCallOptions) {
    this.calls.push(o);
    return this.script(o);
  }
}

function setup(model?: LanguageModel, limits = { userLimit: 100, anonymousLimit: 20, authLimit: 10, windowMs: 60_000 }) {
  const store = new MemoryConversationStore();
  const local = new LocalModel({ tokenDelayMs: 0, contextTokens: 8192 });
  const models = new ModelRegistry({
    factories: { local: { model: (id) => (id === 'scripted' && model ? model : local) } },
    defaultModel: model ? 'local:scripted' : 'local',
  });
  const turns = new TurnTracker();
  const pipeline = new ChatPipeline({
    store,
    models,
    limiter: new MemoryRateLimiter(limits.windowMs),
    rateLimits: limits,
    turns,
    logger: silentLogger,
    options: { systemPrompt: 'SYS', historyLimit: 20, maxOutputTokens: 500 },
  });
  return { store, pipeline, turns };
}

const anon = { userId: null, ip: '10.0.0.1' };
const alice = { userId: 'alice', ip: '10.0.0.2' };

async function drain(gen: AsyncIterable<ChatTurnEvent>) {
  const events: ChatTurnEvent[] = [];
  for await (const e of gen) events.push(e);
  return events;
}

describe('chat pipeline', () => {
  it('stores the user message before calling the model and the reply after', async () => {
    let storedAtCall: StoredMessage[] = [];
    const { store, pipeline } = setup(
      new ScriptedModel(async function* () {
        storedAtCall = await store.recentMessages('c1', 10);
        yield { type: 'text-delta', text: 'Hi' };
        yield { type: 'finish', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 1 } };
      }),
    );
    const turn = await pipeline.prepare({ principal: anon, message: 'hello', conversationId: 'c1' });
    const events = await drain(turn.run());
    expect(storedAtCall.map((m) => m.content)).toEqual(['hello']);
    expect(events.map((e) => e.type)).toEqual(['start', 'delta', 'end']);
    expect(events[0]).toMatchObject({ conversationId: 'c1', conversationCreated: true, content: 'hello' });
    const end = events[2] as Extract<ChatTurnEvent, { type: 'end' }>;
    const stored = await store.recentMessages('c1', 10);
    expect(stored.at(-1)).toMatchObject({ id: end.messageId, role: 'assistant', content: 'Hi', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 1 } });
  });

  it('sends system prompt then the last 20 messages, oldest first', async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
    const { store, pipeline } = setup(model);
    await store.ensureConversation({ id: 'long', ownerId: null, title: 't' });
    for (let i = 0; i < 30; i++) await store.appendMessage({ conversationId: 'long', role: i % 2 ? 'assistant' : 'user', content: `m${i}` });
    await drain((await pipeline.prepare({ principal: anon, message: 'newest', conversationId: 'long' })).run());
    const sent = model.calls[0]!.messages;
    expect(sent[0]).toEqual({ role: 'system', content: 'SYS' });
    expect(sent.slice(1).map((m) => m.content)).toEqual([...Array.from({ length: 19 }, (_, i) => `m${i + 11}`), 'newest']);
    expect(model.calls[0]!.maxTokens).toBe(500);
  });

  it('trims the oldest history to the context budget but keeps the newest message', () => {
    const history = Array.from({ length: 10 }, (_, i) => ({
      id: `${i}`,
      conversationId: 'c',
      role: 'user' as const,
      content: `message ${i} `.repeat(50),
      createdAt: i,
    }));
    const out = buildContext({ systemPrompt: 'SYS', recalled: [], history, contextTokens: 600, reserveTokens: 200 });
    expect(out[0]!.content).toBe('SYS');
    expect(out.at(-1)!.content).toBe(history[9]!.content);
    expect(out.length).toBeLessThan(11);
    expect(out.length).toBeGreaterThan(1);
    expect(out.slice(1).map((m) => m.content)).toEqual(history.slice(10 - (out.length - 1)).map((h) => h.content));
    // Under budget: nothing is dropped and no tokenizer pass is needed.
    expect(buildContext({ systemPrompt: 'SYS', recalled: ['x'], history: history.slice(0, 2), contextTokens: 100_000, reserveTokens: 10 })).toHaveLength(4);
  });

  it('stores the partial reply as stopped when the client stops, and as aborted when it goes away', async () => {
    for (const kind of ['stopped', 'aborted'] as const) {
      const { store, pipeline, turns } = setup(
        new ScriptedModel(async function* (o) {
          yield { type: 'text-delta', text: 'partial' };
          await new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(o.signal.reason)));
        }),
      );
      const controller = new AbortController();
      const turn = await pipeline.prepare({ principal: anon, message: 'go', conversationId: `k-${kind}` });
      const events: ChatTurnEvent[] = [];
      for await (const e of turn.run(controller.signal)) {
        events.push(e);
        if (e.type === 'delta') controller.abort(new TurnAbort(kind));
      }
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: kind, content: 'partial' });
      expect((await store.recentMessages(`k-${kind}`, 5)).at(-1)).toMatchObject({ content: 'partial', finishReason: kind });
      expect(turns.active).toBe(0);
    }
  });

  it('stores the partial reply with finishReason error when the provider fails mid-stream', async () => {
    const { store, pipeline } = setup(
      new ScriptedModel(async function* () {
        yield { type: 'text-delta', text: 'half' };
        throw new AppError('PROVIDER_ERROR', 'The x model stream ended unexpectedly');
      }),
    );
    const events = await drain((await pipeline.prepare({ principal: anon, message: 'go', conversationId: 'err' })).run());
    expect(events.at(-1)).toMatchObject({ type: 'error', content: 'half', error: { code: 'PROVIDER_ERROR' } });
    expect((await store.recentMessages('err', 5)).map((m) => [m.role, m.content, m.finishReason])).toEqual([
      ['user', 'go', undefined],
      ['assistant', 'half', 'error'],
    ]);
  });

  it('reports an unexpected failure as INTERNAL without its message', async () => {
    const { pipeline } = setup(
      new ScriptedModel(async function* () {
        yield* [];
        throw new Error('db password is hunter2');
      }),
    );
    const events = await drain((await pipeline.prepare({ principal: anon, message: 'go' })).run());
    const last = events.at(-1) as Extract<ChatTurnEvent, { type: 'error' }>;
    expect(last.error.code).toBe('INTERNAL');
    expect(last.error.message).not.toContain('hunter2');
  });

  it('stores the partial reply when the consumer stops iterating', async () => {
    const { store, pipeline } = setup(
      new ScriptedModel(async function* () {
        yield { type: 'text-delta', text: 'a' };
        yield { type: 'text-delta', text: 'b' };
        yield { type: 'finish', finishReason: 'stop', usage: undefined };
      }),
    );
    const turn = await pipeline.prepare({ principal: anon, message: 'go', conversationId: 'gone' });
    for await (const e of turn.run()) if (e.type === 'delta') break;
    expect((await store.recentMessages('gone', 5)).at(-1)).toMatchObject({ role: 'assistant', content: 'a', finishReason: 'aborted' });
  });

  it('answers NOT_FOUND for a conversation owned by someone else, before counting or storing anything', async () => {
    const { store, pipeline } = setup();
    await drain((await pipeline.prepare({ principal: alice, message: 'mine', conversationId: 'alices' })).run());
    await expect(pipeline.prepare({ principal: anon, message: 'x', conversationId: 'alices' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(pipeline.prepare({ principal: { userId: 'bob', ip: '1.1.1.1' }, message: 'x', conversationId: 'alices' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    expect(await store.recentMessages('alices', 10)).toHaveLength(2);
  });

  it('counts one turn per prepare and refuses past the limit with RATE_LIMIT', async () => {
    const { pipeline } = setup(undefined, { userLimit: 3, anonymousLimit: 2, authLimit: 1, windowMs: 60_000 });
    await pipeline.prepare({ principal: anon, message: 'x' });
    await pipeline.prepare({ principal: anon, message: 'x' });
    await expect(pipeline.prepare({ principal: anon, message: 'x' })).rejects.toMatchObject({ code: 'RATE_LIMIT', details: { retryAfterSeconds: expect.any(Number) } });
    for (let i = 0; i < 3; i++) await pipeline.prepare({ principal: alice, message: 'x' });
    await expect(pipeline.prepare({ principal: alice, message: 'x' })).rejects.toMatchObject({ code: 'RATE_LIMIT' });
  });

  it('graceful drain lets short turns finish and aborts long ones after the grace period, storing both', async () => {
    const { store, pipeline, turns } = setup(new ScriptedModel(async function* (o) {
      const long = o.messages.at(-1)!.content === 'long';
      for (let i = 0; i < (long ? 1000 : 3); i++) {
        await new Promise((r) => setTimeout(r, 10));
        if (o.signal.aborted) throw o.signal.reason;
        yield { type: 'text-delta', text: 'x' };
      }
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    }));
    const short = drain((await pipeline.prepare({ principal: anon, message: 'short', conversationId: 's' })).run());
    const long = drain((await pipeline.prepare({ principal: anon, message: 'long', conversationId: 'l' })).run());
    await new Promise((r) => setTimeout(r, 5));
    expect(turns.active).toBe(2);
    const result = await turns.drain(200);
    expect(result).toEqual({ finished: 1, aborted: 1 });
    const [shortEvents, longEvents] = await Promise.all([short, long]);
    expect(shortEvents.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    // The client of the long turn is still there: it is told why its reply stopped.
    expect(longEvents.at(-1)).toMatchObject({ type: 'error', error: { code: 'INTERNAL', message: expect.stringMatching(/shutting down/) } });
    expect((await store.recentMessages('s', 5)).at(-1)).toMatchObject({ finishReason: 'stop', content: 'xxx' });
    expect((await store.recentMessages('l', 5)).at(-1)).toMatchObject({ finishReason: 'aborted' });
    await expect(pipeline.prepare({ principal: anon, message: 'late' })).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});
