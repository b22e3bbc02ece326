/**
 * Drives the OpenAI and Gemini stand-ins with the real SDKs, so the wire formats are checked
 * against the real parsers, and records what each SDK does on a cut stream and on abort.
 */
import OpenAI from 'openai';
import { ApiError, GoogleGenAI } from '@google/genai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGeminiStandin } from './gemini-standin.js';
import { startOpenAIStandin } from './openai-standin.js';
import {
  DEFAULT_TEXT,
  DEFAULT_TOKENS,
  defaultScript,
  deterministicEmbedding,
  estimateTokens,
  type Standin,
} from './standin-script.js';

const OPENAI_KEY = 'sk-standin-test-key-0123456789';
const GEMINI_KEY = 'AIza-standin-test-key';
const MODEL = 'gpt-4o-mini';
const GEMINI_MODEL = 'gemini-2.0-flash';

function manyTokens(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `t${i} `);
}

/** Parses an SSE body into the `data:` payloads, using the given event separator. */
function sseData(raw: string, separator: string): string[] {
  return raw
    .split(separator)
    .filter((e) => e.length > 0)
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      return e.slice('data: '.length);
    });
}

function f32(values: Float32Array): number[] {
  return Array.from(values);
}

describe('OpenAI stand-in with the real openai SDK', () => {
  let standin: Standin;
  let client: OpenAI;

  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: OPENAI_KEY });
    client = new OpenAI({ apiKey: OPENAI_KEY, baseURL: standin.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await standin.close();
  });
  beforeEach(() => {
    standin.setScript(defaultScript);
  });

  it('serves on loopback with a /v1 base URL', () => {
    expect(standin.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it('streams text, finish_reason and usage (include_usage) through the SDK', async () => {
    standin.setScript(() => ({ tokens: [...DEFAULT_TOKENS], usage: { inputTokens: 11, outputTokens: 5 } }));
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let roles = 0;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.model).toBe(MODEL);
      expect(chunk.id).toMatch(/^chatcmpl-/);
      const choice = chunk.choices[0];
      if (choice?.delta.role === 'assistant') roles++;
      text += choice?.delta.content ?? '';
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(DEFAULT_TEXT);
    expect(text).toBe('Hello from the stand-in');
    expect(finish).toBe('stop');
    expect(roles).toBe(1);
    // role chunk + 5 tokens + finish chunk + usage chunk
    expect(chunks).toBe(8);
    expect(usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });

    const rec = standin.requests.at(-1);
    expect(rec?.method).toBe('POST');
    expect(rec?.path).toBe('/v1/chat/completions');
    expect(rec?.headers['authorization']).toBe(`Bearer ${OPENAI_KEY}`);
    expect(rec?.body).toMatchObject({
      model: MODEL,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Say hello' }],
    });
  });

  it('puts the exact real chunk shapes on the wire', async () => {
    standin.setScript(() => ({ tokens: ['Hi', ' "there"'], usage: { inputTokens: 3, outputTokens: 2 } }));
    const res = await fetch(`${standin.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPENAI_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const raw = await res.text();
    expect(raw.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = sseData(raw, '\n\n');
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
    expect(chunks).toHaveLength(5);
    const [role, t1, t2, fin, use] = chunks;
    expect(role).toMatchObject({
      object: 'chat.completion.chunk',
      model: MODEL,
      system_fingerprint: 'fp_x',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
      usage: null,
    });
    expect(typeof role?.['created']).toBe('number');
    expect(t1?.['choices']).toEqual([{ index: 0, delta: { content: 'Hi' }, logprobs: null, finish_reason: null }]);
    expect(t2?.['choices']).toEqual([{ index: 0, delta: { content: ' "there"' }, logprobs: null, finish_reason: null }]);
    expect(t1?.['usage']).toBeNull();
    expect(fin?.['choices']).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]);
    expect(fin?.['usage']).toBeNull();
    expect(use?.['choices']).toEqual([]);
    expect(use?.['usage']).toMatchObject({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    // Every chunk of one completion shares id and created.
    expect(new Set(chunks.map((c) => c['id'])).size).toBe(1);
    expect(new Set(chunks.map((c) => c['created'])).size).toBe(1);
  });

  it('omits the usage chunk (and usage keys) without include_usage; reports length finish', async () => {
    standin.setScript(() => ({ tokens: ['a', 'b', 'c'], finishReason: 'length' }));
    const res = await fetch(`${standin.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPENAI_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], stream: true }),
    });
    const events = sseData(await res.text(), '\n\n');
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
    expect(chunks).toHaveLength(5); // role + 3 tokens + finish
    for (const c of chunks) expect('usage' in c).toBe(false);
    expect(chunks.at(-1)?.['choices']).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }]);
  });

  it('answers non-streamed completions with a chat.completion and default usage', async () => {
    const content = 'Tell me something nice';
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content }],
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe(MODEL);
    expect(completion.choices[0]?.message).toMatchObject({ role: 'assistant', content: DEFAULT_TEXT });
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage).toMatchObject({
      prompt_tokens: estimateTokens(content),
      completion_tokens: DEFAULT_TOKENS.length,
      total_tokens: estimateTokens(content) + DEFAULT_TOKENS.length,
    });
    expect(completion._request_id).toMatch(/^req_/);
  });

  it('returns deterministic embeddings (SDK default base64 path and float path)', async () => {
    const viaBase64 = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello world' });
    expect(viaBase64.object).toBe('list');
    expect(viaBase64.model).toBe('text-embedding-3-small');
    expect(viaBase64.data).toHaveLength(1);
    expect(viaBase64.data[0]?.embedding).toHaveLength(1536);
    expect(viaBase64.data[0]?.embedding).toEqual(f32(deterministicEmbedding('hello world', 1536)));
    expect(viaBase64.usage).toEqual({ prompt_tokens: estimateTokens('hello world'), total_tokens: estimateTokens('hello world') });
    // The SDK asked for base64 on the wire.
    expect(standin.requests.at(-1)?.body).toMatchObject({ encoding_format: 'base64' });

    const viaFloat = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['a', 'bb'],
      dimensions: 8,
      encoding_format: 'float',
    });
    expect(viaFloat.data.map((d) => d.index)).toEqual([0, 1]);
    expect(viaFloat.data[0]?.embedding).toEqual(f32(deterministicEmbedding('a', 8)));
    expect(viaFloat.data[1]?.embedding).toEqual(f32(deterministicEmbedding('bb', 8)));
    const norm = Math.hypot(...(viaFloat.data[1]?.embedding ?? []));
    expect(norm).toBeCloseTo(1, 5);
    // Same text → same vector; different text → different vector.
    expect(deterministicEmbedding('a', 8)).toEqual(deterministicEmbedding('a', 8));
    expect(f32(deterministicEmbedding('a', 8))).not.toEqual(f32(deterministicEmbedding('b', 8)));
  });

  it('enforces the documented embedding limits and honours the embedding script fields', async () => {
    const reject = (input: unknown) =>
      client.embeddings.create({ model: 'text-embedding-3-small', input: input as string[] }).then(
        () => undefined,
        (e: unknown) => e,
      );
    for (const input of [[''], Array.from({ length: 2049 }, () => 'x'), ['x'.repeat(4 * 8192 + 4)], Array.from({ length: 40 }, () => 'y'.repeat(32_000))]) {
      const err = await reject(input);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    }
    const ok = await client.embeddings.create({ model: 'text-embedding-3-small', input: Array.from({ length: 2048 }, () => 'x'), dimensions: 4 });
    expect(ok.data).toHaveLength(2048);

    standin.setScript(() => ({ tokens: ['x'], delayMs: 150, embeddingDimensions: 3, embeddingScale: 2, reverseEmbeddings: true }));
    const t0 = performance.now();
    const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 8 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(res.data.map((d) => d.index)).toEqual([1, 0]);
    expect(Array.from(res.data[1]!.embedding)).toEqual(f32(deterministicEmbedding('a', 3, 2)));
    expect(Math.hypot(...res.data[1]!.embedding)).toBeCloseTo(2, 5);
  });

  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toContain('gpt-4o-mini');
  });

  it('rejects a bad key with a 401 that the SDK maps to AuthenticationError', async () => {
    const bad = new OpenAI({ apiKey: 'sk-wrong-key-000000000000', baseURL: standin.url, maxRetries: 0 });
    const err: unknown = await bad.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const apiErr = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect(apiErr.status).toBe(401);
    expect(apiErr.code).toBe('invalid_api_key');
    expect(apiErr.type).toBe('invalid_request_error');
    expect(apiErr.message).toContain('Incorrect API key provided');
  });

  it('maps scripted 500 / 429 / 400 to the SDK error classes with the real error JSON', async () => {
    standin.setScript(() => ({ tokens: [], status: 500 }));
    const e500: unknown = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true })
      .then(() => undefined, (e: unknown) => e);
    expect(e500).toBeInstanceOf(OpenAI.APIError);
    expect(e500).toBeInstanceOf(OpenAI.InternalServerError);
    expect((e500 as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
    expect((e500 as InstanceType<typeof OpenAI.APIError>).type).toBe('server_error');
    expect((e500 as Error).message).toContain('The server had an error while processing your request.');

    standin.setScript(() => ({ tokens: [], status: 429 }));
    const e429: unknown = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .then(() => undefined, (e: unknown) => e);
    expect(e429).toBeInstanceOf(OpenAI.RateLimitError);
    expect((e429 as InstanceType<typeof OpenAI.APIError>).code).toBe('rate_limit_exceeded');

    standin.setScript(() => ({ tokens: [], status: 400, errorMessage: 'context too long' }));
    const e400: unknown = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .then(() => undefined, (e: unknown) => e);
    expect(e400).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e400 as InstanceType<typeof OpenAI.APIError>).type).toBe('invalid_request_error');
    expect((e400 as Error).message).toContain('context too long');
  });

  it('cut stream: the SDK iterator THROWS a raw undici TypeError("terminated") after the chunks that arrived', async () => {
    // Observed with openai 6.30.1 on Node 20: the error is NOT wrapped in an OpenAI.APIError /
    // APIConnectionError; it is fetch's `TypeError: terminated` whose `cause` is undici's
    // SocketError ('other side closed', code UND_ERR_SOCKET). Chunks before the cut are yielded.
    standin.setScript(() => ({ tokens: ['a', 'b', 'c', 'd'], cutAfter: 2 }));
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let caught: unknown;
    try {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
    } catch (e) {
      caught = e;
    }
    expect(text).toBe('ab');
    expect(finish).toBeNull();
    expect(caught).toBeInstanceOf(TypeError);
    expect(caught).not.toBeInstanceOf(OpenAI.APIError);
    expect((caught as Error).message).toBe('terminated');
    expect(((caught as Error).cause as { code?: string } | undefined)?.code).toBe('UND_ERR_SOCKET');
    // A stand-in cut is not a client abort.
    await expect(standin.waitForAbort(100)).rejects.toThrow(/no client abort/);
  });

  it('abort mid-stream: the stand-in sees it at once; the SDK iterator ENDS SILENTLY (no throw)', async () => {
    // Observed with openai 6.30.1: Stream swallows AbortError (`if (isAbortError(e)) return;`),
    // so `for await` just finishes — callers must check `signal.aborted` themselves.
    standin.setScript(() => ({ tokens: manyTokens(100), delayMs: 20 }));
    const abortsBefore = standin.aborts;
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true },
      { signal: controller.signal },
    );
    let tokens = 0;
    let abortedAt = 0;
    let threw = false;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) tokens++;
        if (tokens === 3 && abortedAt === 0) {
          abortedAt = performance.now();
          controller.abort();
        }
      }
    } catch {
      threw = true;
    }
    expect(threw).toBe(false);
    expect(tokens).toBe(3);
    const sinceStart = await standin.waitForAbort(500);
    const seenAfter = performance.now() - abortedAt;
    expect(seenAfter).toBeLessThan(500);
    expect(sinceStart).toBeGreaterThanOrEqual(3 * 20 - 5);
    expect(sinceStart).toBeLessThan(100 * 20);
    expect(standin.aborts).toBe(abortsBefore + 1);

    // The stand-in keeps serving after an abort.
    standin.setScript(defaultScript);
    const again = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    expect(again.choices[0]?.message.content).toBe(DEFAULT_TEXT);
  });

  it('honours firstTokenDelayMs / delayMs', async () => {
    standin.setScript(() => ({ tokens: ['a', 'b', 'c'], firstTokenDelayMs: 120, delayMs: 30 }));
    const t0 = performance.now();
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const at: number[] = [];
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) at.push(performance.now() - t0);
    }
    expect(at).toHaveLength(3);
    expect(at[0]).toBeGreaterThanOrEqual(115);
    expect((at[2] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(55);
  });

  it('serves 200 concurrent streams', async () => {
    standin.setScript(() => ({ tokens: manyTokens(10), delayMs: 5 }));
    const expected = manyTokens(10).join('');
    const texts = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const stream = await client.chat.completions.create({
          model: MODEL,
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
        });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
        return text;
      }),
    );
    expect(texts).toHaveLength(200);
    expect(new Set(texts)).toEqual(new Set([expected]));
  });

  it('close() ends in-flight streams and resolves', async () => {
    const own = await startOpenAIStandin({ script: () => ({ tokens: manyTokens(100), delayMs: 50 }) });
    const c = new OpenAI({ apiKey: 'anything', baseURL: own.url, maxRetries: 0 });
    const stream = await c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true });
    const consumed = (async () => {
      let n = 0;
      try {
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content) n++;
        return { n, threw: false };
      } catch {
        return { n, threw: true };
      }
    })();
    await new Promise((r) => setTimeout(r, 120));
    const t0 = performance.now();
    await own.close();
    expect(performance.now() - t0).toBeLessThan(500);
    const result = await consumed;
    expect(result.threw).toBe(true);
    expect(result.n).toBeLessThan(100);
    expect(own.aborts).toBe(0);
  });
});

