import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GeminiProvider } from '../../src/models/gemini-model.js';
import type { ModelMessage, ModelStreamPart } from '../../src/models/language-model.js';
import { silentLogger } from '../../src/logger.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { modelParts } from '../helpers/turns.js';
import { waitFor } from '../helpers/wait.js';
import { startGeminiStandin, type Standin } from '../standins/gemini-standin.js';

const KEY = 'gemini-request-shape-key';

/** The `contents` of a recorded streamGenerateContent request. */
function contentsOf(standin: Standin, index: number): unknown {
  return (standin.requests[index]?.body as { contents?: unknown } | undefined)?.contents;
}

describe('Gemini request contents: turns without text', () => {
  let standin: Standin;
  beforeAll(async () => {
    standin = await startGeminiStandin({ apiKey: KEY });
  });
  afterAll(() => standin.close());

  async function reply(messages: ModelMessage[]) {
    const provider = new GeminiProvider({ apiKey: KEY, baseUrl: standin.url, maxRetries: 0, timeoutMs: 5000, contextTokens: 128_000, logger: silentLogger });
    const parts: ModelStreamPart[] = [];
    let error: unknown;
    try {
      await modelParts(provider.model('gemini-2.5-flash'), { messages, signal: new AbortController().signal }, (part) => parts.push(part));
    } catch (err) {
      error = err;
    }
    return { error, text: parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('') };
  }

  it('the stand-in refuses an empty text part as Google does (so the tests below can fail)', async () => {
    const res = await fetch(`${standin.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'x-goog-api-key': KEY },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'q' }] }, { role: 'model', parts: [{ text: '' }] }, { role: 'user', parts: [{ text: 'q2' }] }] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { code: 400, status: 'INVALID_ARGUMENT', message: "* GenerateContentRequest.contents[1].parts[0].data: required oneof field 'data' must have one initialized field\n" },
    });
  });

  it('leaves out empty replies and joins the same-role neighbours they leave, parts in order', async () => {
    const from = standin.requests.length;
    const { error, text } = await reply([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: '' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: 'a2' },
      { role: 'user', content: 'q3' },
      { role: 'assistant', content: '' },
      { role: 'user', content: 'q4' },
    ]);
    expect(error).toBeUndefined();
    expect(text).toBe('Hello from the stand-in');
    expect(contentsOf(standin, from)).toEqual([
      { role: 'user', parts: [{ text: 'q1' }, { text: 'q2' }] },
      { role: 'model', parts: [{ text: 'a2' }] },
      { role: 'user', parts: [{ text: 'q3' }, { text: 'q4' }] },
    ]);
  });
});

describe('Gemini: a reply stopped before its first token does not poison its conversation', () => {
  let standin: Standin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startGeminiStandin({ apiKey: KEY });
    gw = await startGateway({ GEMINI_API_KEY: KEY, GEMINI_BASE_URL: standin.url, PROVIDER_MAX_RETRIES: '0', DEFAULT_MODEL: 'gemini-2.5-flash' });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  it('the next turn of the conversation is answered', async () => {
    const sessionId = 'gemini-empty-reply';
    // First turn: the model is slow to start and the client goes away before any text.
    standin.setScript(() => ({ tokens: ['late'], firstTokenDelayMs: 10_000 }));
    const ac = new AbortController();
    const first = await postChat(gw.url, { message: 'first question', sessionId }, {}, ac.signal);
    expect(first.status).toBe(200);
    await waitFor(() => standin.requests.length === 1);
    ac.abort();
    await standin.waitForAbort(5000);
    const stored = await waitFor(async () => (await messagesOf(gw, sessionId)).find((m) => m.role === 'assistant'));
    expect(stored).toMatchObject({ content: '', finishReason: 'aborted' });

    standin.setScript(() => ({ tokens: ['fine', ', thanks'] }));
    const events = await readSse(await postChat(gw.url, { message: 'second question', sessionId }));
    expect(events.at(-1)).toMatchObject({ done: true, sessionId });
    expect(contentOf(events)).toBe('fine, thanks');
    expect(contentsOf(standin, 1)).toEqual([{ role: 'user', parts: [{ text: 'first question' }, { text: 'second question' }] }]);
  });
});
