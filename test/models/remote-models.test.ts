import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';
import { TurnAbort } from '../../src/chat/turn-abort.js';
import type { LanguageModel, ModelMessage, ModelStreamPart } from '../../src/models/language-model.js';
import { createModelRegistry } from '../../src/models/model-registry.js';
import { OpenAIProvider, type ProviderTransport } from '../../src/models/openai-model.js';
import { silentLogger } from '../../src/logger.js';
import { createNodeFetch } from '../../src/node/node-fetch.js';
import { modelParts } from '../helpers/turns.js';
import { startGeminiStandin } from '../standins/gemini-standin.js';
import { startOpenAIStandin } from '../standins/openai-standin.js';
import type { RecordedRequest, Script, Standin } from '../standins/standin-script.js';

const KEY = 'sk-test-SECRET-key-1234567890';
const messages: ModelMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
];

interface ProviderCase {
  name: string;
  model: string;
  start(): Promise<Standin>;
  env(url: string): Record<string, string>;
  /** Pulls what the adapter sent out of the recorded request. */
  sent(req: RecordedRequest): { maxTokens: unknown; temperature: unknown; system: string; userText: string };
  /** The sampling settings as the provider's wire format names them. */
  sampling(req: RecordedRequest): Record<string, unknown>;
}

const cases: ProviderCase[] = [
  {
    name: 'OpenAI-compatible (chat completions SSE)',
    model: 'gpt-4o-mini',
    start: () => startOpenAIStandin({ apiKey: KEY }),
    env: (url) => ({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: url }),
    sent(req) {
      const body = req.body as { max_tokens?: number; temperature?: number; messages: { role: string; content: string }[]; stream_options?: unknown };
      expect(body.stream_options).toEqual({ include_usage: true });
      return {
        maxTokens: body.max_tokens,
        temperature: body.temperature,
        system: body.messages.find((m) => m.role === 'system')!.content,
        userText: body.messages.find((m) => m.role === 'user')!.content,
      };
    },
    sampling(req) {
      const { top_p, presence_penalty, frequency_penalty, seed } = req.body as Record<string, unknown>;
      return { top_p, presence_penalty, frequency_penalty, seed };
    },
  },
  {
    name: 'Gemini (streamGenerateContent alt=sse)',
    model: 'gemini-2.0-flash',
    start: () => startGeminiStandin({ apiKey: KEY }),
    env: (url) => ({ GEMINI_API_KEY: KEY, GEMINI_BASE_URL: url }),
    sent(req) {
      expect(req.path).toBe('/v1beta/models/gemini-2.0-flash:streamGenerateContent');
      expect(req.query.alt).toBe('sse');
      const body = req.body as {
        contents: { role: string; parts: { text: string }[] }[];
        systemInstruction: { parts: { text: string }[] };
        generationConfig: { maxOutputTokens?: number; temperature?: number };
      };
      return {
        maxTokens: body.generationConfig.maxOutputTokens,
        temperature: body.generationConfig.temperature,
        system: body.systemInstruction.parts[0]!.text,
        userText: body.contents[0]!.parts[0]!.text,
      };
    },
    sampling(req) {
      const { topP, presencePenalty, frequencyPenalty, seed } = (req.body as { generationConfig: Record<string, unknown> }).generationConfig;
      return { topP, presencePenalty, frequencyPenalty, seed };
    },
  },
];

async function collect(model: LanguageModel, options: { signal?: AbortSignal; maxTokens?: number; temperature?: number } = {}) {
  const parts: ModelStreamPart[] = [];
  let error: unknown;
  try {
    await modelParts(model, { messages, signal: options.signal ?? new AbortController().signal, maxTokens: options.maxTokens, temperature: options.temperature }, (p) =>
      parts.push(p),
    );
  } catch (err) {
    error = err;
  }
  const text = parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('');
  const finish = parts.find((p) => p.type === 'finish');
  return { parts, text, finish, error };
}

/** How the SDKs reach the network: the runtime's fetch (undici, web body), or the Node entry's (node:http, socket stream). */
const transports: { name: string; transport: () => ProviderTransport | undefined }[] = [
  { name: 'global fetch', transport: () => undefined },
  { name: 'node fetch', transport: () => createNodeFetch() },
];

