/**
 * src/chat/resume-target.ts: "those of a deleted conversation (its messages, the user's words
 * among them) must not come back through a resume". Kept turn logs are keyed by (owner, id) and
 * outlive a DELETE: once the same id is used again (seed 002 clients always send 'my-session'),
 * a resume must not reach a turn of the deleted conversation, while every turn of the current
 * one (its first, a later one, an earlier one named by its Last-Event-ID) stays resumable.
 */
import { describe, expect, it } from 'vitest';
import { ChatPipeline } from '../../src/chat/chat-pipeline.js';
import type { Principal } from '../../src/chat/principal.js';
import { findResumable, hasEventsToSend } from '../../src/chat/resume-target.js';
import { TurnTracker } from '../../src/chat/turn-tracker.js';
import { InProcessTurnStreams } from '../../src/chat/turn-streams.js';
import { silentLogger } from '../../src/logger.js';
import { LocalModel } from '../../src/models/local-model.js';
import { ModelRegistry } from '../../src/models/model-registry.js';
import { MemoryRateLimiter } from '../../src/ratelimit/memory-rate-limiter.js';
import { conversationKey } from '../../src/stores/conversation-store.js';
import { MemoryConversationStore } from '../../src/stores/memory-conversation-store.js';
import { bearer, register } from '../helpers/accounts.js';
import { gatewayForSuite } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { runTurn } from '../helpers/turns.js';

const idsOf = (raw: string) => [...raw.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
const framesOf = (raw: string) => raw.split('\n\n').filter(Boolean).map((f) => `${f}\n\n`);

describe('resume after the conversation was deleted and its id reused (HTTP)', () => {
  const gw = gatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: 'false' });
  const resume = (headers: Record<string, string>, sessionId = 'my-session') => fetch(`${gw().url}/api/v2/ai/chat/stream?sessionId=${sessionId}`, { headers });

  it('neither the GET resume nor a re-POST with the old Last-Event-ID replays the deleted reply; the new conversation resumes', async () => {
    const user = await register(gw().url, 'deleter@example.com');
    const sessionId = 'my-session';
    const first = await (await postChat(gw().url, { message: 'my SECRET-DELETED words', sessionId }, bearer(user))).text();
    expect(contentOf(await readSse(new Response(first)))).toContain('SECRET-DELETED');
    const oldIds = idsOf(first);

    const del = await fetch(`${gw().url}/api/v2/conversations/${sessionId}`, { method: 'DELETE', headers: bearer(user) });
    expect(del.status).toBe(200);

    // The client carries on with the same id: a new conversation.
    const fresh = await (await postChat(gw().url, { message: 'a fresh start', sessionId }, bearer(user))).text();
    expect(contentOf(await readSse(new Response(fresh)))).not.toContain('SECRET-DELETED');

    for (const oldId of [oldIds[0]!, oldIds.at(-2)!]) {
      const resumed = await resume({ ...bearer(user), 'Last-Event-ID': oldId });
      expect(resumed.status).toBe(204);
      expect(await resumed.text()).toBe('');
      // A client library re-POSTing the lost request: no replay, and no second turn either.
      const reposted = await postChat(gw().url, { message: 'my SECRET-DELETED words', sessionId }, { ...bearer(user), 'Last-Event-ID': oldId });
      expect(reposted.status).toBe(204);
      expect(await reposted.text()).toBe('');
    }

    // The new conversation's first turn is resumable: whole, and from any of its events.
    expect(await (await resume(bearer(user))).text()).toBe(fresh);
    const freshIds = idsOf(fresh);
    const resumed = await resume({ ...bearer(user), 'Last-Event-ID': freshIds[0]! });
    expect(resumed.status).toBe(200);
    expect(await resumed.text()).toBe(framesOf(fresh).slice(1).join(''));
  });

  it('a live conversation: its first turn, a later one, and an earlier one named by its Last-Event-ID all resume', async () => {
    const user = await register(gw().url, 'keeper@example.com');
    const sessionId = 'kept-session';
    const one = await (await postChat(gw().url, { message: 'first question', sessionId, maxTokens: 6 }, bearer(user))).text();
    expect(await (await resume(bearer(user), sessionId)).text()).toBe(one);
    const oneIds = idsOf(one);
    expect(await (await resume({ ...bearer(user), 'Last-Event-ID': oneIds[0]! }, sessionId)).text()).toBe(framesOf(one).slice(1).join(''));

    const two = await (await postChat(gw().url, { message: 'second question', sessionId, maxTokens: 6 }, bearer(user))).text();
    expect(await (await resume(bearer(user), sessionId)).text()).toBe(two);
    expect(await (await resume({ ...bearer(user), 'Last-Event-ID': idsOf(two)[0]! }, sessionId)).text()).toBe(framesOf(two).slice(1).join(''));
    // The earlier turn, no longer the latest: the rest of it.
    const earlier = await resume({ ...bearer(user), 'Last-Event-ID': oneIds[0]! }, sessionId);
    expect(earlier.status).toBe(200);
    expect(await earlier.text()).toBe(framesOf(one).slice(1).join(''));
  });
});

