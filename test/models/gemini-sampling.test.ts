import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startGeminiStandin, type Standin } from '../standins/gemini-standin.js';

const KEY = 'gemini-sampling-key';
const messages = [{ role: 'user' as const, content: 'Hi' }];

describe('/v1/chat/completions: OpenAI sampling values a Gemini model does not take', () => {
  let standin: Standin;
  let gw: TestGateway;
  let client: OpenAI;
  beforeAll(async () => {
    standin = await startGeminiStandin({ apiKey: KEY });
    gw = await startGateway({ GEMINI_API_KEY: KEY, GEMINI_BASE_URL: standin.url, PROVIDER_MAX_RETRIES: '0' });
    const account = await register(gw.url, 'gemini-sampling@example.com');
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: account.token, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  /** The OpenAI SDK's error for a request, and how many requests reached the provider meanwhile. */
  async function refusal(request: Promise<unknown>) {
    const before = standin.requests.length;
    const error = await request.then(
      () => undefined,
      (err: unknown) => err,
    );
    return { error: error as InstanceType<typeof OpenAI.APIError> | undefined, upstream: standin.requests.length - before };
  }

  it('a seed outside the signed 32-bit range is refused naming `seed`, streaming or not, before any upstream call', async () => {
    for (const [seed, stream] of [[2 ** 32, false], [2 ** 31, true], [-(2 ** 31) - 1, false]] as const) {
      const { error, upstream } = await refusal(client.chat.completions.create({ model: 'gemini-2.5-flash', seed, stream, messages }));
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error!.status).toBe(400);
      expect(error!.error).toMatchObject({ type: 'invalid_request_error', code: 'BAD_REQUEST', param: 'seed', message: expect.stringMatching(/^seed: .*32-bit/) });
      expect(upstream).toBe(0);
    }
  });

  it('non-zero presence and frequency penalties are refused naming the parameter', async () => {
    for (const [param, body] of [
      ['presence_penalty', { presence_penalty: 0.5 }],
      ['frequency_penalty', { frequency_penalty: -1 }],
    ] as const) {
      const { error, upstream } = await refusal(client.chat.completions.create({ model: 'gemini-2.5-flash', ...body, messages }));
      expect(error!.status).toBe(400);
      expect(error!.error).toMatchObject({ code: 'BAD_REQUEST', param, message: expect.stringMatching(/Gemini models do not take/) });
      expect(upstream).toBe(0);
    }
  });

  it('a seed in range and zero penalties are handed to Gemini as they are', async () => {
    const before = standin.requests.length;
    const reply = await client.chat.completions.create({ model: 'gemini-2.5-flash', seed: -(2 ** 31), presence_penalty: 0, frequency_penalty: 0, messages });
    expect(reply.choices[0]!.message.content).toBe('Hello from the stand-in');
    expect(standin.requests).toHaveLength(before + 1);
    expect((standin.requests.at(-1)!.body as { generationConfig: unknown }).generationConfig).toMatchObject({ seed: -(2 ** 31), presencePenalty: 0, frequencyPenalty: 0 });
  });
});