for (const pc of cases) for (const { name: via, transport } of transports) {
  describe(`${pc.name} adapter against a stand-in, over ${via}`, () => {
    let standin: Standin;
    let model: LanguageModel;
    const script = (s: Script) => standin.setScript(() => s);

    beforeAll(async () => {
      standin = await pc.start();
      const registry = createModelRegistry(loadConfig({ ...pc.env(standin.url), PROVIDER_MAX_RETRIES: '0' }), silentLogger, undefined, transport());
      model = registry.resolve(pc.model);
    });
    afterAll(() => standin.close());

    it('streams deltas, then finish with usage; passes maxTokens, temperature and the system prompt', async () => {
      // Paced, so each token arrives in its own network read.
      script({ tokens: ['Hel', 'lo', ' world'], usage: { inputTokens: 11, outputTokens: 3 }, delayMs: 15 });
      const { parts, text, finish, error } = await collect(model, { maxTokens: 55, temperature: 0.3 });
      expect(error).toBeUndefined();
      expect(text).toBe('Hello world');
      expect(parts.filter((p) => p.type === 'text-delta')).toHaveLength(3);
      expect(finish).toEqual({ type: 'finish', finishReason: 'stop', usage: { inputTokens: 11, outputTokens: 3 } });
      const sent = pc.sent(standin.requests.at(-1)!);
      expect(sent).toEqual({ maxTokens: 55, temperature: 0.3, system: 'Be brief.', userText: 'Hi there' });
    });

    it('passes top_p, the penalties and the seed, as the provider names them', async () => {
      script({ tokens: ['ok'] });
      const sampling = { topP: 0.4, presencePenalty: 0.5, frequencyPenalty: -0.25, seed: 7 };
      await modelParts(model, { messages, signal: new AbortController().signal, sampling }, () => undefined);
      const sent = pc.sampling(standin.requests.at(-1)!);
      expect(sent).toEqual(pc.name.startsWith('Gemini') ? sampling : { top_p: 0.4, presence_penalty: 0.5, frequency_penalty: -0.25, seed: 7 });
    });

    it('tokens that arrive together (one network read) come as one delta, in order', async () => {
      script({ tokens: Array.from({ length: 40 }, (_, i) => ` w${i}`) });
      const { parts, text, finish } = await collect(model);
      expect(text).toBe(Array.from({ length: 40 }, (_, i) => ` w${i}`).join(''));
      expect(parts.filter((p) => p.type === 'text-delta').length).toBeLessThan(40);
      expect(finish).toMatchObject({ finishReason: 'stop' });
    });

    it('reports finishReason length', async () => {
      script({ tokens: ['a', 'b'], finishReason: 'length' });
      expect((await collect(model)).finish).toMatchObject({ finishReason: 'length' });
    });

    it('finishes without usage when the provider sends none', async () => {
      script({ tokens: ['a'], usage: false });
      expect((await collect(model)).finish).toEqual({ type: 'finish', finishReason: 'stop', usage: undefined });
    });

    for (const [status, code, pattern] of [
      [500, 'PROVIDER_ERROR', /had an internal error \(HTTP 500\)/],
      [503, 'PROVIDER_ERROR', /had an internal error \(HTTP 503\)/],
      [429, 'PROVIDER_ERROR', /rate limiting or out of quota \(HTTP 429\)/],
      [400, 'PROVIDER_ERROR', /rejected the request \(HTTP 400\)/],
      [404, 'INVALID_MODEL', /does not offer this model/],
    ] as const) {
      it(`maps HTTP ${status} to ${code} without leaking the upstream body or key`, async () => {
        script({ tokens: [], status, errorMessage: `upstream secret detail ${KEY}` });
        const { error, parts } = await collect(model);
        expect(parts).toEqual([]);
        expect(error).toBeInstanceOf(AppError);
        const e = error as AppError;
        expect(e.code).toBe(code);
        expect(e.message).toMatch(pattern);
        expect(e.message).not.toContain('upstream secret');
        expect(e.message).not.toContain(KEY);
      });
    }

    it('maps a wrong key to a credentials error', async () => {
      const registry = createModelRegistry(loadConfig({ ...pc.env(standin.url), ...(pc.model.startsWith('gpt') ? { OPENAI_API_KEY: 'sk-wrong' } : { GEMINI_API_KEY: 'wrong' }), PROVIDER_MAX_RETRIES: '0' }), silentLogger, undefined, transport());
      script({ tokens: ['x'] });
      const { error } = await collect(registry.resolve(pc.model));
      expect(error).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/refused the server credentials/) });
    });

    it('a stream cut mid-way yields what arrived, then PROVIDER_ERROR', async () => {
      script({ tokens: ['one', ' two', ' three', ' four'], cutAfter: 2 });
      const { text, finish, error } = await collect(model);
      expect(text).toBe('one two');
      expect(finish).toBeUndefined();
      expect(error).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/ended unexpectedly/) });
    });

    it('an unreachable provider is a PROVIDER_ERROR', async () => {
      const registry = createModelRegistry(loadConfig({ ...pc.env('http://127.0.0.1:9'), PROVIDER_MAX_RETRIES: '0' }), silentLogger, undefined, transport());
      const { error } = await collect(registry.resolve(pc.model));
      expect(error).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/could not be reached/) });
    });

    it('abort ends the upstream request (the stand-in sees the connection close) and throws the abort reason', async () => {
      script({ tokens: Array.from({ length: 100 }, (_, i) => ` t${i}`), delayMs: 20 });
      const controller = new AbortController();
      const reason = new TurnAbort('stop');
      const seen: string[] = [];
      const abortSeen = standin.waitForAbort(2000);
      let error: unknown;
      try {
        await modelParts(model, { messages, signal: controller.signal }, (p) => {
          if (p.type === 'text-delta') seen.push(p.text);
          if (seen.length === 3) controller.abort(reason);
        });
      } catch (err) {
        error = err;
      }
      expect(error).toBe(reason);
      expect(seen).toHaveLength(3);
      expect(await abortSeen).toBeLessThan(1500);
    });
  });
}

