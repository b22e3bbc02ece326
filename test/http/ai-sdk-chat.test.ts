/**
 * `/api/chat` driven by the AI SDK's own `AbstractChat` + `DefaultChatTransport` (what
 * `useChat` runs in a browser): send, stream, stop, reload the history; and the raw stream.
 */
import type { UIMessage } from 'ai';
import { NodeChat, textOf } from '../helpers/ai-sdk-chat.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register, type Account } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const UPSTREAM_KEY = 'sk-upstream-ai-sdk';


describe('AI SDK UI message stream (/api/chat)', () => {
  let upstream: Standin;
  let gw: TestGateway;
  let carol: Account;
  let headers: Record<string, string>;

  beforeAll(async () => {
    upstream = await startOpenAIStandin({ apiKey: UPSTREAM_KEY });
    gw = await startGateway({ OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: upstream.url, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_MAX_RETRIES: '0' });
    carol = await register(gw.url, 'carol-aisdk@example.com');
    headers = { Authorization: `Bearer ${carol.token}` };
  });
  afterAll(async () => {
    await gw.destroy();
    await upstream.close();
  });

  it('a Chat round trip: send and stream, continue from the store, stop mid-reply, reload the history with the partial reply kept', async () => {
    const chat = new NodeChat({ id: 'ui-chat-1', api: `${gw.url}/api/chat`, headers });
    upstream.setScript(() => ({ tokens: ['Hi', ' Carol', '!'], usage: { inputTokens: 5, outputTokens: 3 } }));
    await chat.sendMessage({ text: 'Hello, I am Carol' });
    expect(chat.error).toBeUndefined();
    expect(chat.status).toBe('ready');
    expect(chat.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(textOf(chat.messages[1])).toBe('Hi Carol!');
    expect(chat.messages[1]!.metadata).toMatchObject({ conversationId: 'ui-chat-1', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 3 } });

    upstream.setScript(() => ({ tokens: ['You', ' are', ' Carol'] }));
    await chat.sendMessage({ text: 'Who am I?' });
    expect(textOf(chat.messages[3])).toBe('You are Carol');
    // Only the new message came from the client; the rest of the context came from the store.
    const sent = JSON.stringify(upstream.requests.at(-1)!.body);
    expect(sent).toContain('Hello, I am Carol');
    expect(sent).toContain('Hi Carol!');

    upstream.setScript(() => ({ tokens: Array.from({ length: 200 }, (_, i) => `w${i} `), delayMs: 15 }));
    const sending = chat.sendMessage({ text: 'Tell me everything' });
    await waitFor(() => textOf(chat.messages[5]).length > 6, 3000);
    await chat.stop();
    await sending;
    expect(await upstream.waitForAbort(3000)).toBeGreaterThan(0);
    const partial = textOf(chat.messages[5]);
    expect(partial.startsWith('w0 w1 ')).toBe(true);

    // The partial reply was stored (as "aborted": the client went away) and comes back after a reload.
    await waitFor(async () => (await messagesOf(gw, 'ui-chat-1', carol.user.id)).length === 6, 3000);
    const stored = await messagesOf(gw, 'ui-chat-1', carol.user.id);
    expect(stored[5]).toMatchObject({ role: 'assistant', finishReason: 'aborted' });
    expect(partial.startsWith(stored[5]!.content) || stored[5]!.content.startsWith(partial)).toBe(true);

    const res = await fetch(`${gw.url}/api/chat/ui-chat-1/messages`, { headers });
    expect(res.status).toBe(200);
    const history = (await res.json()) as UIMessage[];
    expect(history.map((m) => [m.role, textOf(m)])).toEqual(stored.map((m) => [m.role, m.content]));
    const reloaded = new NodeChat({ id: 'ui-chat-1', api: `${gw.url}/api/chat`, headers, messages: history });
    expect(reloaded.messages).toHaveLength(6);
  });

  it('sends the protocol parts in order, with the v1 header', async () => {
    upstream.setScript(() => ({ tokens: ['A', 'B'], delayMs: 15 }));
    const res = await fetch(`${gw.url}/api/chat`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: 'ui-raw', trigger: 'submit-message', messages: [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 'hi' }] }] }),
    });
    expect(res.headers.get('x-vercel-ai-ui-message-stream')).toBe('v1');
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = (await res.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const parts = events.slice(0, -1).map((e) => JSON.parse(e) as { type: string; delta?: string });
    expect(parts.map((p) => p.type)).toEqual(['start', 'start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'finish-step', 'finish']);
    expect(parts.filter((p) => p.type === 'text-delta').map((p) => p.delta)).toEqual(['A', 'B']);
  });

  it('a provider failure is an error part with the code; the Chat shows it', async () => {
    upstream.setScript(() => ({ tokens: [], status: 500 }));
    const chat = new NodeChat({ id: 'ui-chat-err', api: `${gw.url}/api/chat`, headers });
    await chat.sendMessage({ text: 'fail' });
    expect(chat.status).toBe('error');
    expect(chat.error?.message).toContain('PROVIDER_ERROR');
  });

  it('refuses bad input before streaming, and another owner\'s history is NOT_FOUND', async () => {
    const post = (body: unknown) =>
      fetch(`${gw.url}/api/chat`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ id: 'bad/id', messages: [{ role: 'user', parts: [{ type: 'text', text: 'x' }] }] })).status).toBe(400);
    expect((await post({ id: 'ok', messages: [] })).status).toBe(400);
    expect((await post({ id: 'ok', messages: [{ role: 'assistant', parts: [{ type: 'text', text: 'x' }] }] })).status).toBe(400);
    const noText = await post({ id: 'ok', messages: [{ role: 'user', parts: [{ type: 'file', url: 'x' }] }] });
    expect(noText.status).toBe(400);
    expect(await noText.json()).toMatchObject({ code: 'BAD_REQUEST' });

    const dave = await register(gw.url, 'dave-aisdk@example.com');
    const other = await fetch(`${gw.url}/api/chat/ui-chat-1/messages`, { headers: { Authorization: `Bearer ${dave.token}` } });
    expect(other.status).toBe(404);
  });
});