describe('Gemini stand-in with the real @google/genai SDK', () => {
  let standin: Standin;
  let ai: GoogleGenAI;

  beforeAll(async () => {
    standin = await startGeminiStandin({ apiKey: GEMINI_KEY });
    ai = new GoogleGenAI({ apiKey: GEMINI_KEY, httpOptions: { baseUrl: standin.url } });
  });
  afterAll(async () => {
    await standin.close();
  });
  beforeEach(() => {
    standin.setScript(defaultScript);
  });

  it('streams text, finishReason and usageMetadata through generateContentStream', async () => {
    standin.setScript(() => ({ tokens: [...DEFAULT_TOKENS], usage: { inputTokens: 7, outputTokens: 5 } }));
    const stream = await ai.models.generateContentStream({ model: GEMINI_MODEL, contents: 'hi' });
    let text = '';
    let chunks = 0;
    let finish: string | undefined;
    let last: { promptTokenCount?: number; candidatesTokenCount?: number; totalTokenCount?: number } | undefined;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.text ?? '';
      finish = chunk.candidates?.[0]?.finishReason ?? finish;
      last = chunk.usageMetadata;
      expect(chunk.modelVersion).toBe(GEMINI_MODEL);
    }
    expect(text).toBe(DEFAULT_TEXT);
    expect(chunks).toBe(DEFAULT_TOKENS.length);
    expect(finish).toBe('STOP');
    expect(last).toMatchObject({ promptTokenCount: 7, candidatesTokenCount: 5, totalTokenCount: 12 });

    const rec = standin.requests.at(-1);
    expect(rec?.path).toBe(`/v1beta/models/${GEMINI_MODEL}:streamGenerateContent`);
    expect(rec?.query).toEqual({ alt: 'sse' });
    expect(rec?.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expect(rec?.body).toMatchObject({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });
  });

  it('puts the real event shapes on the wire, separated by \\r\\n\\r\\n (key as ?key=)', async () => {
    standin.setScript(() => ({ tokens: ['Hel', 'lo'], finishReason: 'length', usage: { inputTokens: 4, outputTokens: 2 } }));
    const res = await fetch(
      `${standin.url}/v1beta/models/${GEMINI_MODEL}:streamGenerateContent?alt=sse&key=${GEMINI_KEY}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hey' }] }] }),
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const raw = await res.text();
    expect(raw.endsWith('\r\n\r\n')).toBe(true);
    expect(raw).not.toContain('[DONE]');
    const events = sseData(raw, '\r\n\r\n').map((e) => JSON.parse(e) as Record<string, unknown>);
    expect(events).toHaveLength(2);
    expect(events[0]).toEqual({
      candidates: [{ content: { parts: [{ text: 'Hel' }], role: 'model' }, index: 0 }],
      usageMetadata: { promptTokenCount: 4, totalTokenCount: 4, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 4 }] },
      modelVersion: GEMINI_MODEL,
      responseId: events[0]?.['responseId'],
    });
    expect(typeof events[0]?.['responseId']).toBe('string');
    expect(events[1]).toMatchObject({
      candidates: [{ content: { parts: [{ text: 'lo' }], role: 'model' }, finishReason: 'MAX_TOKENS', index: 0 }],
      usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 2, totalTokenCount: 6 },
      responseId: events[0]?.['responseId'],
    });
  });

  it('answers generateContent (non-stream)', async () => {
    const response = await ai.models.generateContent({
      model: GEMINI_MODEL,
      contents: 'Tell me something nice',
      config: { systemInstruction: 'Be kind' },
    });
    expect(response.text).toBe(DEFAULT_TEXT);
    expect(response.candidates?.[0]?.finishReason).toBe('STOP');
    const input = estimateTokens('Be kind' + 'Tell me something nice');
    expect(response.usageMetadata).toMatchObject({
      promptTokenCount: input,
      candidatesTokenCount: DEFAULT_TOKENS.length,
      totalTokenCount: input + DEFAULT_TOKENS.length,
    });
    expect(standin.requests.at(-1)?.path).toBe(`/v1beta/models/${GEMINI_MODEL}:generateContent`);
  });

  it('returns deterministic embeddings (SDK uses :batchEmbedContents; :embedContent also served)', async () => {
    const res = await ai.models.embedContent({ model: 'text-embedding-004', contents: ['alpha', 'beta'] });
    expect(standin.requests.at(-1)?.path).toBe('/v1beta/models/text-embedding-004:batchEmbedContents');
    expect(res.embeddings).toHaveLength(2);
    expect(res.embeddings?.[0]?.values).toHaveLength(768);
    expect(res.embeddings?.[0]?.values).toEqual(f32(deterministicEmbedding('alpha', 768)));
    expect(res.embeddings?.[1]?.values).toEqual(f32(deterministicEmbedding('beta', 768)));

    const small = await ai.models.embedContent({
      model: 'text-embedding-004',
      contents: 'alpha',
      config: { outputDimensionality: 16 },
    });
    expect(small.embeddings?.[0]?.values).toEqual(f32(deterministicEmbedding('alpha', 16)));

    const raw = await fetch(`${standin.url}/v1beta/models/text-embedding-004:embedContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': GEMINI_KEY },
      body: JSON.stringify({ content: { parts: [{ text: 'alpha' }] }, outputDimensionality: 4 }),
    });
    expect(raw.status).toBe(200);
    expect(await raw.json()).toEqual({ embedding: { values: f32(deterministicEmbedding('alpha', 4)) } });
  });

  it('takes at most 100 texts per batchEmbedContents and honours the embedding script fields', async () => {
    const tooMany = await ai.models
      .embedContent({ model: 'gemini-embedding-001', contents: Array.from({ length: 101 }, (_, i) => `t${i}`) })
      .then(() => undefined, (e: unknown) => e);
    expect((tooMany as ApiError).status).toBe(400);
    expect((tooMany as ApiError).message).toContain('at most 100 requests');

    standin.setScript(() => ({ tokens: ['x'], delayMs: 150, embeddingDimensions: 3, embeddingScale: 2 }));
    const t0 = performance.now();
    const res = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: ['a'], config: { outputDimensionality: 8 } });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(res.embeddings?.[0]?.values).toEqual(f32(deterministicEmbedding('a', 3, 2)));
  });

  it('rejects a wrong key like Google does (400 INVALID_ARGUMENT / API_KEY_INVALID) and a missing one with 403', async () => {
    const bad = new GoogleGenAI({ apiKey: 'AIza-wrong', httpOptions: { baseUrl: standin.url } });
    const err: unknown = await bad.models
      .generateContentStream({ model: GEMINI_MODEL, contents: 'hi' })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    const parsed = JSON.parse((err as ApiError).message) as {
      error: { code: number; status: string; message: string; details: Array<{ reason?: string }> };
    };
    expect(parsed.error.code).toBe(400);
    expect(parsed.error.status).toBe('INVALID_ARGUMENT');
    expect(parsed.error.message).toBe('API key not valid. Please pass a valid API key.');
    expect(parsed.error.details[0]?.reason).toBe('API_KEY_INVALID');

    const missing = await fetch(`${standin.url}/v1beta/models/${GEMINI_MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });
    expect(missing.status).toBe(403);
    expect(await missing.json()).toMatchObject({ error: { code: 403, status: 'PERMISSION_DENIED' } });
  });

  it('maps scripted 500 / 503 / 429 to ApiError with Google status names, without SDK retries', async () => {
    for (const [code, status] of [
      [500, 'INTERNAL'],
      [503, 'UNAVAILABLE'],
      [429, 'RESOURCE_EXHAUSTED'],
    ] as const) {
      standin.setScript(() => ({ tokens: [], status: code, errorMessage: `scripted ${code}` }));
      const before = standin.requests.length;
      const err: unknown = await ai.models
        .generateContentStream({ model: GEMINI_MODEL, contents: 'hi' })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(code);
      const body = JSON.parse((err as ApiError).message) as { error: { code: number; status: string; message: string } };
      expect(body.error).toMatchObject({ code, status, message: `scripted ${code}` });
      expect(standin.requests.length).toBe(before + 1);
    }
    standin.setScript(() => ({ tokens: [], status: 500 }));
    const nonStream: unknown = await ai.models
      .generateContent({ model: GEMINI_MODEL, contents: 'hi' })
      .then(() => undefined, (e: unknown) => e);
    expect((nonStream as ApiError).status).toBe(500);
  });

  it('cut stream: the SDK iterator THROWS a raw undici TypeError("terminated") and does not re-request', async () => {
    // Observed with @google/genai 2.32.0: chunks before the cut are yielded, then the raw fetch
    // `TypeError: terminated` (cause: undici SocketError, UND_ERR_SOCKET) propagates — not an
    // ApiError. The SDK's automatic stream continuation only re-requests when the server sent a
    // continuationToken, which the real API (and this stand-in) do not send here, so there is
    // exactly one HTTP request.
    standin.setScript(() => ({ tokens: ['a', 'b', 'c', 'd'], cutAfter: 2 }));
    const before = standin.requests.length;
    const stream = await ai.models.generateContentStream({ model: GEMINI_MODEL, contents: 'hi' });
    let text = '';
    let caught: unknown;
    try {
      for await (const chunk of stream) text += chunk.text ?? '';
    } catch (e) {
      caught = e;
    }
    expect(text).toBe('ab');
    expect(caught).toBeInstanceOf(TypeError);
    expect(caught).not.toBeInstanceOf(ApiError);
    expect((caught as Error).message).toBe('terminated');
    expect(((caught as Error).cause as { code?: string } | undefined)?.code).toBe('UND_ERR_SOCKET');
    expect(standin.requests.length).toBe(before + 1);

    // Cut before any chunk: same error, still a single request.
    standin.setScript(() => ({ tokens: ['a'], cutAfter: 0 }));
    const s0 = await ai.models.generateContentStream({ model: GEMINI_MODEL, contents: 'hi' });
    const e0: unknown = await (async () => {
      for await (const chunk of s0) void chunk;
    })().then(() => undefined, (e: unknown) => e);
    expect((e0 as Error).message).toBe('terminated');
    expect(standin.requests.length).toBe(before + 2);
  });

  it('abort mid-stream: the stand-in sees it at once; the SDK iterator THROWS an AbortError', async () => {
    // Observed with @google/genai 2.32.0: unlike openai, the iterator rejects with the fetch
    // AbortError (a DOMException, name 'AbortError'); no continuation request follows.
    standin.setScript(() => ({ tokens: manyTokens(100), delayMs: 20 }));
    const abortsBefore = standin.aborts;
    const requestsBefore = standin.requests.length;
    const controller = new AbortController();
    const stream = await ai.models.generateContentStream({
      model: GEMINI_MODEL,
      contents: 'hi',
      config: { abortSignal: controller.signal },
    });
    let chunks = 0;
    let abortedAt = 0;
    let caught: unknown;
    try {
      for await (const chunk of stream) {
        if (chunk.text) chunks++;
        if (chunks === 3 && abortedAt === 0) {
          abortedAt = performance.now();
          controller.abort();
        }
      }
    } catch (e) {
      caught = e;
    }
    expect(chunks).toBe(3);
    expect((caught as Error | undefined)?.name).toBe('AbortError');
    const sinceStart = await standin.waitForAbort(500);
    expect(performance.now() - abortedAt).toBeLessThan(500);
    expect(sinceStart).toBeGreaterThanOrEqual(3 * 20 - 5);
    expect(standin.aborts).toBe(abortsBefore + 1);
    expect(standin.requests.length).toBe(requestsBefore + 1);
  });

  it('serves 200 concurrent streams', async () => {
    standin.setScript(() => ({ tokens: manyTokens(10), delayMs: 5 }));
    const expected = manyTokens(10).join('');
    const texts = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const stream = await ai.models.generateContentStream({ model: GEMINI_MODEL, contents: 'hi' });
        let text = '';
        for await (const chunk of stream) text += chunk.text ?? '';
        return text;
      }),
    );
    expect(new Set(texts)).toEqual(new Set([expected]));
    expect(texts).toHaveLength(200);
  });
});