describe('OpenAI adapter: what its SDK client makes once per process is what the SDK sends', () => {
  let standin: Standin;
  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: KEY });
    standin.setScript(() => ({ tokens: ['ok'] }));
  });
  afterAll(() => standin.close());

  const send = async (client: OpenAI, options?: OpenAI.RequestOptions) => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true }, options).catch((err: unknown) => err);
    if (stream && typeof stream === 'object' && Symbol.asyncIterator in stream) for await (const chunk of stream as AsyncIterable<unknown>) void chunk;
    return standin.requests.at(-1)!;
  };
  /** What the SDK sends that differs by design between two requests (its per-request timeout stays, it is fixed). */
  const stable = (req: RecordedRequest) => {
    const { host: _host, connection: _connection, ...headers } = req.headers;
    return { method: req.method, path: req.path, query: req.query, headers };
  };

  it('sends the URL, headers and user agent of a plain SDK client, request after request; a new key is used at once; a default query is kept', async () => {
    const provider = new OpenAIProvider({ apiKey: KEY, baseURL: standin.url, maxRetries: 0, timeoutMs: 30_000, contextTokens: 128_000, logger: silentLogger });
    const plain = new OpenAI({ apiKey: KEY, baseURL: standin.url, maxRetries: 0, timeout: 30_000 });
    const expected = stable(await send(plain));
    expect(expected.path).toBe('/v1/chat/completions');
    expect(expected.headers['user-agent']).toMatch(/^OpenAI\/JS /);
    expect(stable(await send(provider.client))).toEqual(expected);
    expect(stable(await send(provider.client))).toEqual(expected);

    provider.client.apiKey = 'sk-rotated';
    expect((await send(provider.client)).headers.authorization).toBe('Bearer sk-rotated');
    provider.client.apiKey = KEY;
    expect((await send(provider.client)).headers.authorization).toBe(`Bearer ${KEY}`);

    const versioned = provider.client.withOptions({ defaultQuery: { 'api-version': '2024-10-21' } });
    const req = await send(versioned);
    expect(req.path).toBe('/v1/chat/completions');
    expect(req.query).toEqual({ 'api-version': '2024-10-21' });
    expect((await send(provider.client)).query).toEqual({});
  });

  it('a retry, a per-request timeout and per-request headers are sent as a plain client sends them, and stay with their request', async () => {
    const provider = new OpenAIProvider({ apiKey: KEY, baseURL: standin.url, maxRetries: 1, timeoutMs: 30_000, contextTokens: 128_000, logger: silentLogger });
    const plain = new OpenAI({ apiKey: KEY, baseURL: standin.url, maxRetries: 1, timeout: 30_000 });
    try {
      // Every first attempt fails with a 500: the SDK retries once.
      let attempts = 0;
      standin.setScript(() => (attempts++ % 2 === 0 ? { status: 500, tokens: [] } : { tokens: ['ok'] }));
      const pair = async (client: OpenAI) => {
        attempts = 0;
        await send(client);
        return [stable(standin.requests.at(-2)!), stable(standin.requests.at(-1)!)];
      };
      const expected = await pair(plain);
      expect(expected.map((r) => r.headers['x-stainless-retry-count'])).toEqual(['0', '1']);
      expect(await pair(provider.client)).toEqual(expected);
      expect(await pair(provider.client)).toEqual(expected);

      standin.setScript(() => ({ tokens: ['ok'] }));
      const own = { headers: { 'X-Trace': 'abc' }, timeout: 5_000 };
      const expectedOwn = stable(await send(plain, own));
      expect(expectedOwn.headers).toMatchObject({ 'x-trace': 'abc', 'x-stainless-timeout': '5' });
      expect(stable(await send(provider.client, own))).toEqual(expectedOwn);
      const expectedShort = stable(await send(plain, { timeout: 5_000 }));
      expect(stable(await send(provider.client, { timeout: 5_000 }))).toEqual(expectedShort);
      // Nothing of a request's own stays for the next one.
      const expectedPlain = stable(await send(plain));
      expect(expectedPlain.headers['x-trace']).toBeUndefined();
      expect(stable(await send(provider.client))).toEqual(expectedPlain);
    } finally {
      standin.setScript(() => ({ tokens: ['ok'] }));
    }
  });
});
