import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGeminiStandin } from '../standins/gemini-standin.js';
import { startOpenAIStandin } from '../standins/openai-standin.js';
import type { Standin } from '../standins/standin-script.js';

const OPENAI_KEY = 'sk-gateway-secret-openai';
const GEMINI_KEY = 'gemini-gateway-secret';

describe('SSE chat through remote providers', () => {
  let openai: Standin;
  let gemini: Standin;
  let gw: TestGateway;

  beforeAll(async () => {
    openai = await startOpenAIStandin({ apiKey: OPENAI_KEY });
    gemini = await startGeminiStandin({ apiKey: GEMINI_KEY });
    gw = await startGateway({
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: openai.url,
      GEMINI_API_KEY: GEMINI_KEY,
      GEMINI_BASE_URL: gemini.url,
      PROVIDER_MAX_RETRIES: '0',
    });
  });
  afterAll(async () => {
    await gw.destroy();
    await openai.close();
    await gemini.close();
  });

  for (const [model, standin] of [
    ['gpt-4o-mini', () => openai],
    ['gemini-2.0-flash', () => gemini],
  ] as const) {
    it(`${model}: relays tokens, stores the reply with usage, sends history on the next turn`, async () => {
      // Paced, so each token arrives on its own and goes out as its own event.
      standin().setScript(() => ({ tokens: ['Bon', 'jour', '!'], usage: { inputTokens: 12, outputTokens: 3 }, delayMs: 15 }));
      const first = await readSse(await postChat(gw.url, { message: 'Say hello in French', model }));
      expect(first.filter((e) => 'content' in e).map((e) => e.content)).toEqual(['Bon', 'jour', '!']);
      const sessionId = first.at(-1)!.sessionId as string;
      expect(first.at(-1)).toMatchObject({ done: true, finishReason: 'stop', usage: { inputTokens: 12, outputTokens: 3 } });

      await readSse(await postChat(gw.url, { message: 'Again', model, sessionId }));
      const body = JSON.stringify(standin().requests.at(-1)!.body);
      expect(body).toContain('Say hello in French');
      expect(body).toContain('Bonjour!');
      expect(body).toContain('Again');
      const items = await messagesOf(gw, sessionId);
      expect(items[1]).toMatchObject({ role: 'assistant', content: 'Bonjour!', model: model.startsWith('gpt') ? 'openai:gpt-4o-mini' : 'gemini:gemini-2.0-flash' });
    });

    it(`${model}: the response head goes out with a quick first event, and on its own after 50 ms when the model is slow`, async () => {
      standin().setScript(() => ({ tokens: ['slow'], firstTokenDelayMs: 400 }));
      const sent = performance.now();
      const res = await postChat(gw.url, { message: 'take your time', model });
      const headersAfter = performance.now() - sent;
      const events = await readSse(res);
      const lastAfter = performance.now() - sent;
      expect(res.status).toBe(200);
      expect(headersAfter).toBeLessThan(300);
      expect(lastAfter).toBeGreaterThanOrEqual(350);
      expect(contentOf(events)).toBe('slow');
    });

    it(`${model}: a provider failure before streaming is an SSE error event with PROVIDER_ERROR, no upstream detail`, async () => {
      standin().setScript(() => ({ tokens: [], status: 500, errorMessage: `internal trace id 42 ${OPENAI_KEY}` }));
      const events = await readSse(await postChat(gw.url, { message: 'hi', model }));
      expect(events).toEqual([{ error: expect.stringMatching(/internal error \(HTTP 500\)/), code: 'PROVIDER_ERROR', sessionId: expect.any(String) }]);
      expect(JSON.stringify(events)).not.toMatch(/trace id|sk-gateway/);
    });

    it(`${model}: a stream cut mid-way ends with an error event and the partial reply is stored as error`, async () => {
      standin().setScript(() => ({ tokens: ['a', 'b', 'c', 'd'], cutAfter: 2 }));
      const events = await readSse(await postChat(gw.url, { message: 'hi', model }));
      expect(contentOf(events)).toBe('ab');
      expect(events.at(-1)).toMatchObject({ code: 'PROVIDER_ERROR', error: expect.stringMatching(/ended unexpectedly/) });
      const items = await messagesOf(gw, events.at(-1)!.sessionId as string);
      expect(items.at(-1)).toMatchObject({ role: 'assistant', content: 'ab', finishReason: 'error' });
    });

    it(`${model}: a client disconnect reaches the provider as a closed connection within a fraction of a second`, async () => {
      standin().setScript(() => ({ tokens: Array.from({ length: 200 }, (_, i) => `t${i} `), delayMs: 15 }));
      const controller = new AbortController();
      const abortSeen = standin().waitForAbort(3000);
      const res = await postChat(gw.url, { message: 'long please', model, sessionId: `cut-${model.replace(".", "_")}` }, {}, controller.signal);
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      const cutAt = Date.now();
      controller.abort();
      await abortSeen;
      expect(Date.now() - cutAt).toBeLessThan(500);
      const reply = await waitFor(async () => (await messagesOf(gw, `cut-${model.replace(".", "_")}`)).find((m) => m.role === 'assistant'));
      expect(reply.finishReason).toBe('aborted');
      expect(reply.content).toMatch(/^t0 /);
    });
  }

  it('the provider keys never reach the client', async () => {
    openai.setScript(() => ({ tokens: ['x'] }));
    const res = await postChat(gw.url, { message: 'hi', model: 'gpt-4o-mini' });
    const text = await res.text();
    expect(text).not.toContain(OPENAI_KEY);
    expect(JSON.stringify([...res.headers])).not.toContain(OPENAI_KEY);
  });
});