describe('findResumable and turns of an earlier conversation under the same id', () => {
  const alice: Principal = { userId: 'alice', ip: '10.0.0.2', anonymousId: null };
  const key = conversationKey('alice', 'c');

  function setup() {
    const store = new MemoryConversationStore();
    const streams = new InProcessTurnStreams({ ttlMs: 60_000, maxBytes: 10_000_000 });
    const pipeline = new ChatPipeline({
      store,
      models: new ModelRegistry({ factories: { local: { model: () => new LocalModel({ tokenDelayMs: 0, contextTokens: 8192 }) } }, defaultModel: 'local' }),
      limiter: new MemoryRateLimiter(60_000),
      rateLimits: { userLimit: 100, anonymousLimit: 20, authLimit: 10, windowMs: 60_000, ipv6Prefix: 56 },
      turns: new TurnTracker(),
      streams,
      logger: silentLogger,
      options: { systemPrompt: 'SYS', historyLimit: 20, maxOutputTokens: 50, maxMessageChars: 32_000, firstByteTimeoutMs: 5_000, idleTimeoutMs: 5_000, slowClientTimeoutMs: 5_000 },
    });
    const chat = async (message: string) => runTurn(await pipeline.prepare({ principal: alice, message, conversationId: 'c', maxTokens: 4 }));
    return { store, streams, chat };
  }

  it("the first turn of a new conversation is resumable though its store dated the conversation after the user message's date", async () => {
    const { store, streams, chat } = setup();
    // The memory and MongoDB stores create the conversation (dated by the clock) as they store its
    // first message, which the pipeline dated earlier: a write that takes a few ms shows it.
    const append = store.appendMessage.bind(store);
    store.appendMessage = async (m) => {
      await new Promise((r) => setTimeout(r, 5));
      return append(m);
    };
    await chat('hello');
    const conversation = await store.getConversation('alice', 'c');
    const latest = await streams.latest(key);
    const start = await streams.startOf(key, latest!.turnId);
    expect(start?.storedAt).toBeGreaterThanOrEqual(conversation!.createdAt);
    const target = await findResumable(streams, store, alice, 'c');
    expect(target).toMatchObject({ conversationKey: key, turnId: latest!.turnId, afterSeq: 0, ended: true });
    expect(await hasEventsToSend(streams, target!)).toBe(true);
  });

  it("a kept turn of a deleted conversation is not resumed once a new one has the id, with or without a Last-Event-ID (Socket.IO resumes too)", async () => {
    const { store, streams, chat } = setup();
    await chat('my SECRET words');
    const old = (await streams.latest(key))!;
    await store.deleteConversation('alice', 'c');
    // Deleted and nothing else: nothing to resume.
    expect(await findResumable(streams, store, alice, 'c')).toBeUndefined();

    // The id in use again, the new conversation with no recorded turn yet (its first turn's log is
    // gone, or it was created without one): the latest kept turn is the deleted conversation's.
    await new Promise((r) => setTimeout(r, 2));
    await store.ensureConversation({ ownerId: 'alice', id: 'c', title: 'new' });
    expect((await streams.latest(key))?.turnId).toBe(old.turnId);
    expect(await findResumable(streams, store, alice, 'c')).toBeUndefined();
    expect(await findResumable(streams, store, alice, 'c', { turnId: old.turnId, seq: 1 })).toBeUndefined();

    // A turn of the new conversation: resumable, and a Last-Event-ID of the old one sends nothing.
    await chat('a fresh start');
    const fresh = (await streams.latest(key))!;
    expect(fresh.turnId).not.toBe(old.turnId);
    expect(await findResumable(streams, store, alice, 'c')).toMatchObject({ turnId: fresh.turnId, afterSeq: 0 });
    const named = await findResumable(streams, store, alice, 'c', { turnId: old.turnId, seq: 1 });
    expect(named).toBeDefined();
    expect(await hasEventsToSend(streams, named!)).toBe(false);
  });

  it('an earlier turn of the same conversation, named by its Last-Event-ID, stays resumable', async () => {
    const { store, streams, chat } = setup();
    await chat('one');
    const first = (await streams.latest(key))!;
    await chat('two');
    const target = await findResumable(streams, store, alice, 'c', { turnId: first.turnId, seq: 1 });
    expect(target).toEqual({ conversationKey: key, turnId: first.turnId, afterSeq: 1, ended: true });
    expect(await hasEventsToSend(streams, target!)).toBe(true);
  });
});
