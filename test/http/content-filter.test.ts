/**
 * A reply the provider's content filter ended: stored as `stop` (the contract's finish reasons
 * have no other name for it), and said in the finish reasons of the protocols that have one:
 * `content_filter` on the OpenAI-compatible API, `content-filter` in the AI SDK's stream.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeChat, textOf } from '../helpers/ai-sdk-chat.js';
import { register, type Account } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const UPSTREAM_KEY = 'sk-upstream-filter';

describe('a reply ended by the content filter', () => {
  let upstream: Standin;
  let gw: TestGateway;
  let dana: Account;
  let client: OpenAI;

  beforeAll(async () => {
    upstream = await startOpenAIStandin({ apiKey: UPSTREAM_KEY });
    upstream.setScript(() => ({ tokens: ['Here is', ' how'], finishReason: 'content_filter' }));
    gw = await startGateway({ OPENAI_API_KEY: UPSTREAM_KEY, OPENAI_BASE_URL: upstream.url, DEFAULT_MODEL: 'gpt-4o-mini', PROVIDER_MAX_RETRIES: '0' });
    dana = await register(gw.url, 'dana-filter@example.com');
    client = new OpenAI({ apiKey: dana.token, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.destroy();
    await upstream.close();
  });

  it('the OpenAI-compatible API answers finish_reason content_filter, streamed and not', async () => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'How do I…' }] });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Here is how');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('content_filter');

    const whole = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'How do I…' }] });
    expect(whole.choices[0]).toMatchObject({ message: { content: 'Here is how' }, finish_reason: 'content_filter' });
  });

  it('the AI SDK stream finishes with content-filter; the reply is stored, as stop', async () => {
    const chat = new NodeChat({ id: 'filtered-ui', api: `${gw.url}/api/chat`, headers: { Authorization: `Bearer ${dana.token}` } });
    let finish: string | undefined;
    const raw = await fetch(`${gw.url}/api/chat`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${dana.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: 'filtered-raw', trigger: 'submit-message', messages: [{ id: 'm1', role: 'user', parts: [{ type: 'text', text: 'How do I…' }] }] }),
    });
    for (const line of (await raw.text()).split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const part = JSON.parse(line.slice(6)) as { type: string; finishReason?: string };
      if (part.type === 'finish') finish = part.finishReason;
    }
    expect(finish).toBe('content-filter');

    await chat.sendMessage({ text: 'How do I…' });
    expect(chat.error).toBeUndefined();
    expect(textOf(chat.messages[1])).toBe('Here is how');
    const stored = await messagesOf(gw, 'filtered-ui', dana.user.id);
    expect(stored[1]).toMatchObject({ role: 'assistant', content: 'Here is how', finishReason: 'stop' });
  });

  it('the SSE route keeps the contract: done with finishReason stop', async () => {
    const events = await readSse(await postChat(gw.url, { message: 'How do I…' }, { Authorization: `Bearer ${dana.token}` }));
    expect(contentOf(events)).toBe('Here is how');
    expect(events.at(-1)).toMatchObject({ done: true, finishReason: 'stop' });
  });
});
