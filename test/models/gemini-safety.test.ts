/**
 * Gemini's safety stops, through the gateway: a prompt Google blocks (`promptFeedback.blockReason`,
 * no candidate) and a reply its filter ends (`finishReason: SAFETY`) are replies the content
 * filter ended, not cut streams: `content_filter` on /v1, an empty or partial reply elsewhere.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { startGeminiStandin, type Standin } from '../standins/gemini-standin.js';

const KEY = 'gemini-safety-key';

describe('Gemini safety stops', () => {
  let standin: Standin;
  let gw: TestGateway;
  let client: OpenAI;
  beforeAll(async () => {
    standin = await startGeminiStandin({ apiKey: KEY });
    gw = await startGateway({ GEMINI_API_KEY: KEY, GEMINI_BASE_URL: standin.url, PROVIDER_MAX_RETRIES: '0' });
    const account = await register(gw.url, 'gemini-safety@example.com');
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: account.token, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  it('a blocked prompt is an empty reply ended by the filter: content_filter on /v1, streamed and not', async () => {
    standin.setScript(() => ({ tokens: [], blockedPrompt: 'SAFETY' }));
    const stream = await client.chat.completions.create({ model: 'gemini-2.5-flash', stream: true, messages: [{ role: 'user', content: 'something blocked' }] });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('content_filter');

    const whole = await client.chat.completions.create({ model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'something blocked' }] });
    expect(whole.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'content_filter' });
  });

  it('the SSE route ends a blocked prompt with done, not a provider error; the conversation goes on', async () => {
    standin.setScript(() => ({ tokens: [], blockedPrompt: 'PROHIBITED_CONTENT' }));
    const blocked = await readSse(await postChat(gw.url, { message: 'something blocked', model: 'gemini-2.5-flash' }));
    expect(blocked.at(-1)).toMatchObject({ done: true, finishReason: 'stop' });
    expect(blocked.some((e) => 'error' in e)).toBe(false);
    standin.setScript(() => ({ tokens: ['Fine', '.'] }));
    const next = await readSse(await postChat(gw.url, { message: 'something else', model: 'gemini-2.5-flash', sessionId: blocked.at(-1)!.sessionId }));
    expect(contentOf(next)).toBe('Fine.');
  });

  it('a reply the filter ends mid-way keeps its text, with content_filter on /v1', async () => {
    standin.setScript(() => ({ tokens: ['Here is', ' how'], finishReason: 'content_filter' }));
    const stream = await client.chat.completions.create({ model: 'gemini-2.5-flash', stream: true, messages: [{ role: 'user', content: 'How do I…' }] });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Here is how');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('content_filter');
  });
});
