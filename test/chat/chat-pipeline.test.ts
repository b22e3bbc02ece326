import { describe, expect, it } from 'vitest';
import { ChatPipeline, type ChatTurnEvent, type PreparedTurn } from '../../src/chat/chat-pipeline.js';
import { runTurn } from '../helpers/turns.js';
import { passCounter } from '../helpers/wait.js';
import { buildContext } from '../../src/chat/context-builder.js';
import { TurnAbort } from '../../src/chat/turn-abort.js';
import { TurnTracker } from '../../src/chat/turn-tracker.js';
import { stopConversationTurn } from '../../src/chat/stop-turn.js';
import { StartGate } from '../../src/chat/start-gate.js';
import { AppError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { streamFromParts, type LanguageModel, type ModelCallOptions, type ModelStreamPart } from '../../src/models/language-model.js';
import { LocalModel } from '../../src/models/local-model.js';
import { ModelRegistry } from '../../src/models/model-registry.js';
import { MemoryRateLimiter } from '../../src/ratelimit/memory-rate-limiter.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import type { Principal } from '../../src/chat/principal.js';
import { countTokens } from '../../src/models/tokenizer.js';

/** A model driven by the test, recording what it was called with. */
class ScriptedModel implements LanguageModel {
  readonly provider = 'local';
  readonly modelId = 'scripted';
  readonly contextTokens = 100_000;
  calls: ModelCallOptions[] = [];
  constructor(private readonly script: (o: ModelCallOptions) => AsyncIterable<ModelStreamPart>) {}
  stream(o: ModelCallOptions, onText: (text: string) => void) {
    this.calls.push(o);
    return streamFromParts(this.script(o), onText, o.signal);
  }
}

const OPTIONS = { systemPrompt: 'SYS', historyLimit: 20, maxOutputTokens: 500, maxMessageChars: 32_000, firstByteTimeoutMs: 5_000, idleTimeoutMs: 5_000, slowClientTimeoutMs: 5_000 };

function setup(model?: LanguageModel, limits = { userLimit: 100, anonymousLimit: 20, authLimit: 10, windowMs: 60_000, ipv6Prefix: 56 }, options = OPTIONS, gates: { startGate?: StartGate; arrivalGate?: StartGate } = {}) {
  const store = new MemoryConversationStore();
  const local = new LocalModel({ tokenDelayMs: 0, contextTokens: 8192 });
  const models = new ModelRegistry({
    factories: { local: { model: (id) => (id === 'scripted' && model ? model : local) } },
    defaultModel: model ? 'local:scripted' : 'local',
  });
  const turns = new TurnTracker();
  const limiter = new MemoryRateLimiter(limits.windowMs);
  const pipeline = new ChatPipeline({
    store,
    models,
    limiter,
    rateLimits: limits,
    turns,
    logger: silentLogger,
    options,
    ...gates,
  });
  return { store, pipeline, turns, limiter };
}

const anon: Principal = { userId: null, ip: '10.0.0.1', anonymousId: null };
const alice: Principal = { userId: 'alice', ip: '10.0.0.2', anonymousId: null };
/** Where conversations of the `anon` principal live. */
const anonKey = (id: string) => conversationKey('ip:10.0.0.1', id);

const drain = (turn: PreparedTurn) => runTurn(turn);

describe('chat pipeline', () => {
  it('asks the model while the user message is being stored; no reply text reaches the client or the store before it is durable', async () => {
    let userWriteDone = false;
    let calledBeforeWrite: boolean | undefined;
    const { store, pipeline } = setup(
      new ScriptedModel(async function* () {
        calledBeforeWrite = !userWriteDone;
        yield { type: 'text-delta', text: 'Hi' };
        yield { type: 'finish', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 1 } };
      }),
    );
    // The user message's write takes 100 ms; everything else is instant.
    const append = store.appendMessage.bind(store);
    store.appendMessage = async (m) => {
      if (m.role !== 'user') return append(m);
      await new Promise((r) => setTimeout(r, 100));
      const stored = await append(m);
      userWriteDone = true;
      return stored;
    };
    const turn = await pipeline.prepare({ principal: anon, message: 'hello', conversationId: 'c1' });
    const seen: { type: string; userStored: boolean }[] = [];
    const events = await runTurn(turn, { onEvent: (e) => seen.push({ type: e.type, userStored: userWriteDone }) });
    expect((turn.model as ScriptedModel).calls).toHaveLength(1);
    // The model call did not wait for the write...
    expect(calledBeforeWrite).toBe(true);
    // ...but start, the text and the end all came after it.
    expect(seen.map((e) => [e.type, e.userStored])).toEqual([
      ['start', true],
      ['delta', true],
      ['end', true],
    ]);
    expect(events[0]).toMatchObject({ conversationId: 'c1', conversationCreated: true, content: 'hello' });
    const end = events[2] as Extract<ChatTurnEvent, { type: 'end' }>;
    const stored = await store.recentMessages(anonKey('c1'), 10);
    expect(stored.map((m) => [m.role, m.content])).toEqual([
      ['user', 'hello'],
      ['assistant', 'Hi'],
    ]);
    expect(stored[0]!.id).toBe((events[0] as Extract<ChatTurnEvent, { type: 'start' }>).userMessageId);
    expect(stored.at(-1)).toMatchObject({ id: end.messageId, role: 'assistant', content: 'Hi', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 1 } });
  });

  it('a user message that cannot be stored ends the turn with an error, stops the model call, and stores no reply', async () => {
    let modelSignal: AbortSignal | undefined;
    const { store, pipeline } = setup(
      new ScriptedModel(async function* (o) {
        modelSignal = o.signal;
        yield { type: 'text-delta', text: 'never shown' };
        await new Promise((r) => setTimeout(r, 5_000));
        yield { type: 'finish', finishReason: 'stop', usage: undefined };
      }),
    );
    const append = store.appendMessage.bind(store);
    const writes: string[] = [];
    store.appendMessage = async (m) => {
      writes.push(m.role);
      if (m.role === 'user') {
        await new Promise((r) => setTimeout(r, 20));
        throw new Error('disk full');
      }
      return append(m);
    };
    const started = performance.now();
    const events = await drain(await pipeline.prepare({ principal: anon, message: 'hello', conversationId: 'c2' }));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(events.map((e) => e.type)).toEqual(['error']);
    expect(events[0]).toMatchObject({ error: { code: 'INTERNAL' }, messageId: undefined });
    expect(JSON.stringify(events)).not.toContain('never shown');
    expect(modelSignal?.aborted).toBe(true);
    expect(writes).toEqual(['user']);
    expect(await store.getConversation('ip:10.0.0.1', 'c2')).toBeUndefined();
  });

  it('sends system prompt then the last 20 messages, oldest first', async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
    const { store, pipeline } = setup(model);
    await store.ensureConversation({ id: 'long', ownerId: 'ip:10.0.0.1', title: 't' });
    for (let i = 0; i < 30; i++) await store.appendMessage({ conversationKey: anonKey('long'), role: i % 2 ? 'assistant' : 'user', content: `m${i}` });
    await drain(await pipeline.prepare({ principal: anon, message: 'newest', conversationId: 'long' }));
    const sent = model.calls[0]!.messages;
    expect(sent[0]).toEqual({ role: 'system', content: 'SYS' });
    expect(sent.slice(1).map((m) => m.content)).toEqual([...Array.from({ length: 19 }, (_, i) => `m${i + 11}`), 'newest']);
    expect(model.calls[0]!.maxTokens).toBe(500);
  });

  it('trims the oldest history to the context budget but keeps the newest message', () => {
    const history = Array.from({ length: 10 }, (_, i) => ({
      id: `${i}`,
      conversationKey: 'o/c',
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
    for (const [cause, kind] of [['stop', 'stopped'], ['disconnect', 'aborted']] as const) {
      const { store, pipeline, turns } = setup(
        new ScriptedModel(async function* (o) {
          yield { type: 'text-delta', text: 'partial' };
          await new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(o.signal.reason)));
        }),
      );
      const controller = new AbortController();
      const turn = await pipeline.prepare({ principal: anon, message: 'go', conversationId: `k-${kind}` });
      const events = await runTurn(turn, { signal: controller.signal, onEvent: (e) => e.type === 'delta' && controller.abort(new TurnAbort(cause)) });
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: kind, content: 'partial' });
      expect((await store.recentMessages(anonKey(`k-${kind}`), 5)).at(-1)).toMatchObject({ content: 'partial', finishReason: kind });
      expect(turns.active).toBe(0);
    }
  });

  it('a client gone before its turn began leaves nothing stored and asks no model; one that stopped first keeps its message and an empty stopped reply', async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'text-delta', text: 'never' };
    });
    const { store, pipeline, turns } = setup(model);
    const gone = await pipeline.prepare({ principal: anon, message: 'anyone there?', conversationId: 'k-gone' });
    const left = new AbortController();
    left.abort(new TurnAbort('disconnect'));
    expect((await runTurn(gone, { signal: left.signal })).at(-1)).toMatchObject({ type: 'end', finishReason: 'aborted', content: '' });
    expect(await store.getConversation('ip:10.0.0.1', 'k-gone')).toBeUndefined();
    expect(model.calls).toHaveLength(0);

    const stopped = await pipeline.prepare({ principal: anon, message: 'never mind', conversationId: 'k-stopped' });
    const stop = new AbortController();
    stop.abort(new TurnAbort('stop'));
    expect((await runTurn(stopped, { signal: stop.signal })).at(-1)).toMatchObject({ type: 'end', finishReason: 'stopped', content: '' });
    expect((await store.recentMessages(anonKey('k-stopped'), 5)).map((m) => [m.role, m.content, m.finishReason])).toEqual([
      ['user', 'never mind', undefined],
      ['assistant', '', 'stopped'],
    ]);
    expect(model.calls).toHaveLength(0);
    expect(turns.active).toBe(0);
  });

  it('stores the partial reply with finishReason error when the provider fails mid-stream', async () => {
    const { store, pipeline } = setup(
      new ScriptedModel(async function* () {
        yield { type: 'text-delta', text: 'half' };
        throw new AppError('PROVIDER_ERROR', 'The x model stream ended unexpectedly');
      }),
    );
    const events = await drain(await pipeline.prepare({ principal: anon, message: 'go', conversationId: 'err' }));
    expect(events.at(-1)).toMatchObject({ type: 'error', content: 'half', error: { code: 'PROVIDER_ERROR' } });
    expect((await store.recentMessages(anonKey('err'), 5)).map((m) => [m.role, m.content, m.finishReason])).toEqual([
      ['user', 'go', undefined],
      ['assistant', 'half', 'error'],
    ]);
  });

  it('a sink that throws on a delta (an adapter bug) ends that turn with INTERNAL from inside the model\'s timer, stores the text so far, and stops the model', async () => {
    // Text from a timer, as a remote model's comes from a socket handler: a throw there used to reach the process.
    const { store, pipeline, turns } = setup(new LocalModel({ tokenDelayMs: 5, contextTokens: 8192 }));
    const events: ChatTurnEvent[] = [];
    let deltas = 0;
    const turn = await pipeline.prepare({ principal: anon, message: 'tell me something long', conversationId: 'k-throw' });
    await turn.run({
      start: (e) => events.push(e),
      delta: (text) => {
        if (++deltas === 3) throw new Error('adapter bug holding sk-secret-123');
        events.push({ type: 'delta', text });
        return true;
      },
      drained: () => Promise.resolve(),
      end: (e) => events.push(e),
      error: (e) => events.push(e),
    });
    const last = events.at(-1) as Extract<ChatTurnEvent, { type: 'error' }>;
    expect(last).toMatchObject({ type: 'error', error: { code: 'INTERNAL', message: 'Internal server error' } });
    expect(JSON.stringify(events)).not.toContain('sk-secret-123');
    const shown = events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join('');
    expect(shown.length).toBeGreaterThan(0);
    expect(last.content.startsWith(shown) && last.content.length > shown.length).toBe(true);
    // The model was stopped: no delta after the one that threw, even over several more token intervals.
    await new Promise((r) => setTimeout(r, 50));
    expect(deltas).toBe(3);
    expect((await store.recentMessages(anonKey('k-throw'), 5)).map((m) => [m.role, m.content, m.finishReason])).toEqual([
      ['user', 'tell me something long', undefined],
      ['assistant', last.content, 'error'],
    ]);
    expect(turns.active).toBe(0);
  });

  it('reports an unexpected failure as INTERNAL without its message', async () => {
    const { pipeline } = setup(
      new ScriptedModel(async function* () {
        yield* [];
        throw new Error('db password is hunter2');
      }),
    );
    const events = await drain(await pipeline.prepare({ principal: anon, message: 'go' }));
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
    const controller = new AbortController();
    await runTurn(turn, { signal: controller.signal, onEvent: (e) => e.type === 'delta' && controller.abort() });
    expect((await store.recentMessages(anonKey('gone'), 5)).at(-1)).toMatchObject({ role: 'assistant', content: 'a', finishReason: 'aborted' });
  });

  it('scopes a conversation id to its owner: someone else using the id gets a new conversation of their own', async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
    const { store, pipeline } = setup(model);
    await drain(await pipeline.prepare({ principal: alice, message: 'SECRET plans', conversationId: 'shared' }));
    const others: Principal[] = [anon, { userId: 'bob', ip: '10.0.0.2', anonymousId: null }, { userId: null, ip: '10.0.0.9', anonymousId: 'cookie-1' }];
    for (const principal of others) {
      const turn = await pipeline.prepare({ principal, message: 'what did I say?', conversationId: 'shared' });
      expect(turn.conversationCreated).toBe(true);
      await drain(turn);
      expect(JSON.stringify(model.calls.at(-1)!.messages)).not.toContain('SECRET');
    }
    expect(await store.recentMessages(conversationKey('alice', 'shared'), 10)).toHaveLength(2);
    expect(await store.getConversation('anon:cookie-1', 'shared')).toBeDefined();
  });

  it("an anonymous client with the cookie continues what it started from its IP before it had one, and nobody else's", async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
    const { pipeline } = setup(model);
    const firstVisit: Principal = { userId: null, ip: '10.0.0.5', anonymousId: null };
    const withCookie: Principal = { userId: null, ip: '10.0.0.5', anonymousId: 'S1' };
    const otherCookieSameIp: Principal = { userId: null, ip: '10.0.0.5', anonymousId: 'S2' };
    await drain(await pipeline.prepare({ principal: firstVisit, message: 'first turn', conversationId: 'browser' }));
    const second = await pipeline.prepare({ principal: withCookie, message: 'second turn', conversationId: 'browser' });
    expect(second.conversationCreated).toBe(false);
    await drain(second);
    expect(model.calls.at(-1)!.messages.map((m) => m.content)).toContain('first turn');

    await drain(await pipeline.prepare({ principal: withCookie, message: 'cookie SECRET', conversationId: 'mine' }));
    const neighbour = await pipeline.prepare({ principal: otherCookieSameIp, message: 'peek', conversationId: 'mine' });
    expect(neighbour.conversationCreated).toBe(true);
    await drain(neighbour);
    expect(JSON.stringify(model.calls.at(-1)!.messages)).not.toContain('SECRET');
  });

  it('a model that sends nothing ends the turn with PROVIDER_ERROR after the first-byte timeout, and the upstream call is aborted', async () => {
    let upstreamAborted = false;
    const { store, pipeline } = setup(
      new ScriptedModel(async function* (o) {
        yield* [];
        await new Promise((_, reject) =>
          o.signal.addEventListener('abort', () => {
            upstreamAborted = true;
            reject(o.signal.reason);
          }),
        );
      }),
      undefined,
      { ...OPTIONS, firstByteTimeoutMs: 150 },
    );
    const started = performance.now();
    const events = await drain(await pipeline.prepare({ principal: anon, message: 'go', conversationId: 'hang' }));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(events.at(-1)).toMatchObject({ type: 'error', error: { code: 'PROVIDER_ERROR', message: expect.stringMatching(/did not start answering/) } });
    expect(upstreamAborted).toBe(true);
    expect(await store.recentMessages(anonKey('hang'), 5)).toHaveLength(1);
  });

  it('a model that stalls mid-stream ends the turn with PROVIDER_ERROR after the idle timeout, keeping the partial reply', async () => {
    const { store, pipeline } = setup(
      new ScriptedModel(async function* (o) {
        yield { type: 'text-delta', text: 'half a' };
        await new Promise((r) => setTimeout(r, 50));
        yield { type: 'text-delta', text: 'nswer' };
        await new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(o.signal.reason)));
      }),
      undefined,
      { ...OPTIONS, idleTimeoutMs: 200 },
    );
    const events = await drain(await pipeline.prepare({ principal: anon, message: 'go', conversationId: 'stall' }));
    expect(events.at(-1)).toMatchObject({ type: 'error', content: 'half answer', error: { code: 'PROVIDER_ERROR', message: expect.stringMatching(/sent nothing for 200 ms/) } });
    expect((await store.recentMessages(anonKey('stall'), 5)).at(-1)).toMatchObject({ content: 'half answer', finishReason: 'error' });
  });

  it('a conversation aborted as deleted ends with NOT_FOUND and the tracker waits until its reply is stored', async () => {
    const { store, pipeline, turns } = setup(
      new ScriptedModel(async function* (o) {
        yield { type: 'text-delta', text: 'streaming' };
        await new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(o.signal.reason)));
      }),
    );
    const turn = await pipeline.prepare({ principal: alice, message: 'go', conversationId: 'doomed' });
    const events: ChatTurnEvent[] = [];
    const consumed = runTurn(turn, { onEvent: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 20));
    expect(turns.isRunning(conversationKey('alice', 'doomed'))).toBe(true);
    expect(await turns.abortConversation(conversationKey('alice', 'doomed'), 'deleted')).toBe(1);
    expect((await store.recentMessages(conversationKey('alice', 'doomed'), 5)).at(-1)).toMatchObject({ content: 'streaming', finishReason: 'aborted' });
    await consumed;
    expect(events.at(-1)).toMatchObject({ type: 'error', error: { code: 'NOT_FOUND' } });
    expect(turns.active).toBe(0);
  });

  it('stores token counts with messages, and trims context from them without re-tokenising history', async () => {
    const { store, pipeline } = setup();
    await drain(await pipeline.prepare({ principal: anon, message: 'count me please', conversationId: 'tok' }));
    const [user, reply] = await store.recentMessages(anonKey('tok'), 5);
    expect(user!.tokens).toBe(countTokens('count me please'));
    expect(reply!.tokens).toBe(reply!.usage!.outputTokens);
    // Stored counts are trusted as they are: a message claiming to be huge is dropped first.
    const history = [
      { role: 'user' as const, content: 'old', tokens: 10_000 },
      { role: 'assistant' as const, content: 'reply', tokens: 5 },
      { role: 'user' as const, content: 'x'.repeat(2_000), tokens: 10 },
    ];
    expect(buildContext({ systemPrompt: 'SYS', recalled: [], history, contextTokens: 1_000, reserveTokens: 100 }).map((m) => m.content)).toEqual([
      'SYS',
      'reply',
      'x'.repeat(2_000),
    ]);
  });

  it("a client's own system messages stay when the history is trimmed; the oldest user and assistant messages go", () => {
    const history = [
      { role: 'system' as const, content: 'CLIENT-SYSTEM: answer in French', tokens: 10 },
      ...Array.from({ length: 8 }, (_, i) => ({ role: (i % 2 === 0 ? 'user' : 'assistant') as 'user' | 'assistant', content: `turn ${i}`, tokens: 100 })),
      { role: 'system' as const, content: 'CLIENT-SYSTEM: be brief', tokens: 10 },
      { role: 'user' as const, content: 'the question', tokens: 10 },
    ];
    const out = buildContext({ systemPrompt: 'SYS', recalled: [], history, contextTokens: 600, reserveTokens: 200 }).map((m) => m.content);
    expect(out[0]).toBe('SYS');
    expect(out).toContain('CLIENT-SYSTEM: answer in French');
    expect(out).toContain('CLIENT-SYSTEM: be brief');
    expect(out.at(-1)).toBe('the question');
    expect(out).not.toContain('turn 0');
    // In their places: the first instruction before the turns kept, the second after them.
    expect(out.indexOf('CLIENT-SYSTEM: answer in French')).toBe(1);
    expect(out.slice(2, -2).every((c) => c.startsWith('turn '))).toBe(true);
    expect(out.slice(2, -2).length).toBeGreaterThan(0);
  });

  it('a model whose context is no larger than MAX_OUTPUT_TOKENS still gets the conversation: a reply the client did not size takes at most half the context', async () => {
    const model = new ScriptedModel(async function* () {
      yield { type: 'text-delta', text: 'a reply of a few words' };
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
    (model as { contextTokens: number }).contextTokens = 400;
    const { pipeline } = setup(model, undefined, { ...OPTIONS, maxOutputTokens: 500 });
    await drain(await pipeline.prepare({ principal: anon, message: 'my name is Ada', conversationId: 'small', model: 'local:scripted' }));
    await drain(await pipeline.prepare({ principal: anon, message: 'what is my name?', conversationId: 'small', model: 'local:scripted' }));
    const second = model.calls[1]!;
    expect(second.maxTokens).toBe(200);
    expect(second.messages.map((m) => m.content)).toEqual(['SYS', 'my name is Ada', 'a reply of a few words', 'what is my name?']);
    // A reply the client sized is sized as it asked (within MAX_OUTPUT_TOKENS).
    await drain(await pipeline.prepare({ principal: anon, message: 'again', conversationId: 'small', model: 'local:scripted', maxTokens: 450 }));
    expect(model.calls[2]!.maxTokens).toBe(450);
  });

  /**
   * Slots in one process, as the Redis coordinator keeps them across nodes; with `turns`, a stop
   * published for a conversation reaches them, as the cluster's does on every node.
   */
  function slotCoordinator(turns?: TurnTracker) {
    const slots = new Set<string>();
    const coordinator = {
      acquire: async (key: string) => {
        if (slots.has(key)) return undefined;
        slots.add(key);
        let released = false;
        return { release: () => void (!released && (released = true) && slots.delete(key)) };
      },
      isRunning: async (key: string) => slots.has(key),
      publishStop: async (key: string) => turns?.stopWhenStarted(key),
      onStop: () => {},
    };
    return { slots, coordinator };
  }

  /** A reply of 200 words, 5 ms apart, that ends early when its turn is aborted. */
  function longReply(): ScriptedModel {
    return new ScriptedModel(async function* (o) {
      for (let i = 0; i < 200 && !o.signal?.aborted; i++) {
        yield { type: 'text-delta', text: `w${i} ` };
        await new Promise((r) => setTimeout(r, 5));
      }
      yield { type: 'finish', finishReason: 'stop', usage: undefined };
    });
  }

  describe("an anonymous browser's conversation begun from its IP, moving to its cookie", () => {
    const curl: Principal = { userId: null, ip: '10.0.0.1', anonymousId: null };
    const browserA: Principal = { userId: null, ip: '10.0.0.1', anonymousId: 'cookie-a' };
    const browserB: Principal = { userId: null, ip: '10.0.0.1', anonymousId: 'cookie-b' };

    it('moves with the next turn a cookie holder makes there, its messages with it', async () => {
      const { store, pipeline } = setup();
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-1' }));
      const turn = await pipeline.prepare({ principal: browserA, message: 'second', conversationId: 'nat-1' });
      expect(turn.conversation.key).toBe(conversationKey('anon:cookie-a', 'nat-1'));
      expect((await drain(turn)).at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      expect(await store.getConversation('ip:10.0.0.1', 'nat-1')).toBeUndefined();
      expect((await store.recentMessages(conversationKey('anon:cookie-a', 'nat-1'), 10)).map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    });

    it('a cookie-less client and a browser sending to it at once: both turns end as turns, none fails', async () => {
      const { store, pipeline } = setup();
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-2' }));
      const [fromCurl, fromBrowser] = await Promise.all([
        pipeline.prepare({ principal: curl, message: 'from curl', conversationId: 'nat-2' }),
        pipeline.prepare({ principal: browserA, message: 'from the browser', conversationId: 'nat-2' }),
      ]);
      const [e1, e2] = await Promise.all([drain(fromCurl), drain(fromBrowser)]);
      expect(e1.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      expect(e2.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      // Both in hand at once: it stayed where it was this time; the browser's next turn moves it.
      const next = await pipeline.prepare({ principal: browserA, message: 'later', conversationId: 'nat-2' });
      expect(next.conversation.ownerId).toBe('anon:cookie-a');
      await drain(next);
      expect(await store.recentMessages(conversationKey('anon:cookie-a', 'nat-2'), 20)).toHaveLength(8);
    });

    it('two browsers sending to it at once: both turns end as turns, none fails, and it moves at most once', async () => {
      const { store, pipeline } = setup();
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-3' }));
      const [a, b] = await Promise.all([
        pipeline.prepare({ principal: browserA, message: 'A', conversationId: 'nat-3' }),
        pipeline.prepare({ principal: browserB, message: 'B', conversationId: 'nat-3' }),
      ]);
      const [ea, eb] = await Promise.all([drain(a), drain(b)]);
      expect(ea.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      expect(eb.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      const holders = await Promise.all(['ip:10.0.0.1', 'anon:cookie-a', 'anon:cookie-b'].map((o) => store.getConversation(o, 'nat-3')));
      expect(holders.filter((c) => c !== undefined)).toHaveLength(1);
    });

    it('with a coordinator (several nodes): the turn moves it and holds the new slot, the old one is free; a store error after the slot was taken frees it', async () => {
      const { slots, coordinator } = slotCoordinator();
      const store = new MemoryConversationStore();
      const local = new LocalModel({ tokenDelayMs: 0, contextTokens: 8192 });
      const models = new ModelRegistry({ factories: { local: { model: () => local } }, defaultModel: 'local' });
      const limits = { userLimit: 100, anonymousLimit: 100, authLimit: 10, windowMs: 60_000, ipv6Prefix: 56 };
      const pipeline = new ChatPipeline({ store, models, limiter: new MemoryRateLimiter(60_000), rateLimits: limits, turns: new TurnTracker(), coordinator, logger: silentLogger, options: OPTIONS });
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-6' }));
      const turn = await pipeline.prepare({ principal: browserA, message: 'second', conversationId: 'nat-6' });
      expect(turn.conversation.key).toBe(conversationKey('anon:cookie-a', 'nat-6'));
      expect([...slots]).toEqual([conversationKey('anon:cookie-a', 'nat-6')]);
      await drain(turn);
      expect(slots.size).toBe(0);

      await drain(await pipeline.prepare({ principal: curl, message: 'another', conversationId: 'nat-7' }));
      const getConversation = store.getConversation.bind(store);
      let calls = 0;
      store.getConversation = async (owner, id) => {
        if (++calls === 2) throw new Error('store hiccup'); // the check once the slot is taken
        return getConversation(owner, id);
      };
      await expect(pipeline.prepare({ principal: curl, message: 'again', conversationId: 'nat-7' })).rejects.toThrow('store hiccup');
      expect(slots.size).toBe(0);
      store.getConversation = getConversation;
      await drain(await pipeline.prepare({ principal: curl, message: 'and again', conversationId: 'nat-7' }));
    });

    it('with a coordinator: a stop that comes while the turn is admitted (its slot taken, its rate limit still being asked) stops it as it starts', async () => {
      const turns = new TurnTracker();
      const { slots, coordinator } = slotCoordinator(turns);
      const limiter = new MemoryRateLimiter(60_000);
      const consume = limiter.consume.bind(limiter);
      let asked!: () => void;
      const asking = new Promise<void>((r) => (asked = r));
      let answer!: () => void;
      const answered = new Promise<void>((r) => (answer = r));
      limiter.consume = async (key, limit) => {
        asked();
        await answered; // a distant shared limiter (Upstash in another region)
        return consume(key, limit);
      };
      const model = longReply();
      const store = new MemoryConversationStore();
      const models = new ModelRegistry({ factories: { local: { model: () => model } }, defaultModel: 'local:scripted' });
      const limits = { userLimit: 100, anonymousLimit: 100, authLimit: 10, windowMs: 60_000, ipv6Prefix: 56 };
      const pipeline = new ChatPipeline({ store, models, limiter, rateLimits: limits, turns, coordinator, logger: silentLogger, options: OPTIONS });
      const preparing = pipeline.prepare({ principal: alice, message: 'hi', conversationId: 'admitted' });
      await asking;
      const key = conversationKey('alice', 'admitted');
      expect(slots.has(key)).toBe(true);
      expect(turns.isRunning(key)).toBe(false);
      expect(await stopConversationTurn({ turns, coordinator }, key)).toBe(true);
      answer();
      const events = await drain(await preparing);
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stopped' });
      expect(events.filter((e) => e.type === 'delta').length).toBeLessThan(5);
      expect(slots.size).toBe(0);
      // The next turn of the conversation is not stopped by it.
      const next = await drain(await pipeline.prepare({ principal: alice, message: 'again', conversationId: 'admitted' }));
      expect(next.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    });

    it('with a coordinator: a stop for the new key that comes while the conversation moves to its cookie stops the turn as it starts', async () => {
      const turns = new TurnTracker();
      const { slots, coordinator } = slotCoordinator(turns);
      const model = longReply();
      const store = new MemoryConversationStore();
      const models = new ModelRegistry({ factories: { local: { model: () => model } }, defaultModel: 'local:scripted' });
      const limits = { userLimit: 100, anonymousLimit: 100, authLimit: 10, windowMs: 60_000, ipv6Prefix: 56 };
      const pipeline = new ChatPipeline({ store, models, limiter: new MemoryRateLimiter(60_000), rateLimits: limits, turns, coordinator, logger: silentLogger, options: OPTIONS });
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-8' }));
      const move = store.moveConversation.bind(store);
      let moving!: () => void;
      const started = new Promise<void>((r) => (moving = r));
      let finish!: () => void;
      const finished = new Promise<void>((r) => (finish = r));
      store.moveConversation = async (...args) => {
        moving();
        await finished; // a distant store
        return move(...args);
      };
      const preparing = pipeline.prepare({ principal: browserA, message: 'second', conversationId: 'nat-8' });
      await started;
      const newKey = conversationKey('anon:cookie-a', 'nat-8');
      expect(slots.has(newKey)).toBe(true);
      expect(await stopConversationTurn({ turns, coordinator }, newKey)).toBe(true);
      finish();
      const turn = await preparing;
      expect(turn.conversation.key).toBe(newKey);
      const events = await drain(turn);
      expect(events.at(-1)).toMatchObject({ type: 'end', finishReason: 'stopped' });
      expect(events.filter((e) => e.type === 'delta').length).toBeLessThan(5);
      expect(slots.size).toBe(0);
    });

    it('a turn that is refused (rate limit) moves nothing', async () => {
      const { store, pipeline } = setup(undefined, { userLimit: 100, anonymousLimit: 1, authLimit: 1, windowMs: 60_000, ipv6Prefix: 56 });
      await drain(await pipeline.prepare({ principal: curl, message: 'my notes', conversationId: 'nat-4' }));
      await expect(pipeline.prepare({ principal: browserA, message: 'hi', conversationId: 'nat-4' })).rejects.toMatchObject({ code: 'RATE_LIMIT' });
      expect(await store.getConversation('ip:10.0.0.1', 'nat-4')).toBeDefined();
      expect(await store.getConversation('anon:cookie-a', 'nat-4')).toBeUndefined();
    });

    it('a lookup that read it before another request moved it reads it again: the cookie-less client gets a conversation of its own', async () => {
      const { store, pipeline } = setup();
      await drain(await pipeline.prepare({ principal: curl, message: 'first', conversationId: 'nat-5' }));
      // The browser's turn moves it; a cookie-less request whose lookup was already under way comes next.
      const getConversation = store.getConversation.bind(store);
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let reads = 0;
      store.getConversation = async (owner, id) => {
        const found = await getConversation(owner, id);
        if (owner === 'ip:10.0.0.1' && id === 'nat-5' && reads++ === 0) await held;
        return found;
      };
      const late = pipeline.prepare({ principal: curl, message: 'from curl', conversationId: 'nat-5' });
      await drain(await pipeline.prepare({ principal: browserA, message: 'moved', conversationId: 'nat-5' }));
      release();
      const turn = await late;
      expect(turn.conversationCreated).toBe(true);
      expect((await drain(turn)).at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
      expect(await store.recentMessages(conversationKey('ip:10.0.0.1', 'nat-5'), 10)).toHaveLength(2);
      expect(await store.recentMessages(conversationKey('anon:cookie-a', 'nat-5'), 10)).toHaveLength(4);
    });
  });

  it('refuses a message over MAX_MESSAGE_CHARS whatever protocol hands it over, before counting or storing anything', async () => {
    const { store, pipeline } = setup(undefined, { userLimit: 1, anonymousLimit: 1, authLimit: 1, windowMs: 60_000, ipv6Prefix: 56 });
    await expect(pipeline.prepare({ principal: anon, message: 'x'.repeat(32_001), conversationId: 'long' })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(await store.getConversation('ip:10.0.0.1', 'long')).toBeUndefined();
    // Nothing was counted: the one allowed turn is still there.
    await pipeline.prepare({ principal: anon, message: 'x'.repeat(32_000) });
  });

  it('a flood of starts is refused at the rate limit before the start gate: only admitted turns queue there', async () => {
    const gate = new StartGate(1);
    const { pipeline } = setup(undefined, { userLimit: 3, anonymousLimit: 3, authLimit: 1, windowMs: 60_000, ipv6Prefix: 56 }, OPTIONS, { startGate: gate });
    const outcomes = Array.from({ length: 20 }, (_, i) => pipeline.prepare({ principal: anon, message: `flood ${i}` }).then(() => 'ok', (e: AppError) => e.code));
    const refusedEarly: string[] = [];
    for (const o of outcomes) void o.then((r) => r === 'RATE_LIMIT' && refusedEarly.push(r));
    await new Promise((r) => setTimeout(r, 0)); // microtasks and one pass: the gate lets one through per pass
    expect(gate.waiting).toBeLessThanOrEqual(2);
    expect(refusedEarly).toHaveLength(17);
    expect((await Promise.all(outcomes)).filter((o) => o === 'ok')).toHaveLength(3);
  });

  it('takes a burst in arrival order, perPass a pass: a request is checked in its pass and starts in it, without the start gate', async () => {
    const arrivalGate = new StartGate(2);
    const startGate = new StartGate(2);
    const { pipeline, limiter } = setup(undefined, undefined, OPTIONS, { arrivalGate, startGate });
    const checked: string[] = [];
    const consume = limiter.consume.bind(limiter);
    limiter.consume = (key, limit, windowMs) => {
      checked.push(key);
      return consume(key, limit, windowMs);
    };
    const prepared: number[] = [];
    let startsQueued = 0;
    const burst = Array.from({ length: 7 }, (_, i) =>
      pipeline.prepare({ principal: i % 2 ? alice : anon, message: `m${i}` }).then(() => {
        prepared.push(i);
        startsQueued = Math.max(startsQueued, startGate.waiting);
      }),
    );
    for (let i = 0; i < 20; i++) await Promise.resolve(); // microtasks only: still this pass
    expect(checked).toHaveLength(2);
    expect(prepared).toEqual([0, 1]);
    await Promise.all(burst);
    expect(prepared).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(checked).toHaveLength(7);
    expect(startsQueued).toBe(0);

    // An entry that gave the request its pass already (the HTTP routes) is not queued again.
    checked.length = 0;
    const again = Array.from({ length: 5 }, (_, i) => pipeline.prepare({ principal: anon, message: `a${i}`, arrivedInPass: arrivalGate.pass }));
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(checked).toHaveLength(5);
    await Promise.all(again);
  });

  it('a turn whose checks outlived its pass (a limiter over the network) waits for the start gate: a burst of answers starts perPass a pass', async () => {
    const arrivalGate = new StartGate(8);
    const startGate = new StartGate(2);
    const { pipeline, limiter } = setup(undefined, undefined, OPTIONS, { arrivalGate, startGate });
    const consume = limiter.consume.bind(limiter);
    // Every answer comes back in the same later pass, as a pipelined Redis reply would: after the
    // pass that let the requests through has ended (a timer alone can fire before that pass's
    // check phase when the loop is slow, as on a loaded CI machine).
    const answered = (async () => {
      while (arrivalGate.pass === 0) await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 5));
    })();
    limiter.consume = async (key, limit, windowMs) => {
      await answered;
      return consume(key, limit, windowMs);
    };
    const passes = passCounter();
    const passOf: number[] = [];
    let startsQueued = 0;
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        pipeline.prepare({ principal: anon, message: `slow ${i}` }).then(() => {
          passOf.push(passes.now());
          startsQueued = Math.max(startsQueued, startGate.waiting);
        }),
      ),
    );
    passes.stop();
    expect(startsQueued).toBeGreaterThan(0);
    const perPass = new Map<number, number>();
    for (const p of passOf) perPass.set(p, (perPass.get(p) ?? 0) + 1);
    expect(Math.max(...perPass.values())).toBeLessThanOrEqual(2);
    expect(perPass.size).toBeGreaterThanOrEqual(3);
  });

  it('a request queued at the arrival gate when a shutdown begins is refused with INTERNAL before its rate limit counts it', async () => {
    const arrivalGate = new StartGate(1);
    const { pipeline, limiter, turns } = setup(undefined, undefined, OPTIONS, { arrivalGate });
    const counted: string[] = [];
    const consume = limiter.consume.bind(limiter);
    limiter.consume = (key, limit, windowMs) => {
      counted.push(key);
      return consume(key, limit, windowMs);
    };
    const first = pipeline.prepare({ principal: anon, message: 'first' });
    const queued = [pipeline.prepare({ principal: anon, message: 'second' }), pipeline.prepare({ principal: alice, message: 'third' })];
    for (let i = 0; i < 20; i++) await Promise.resolve(); // this pass: only the first is through
    expect(arrivalGate.waiting).toBe(2);
    await turns.drain(0);
    await expect(first).resolves.toBeDefined();
    for (const q of queued) await expect(q).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/shutting down/) });
    expect(counted).toHaveLength(1);
  });

  it('counts one turn per prepare and refuses past the limit with RATE_LIMIT', async () => {
    const { pipeline } = setup(undefined, { userLimit: 3, anonymousLimit: 2, authLimit: 1, windowMs: 60_000, ipv6Prefix: 56 });
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
    const short = drain(await pipeline.prepare({ principal: anon, message: 'short', conversationId: 's' }));
    const long = drain(await pipeline.prepare({ principal: anon, message: 'long', conversationId: 'l' }));
    await new Promise((r) => setTimeout(r, 5));
    expect(turns.active).toBe(2);
    const result = await turns.drain(200);
    expect(result).toEqual({ finished: 1, aborted: 1 });
    const [shortEvents, longEvents] = await Promise.all([short, long]);
    expect(shortEvents.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    // The client of the long turn is still there: it is told why its reply stopped.
    expect(longEvents.at(-1)).toMatchObject({ type: 'error', error: { code: 'INTERNAL', message: expect.stringMatching(/shutting down/) } });
    expect((await store.recentMessages(anonKey('s'), 5)).at(-1)).toMatchObject({ finishReason: 'stop', content: 'xxx' });
    expect((await store.recentMessages(anonKey('l'), 5)).at(-1)).toMatchObject({ finishReason: 'aborted' });
    await expect(pipeline.prepare({ principal: anon, message: 'late' })).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});
