/**
 * `/v1/chat/completions` and `/v1/models` driven by the real `openai` SDK and the AI SDK's
 * OpenAI-compatible provider, against a gateway whose own upstream is the OpenAI stand-in.
 */
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { streamText } from 'ai';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register, type Account } from '../helpers/accounts.js';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const UPSTREAM_KEY = 'sk-upstream-test-key';

describe('OpenAI-compatible API', () => {
  let upstream: Standin;
  let gw: TestGateway;
  let alice: Account;
  let client: OpenAI;

  beforeAll(async () => {
    upstream = await startOpenAIStandin({ apiKey: UPSTREAM_KEY });
    gw = await startGateway({
      OPENAI_API_KEY: UPSTREAM_KEY,
      OPENAI_BASE_URL: upstream.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      ALLOWED_MODELS: 'gpt-4o-mini,gpt-4o,local',
      PROVIDER_MAX_RETRIES: '0',
    });
    alice = await register(gw.url, 'alice-openai@example.com');
    client = new OpenAI({ apiKey: alice.token, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.destroy();
    await upstream.close();
  });

  it('streams with include_usage: role chunk, deltas, finish, usage, [DONE]; the client history, stop and limits reach the provider; nothing is stored', async () => {
    upstream.setScript(() => ({ tokens: ['Bon', 'jour', '!'], usage: { inputTokens: 21, outputTokens: 3 }, delayMs: 5 }));
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 64,
      temperature: 0.3,
      stop: ['END'],
      messages: [
        { role: 'system', content: 'You answer in French.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Salut' },
        { role: 'user', content: [{ type: 'text', text: 'Say ' }, { type: 'text', text: 'hello' }] },
      ],
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Bonjour!');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('stop');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 21, completion_tokens: 3, total_tokens: 24 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[0]!.object).toBe('chat.completion.chunk');
    expect(chunks[0]!.model).toBe('gpt-4o-mini');

    const sent = upstream.requests.at(-1)!.body as { messages: { role: string; content: string }[]; stop: string[]; max_tokens?: number; max_completion_tokens?: number; temperature: number };
    expect(sent.messages.map((m) => [m.role, m.content]).slice(1)).toEqual([
      ['system', 'You answer in French.'],
      ['user', 'Hi'],
      ['assistant', 'Salut'],
      ['user', 'Say hello'],
    ]);
    expect(sent.messages[0]!.role).toBe('system'); // the server's own system prompt first
    expect(sent.stop).toEqual(['END']);
    // With OPENAI_BASE_URL set the gateway speaks to a compatible server, which knows max_tokens.
    expect(sent.max_completion_tokens ?? sent.max_tokens).toBe(64);
    expect(sent.temperature).toBe(0.3);

    const list = await fetch(`${gw.url}/api/v2/conversations`, { headers: { Authorization: `Bearer ${alice.token}` } });
    expect(((await list.json()) as { conversations: unknown[] }).conversations).toEqual([]);
  });

  it('answers non-streaming requests as one chat.completion with usage', async () => {
    upstream.setScript(() => ({ tokens: ['Hello', ' there'], usage: { inputTokens: 9, outputTokens: 2 } }));
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello?' }] });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Hello there' });
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toMatchObject({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 });
  });

  it('the embedded model honours max_tokens (finish_reason "length") and stop sequences', async () => {
    const short = await client.chat.completions.create({ model: 'local', max_tokens: 3, messages: [{ role: 'user', content: 'Tell me a long story please' }] });
    expect(short.choices[0]!.finish_reason).toBe('length');
    expect(short.usage!.completion_tokens).toBe(3);
    const full = await client.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'Tell me a long story please' }] });
    const text = full.choices[0]!.message.content!;
    const cut = text.slice(0, 12);
    const stopped = await client.chat.completions.create({ model: 'local', stop: text.slice(12, 18), messages: [{ role: 'user', content: 'Tell me a long story please' }] });
    expect(stopped.choices[0]!.message.content).toBe(cut);
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
  });

  it('lists the models this caller may use', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    expect(models.map((m) => m.id).sort()).toEqual(['gpt-4o', 'gpt-4o-mini', 'local']);
    expect(models.find((m) => m.id === 'local')).toMatchObject({ object: 'model', owned_by: 'ai-chat-gateway' });
  });

  it('refuses in OpenAI shape: unknown model, bad body, bad token, non-text content, tools', async () => {
    const refusal = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OpenAI.APIError);
      return err as InstanceType<typeof OpenAI.APIError>;
    };
    const model = await refusal(client.chat.completions.create({ model: 'gpt-3-nope', messages: [{ role: 'user', content: 'x' }] }));
    expect(model).toBeInstanceOf(OpenAI.BadRequestError);
    expect(model.error).toMatchObject({ code: 'INVALID_MODEL', type: 'invalid_request_error', param: 'model' });

    const lastNotUser = await refusal(client.chat.completions.create({ model: 'local', messages: [{ role: 'assistant', content: 'x' }] }));
    expect(lastNotUser.status).toBe(400);
    expect(lastNotUser.message).toContain('messages.0.role');
    expect(lastNotUser.error).toMatchObject({ code: 'BAD_REQUEST', type: 'invalid_request_error', param: 'messages.0.role' });
    const hot = await refusal(client.chat.completions.create({ model: 'local', temperature: 'hot' as unknown as number, messages: [{ role: 'user', content: 'x' }] }));
    expect(hot.error).toMatchObject({ code: 'BAD_REQUEST', param: 'temperature' });

    const image = await refusal(
      client.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }] }),
    );
    expect(image.status).toBe(400);
    expect(image.message).toContain('only text parts');

    const tools = await refusal(
      client.chat.completions.create({
        model: 'local',
        messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      }),
    );
    expect(tools.message).toContain('not supported');

    const badKey = new OpenAI({ apiKey: 'not-a-token', baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const unauth = await refusal(badKey.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'x' }] }));
    expect(unauth).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(unauth.error).toMatchObject({ code: 'UNAUTHORIZED', type: 'authentication_error' });

    // No token at all: /v1 is never anonymous (the provider keys behind it are the server's).
    for (const anonymous of [
      fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'local', messages: [{ role: 'user', content: 'free ride?' }] }) }),
      fetch(`${gw.url}/v1/models`),
    ]) {
      const res = await anonymous;
      expect(res.status).toBe(401);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(await res.json()).toEqual({ error: { message: 'Sign in to use this route', type: 'authentication_error', code: 'UNAUTHORIZED', param: null } });
    }
    // A /v1 route the gateway lacks answers in OpenAI's shape, which the SDK reads.
    const missing = await refusal(client.models.retrieve('local'));
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing.error).toMatchObject({ code: 'NOT_FOUND', type: 'not_found_error', message: 'No route for GET /v1/models/local' });

    const raw = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${alice.token}` }, body: '{"model":' });
    expect(raw.status).toBe(400);
    expect(await raw.json()).toMatchObject({ error: { code: 'BAD_REQUEST', type: 'invalid_request_error' } });
  });

  it('sampling settings reach the provider; what would change the form of the reply is refused, naming the parameter', async () => {
    upstream.setScript(() => ({ tokens: ['ok'], usage: { inputTokens: 3, outputTokens: 1 } }));
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'sample me' }],
      top_p: 0.5,
      presence_penalty: 0.25,
      frequency_penalty: -0.5,
      seed: 42,
      response_format: { type: 'text' },
      logprobs: false,
    });
    const sent = upstream.requests.at(-1)!.body as Record<string, unknown>;
    expect(sent).toMatchObject({ top_p: 0.5, presence_penalty: 0.25, frequency_penalty: -0.5, seed: 42 });
    expect(sent).not.toHaveProperty('response_format');

    const refused = async (extra: Record<string, unknown>, param: string) => {
      const before = upstream.requests.length;
      const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], ...extra } as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as Error).message, param).toContain(param);
      expect((err as Error).message, param).toContain('not supported');
      expect(upstream.requests.length, param).toBe(before);
    };
    await refused({ response_format: { type: 'json_object' } }, 'response_format');
    await refused({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }, 'response_format');
    await refused({ logprobs: true }, 'logprobs');
    await refused({ top_logprobs: 3 }, 'top_logprobs');
    await refused({ logit_bias: { '50256': -100 } }, 'logit_bias');
    await refused({ tool_choice: 'auto' }, 'tool_choice');
    await refused({ function_call: 'auto' }, 'function_call');
    await refused({ modalities: ['text', 'audio'] }, 'modalities');
    await refused({ audio: { voice: 'alloy', format: 'wav' } }, 'audio');
    await refused({ prediction: { type: 'content', content: 'x' } }, 'prediction');
  });

  it('a provider failure mid-stream reaches the SDK as an APIError after the text that came', async () => {
    upstream.setScript(() => ({ tokens: ['part', 'ial', 'never'], cutAfter: 2, delayMs: 5 }));
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'fail please' }] });
    let text = '';
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(text).toBe('partial');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: 'PROVIDER_ERROR' });
  });

  it('aborting the SDK stream stops the upstream call', async () => {
    upstream.setScript(() => ({ tokens: Array.from({ length: 100 }, (_, i) => `t${i} `), delayMs: 20 }));
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'long' }] }, { signal: controller.signal });
    let seen = 0;
    await (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content && ++seen === 3) controller.abort();
    })().catch(() => {});
    expect(await upstream.waitForAbort(3000)).toBeGreaterThan(0);
  });

  it('a non-streaming client that goes away stops the upstream call', async () => {
    upstream.setScript(() => ({ tokens: Array.from({ length: 100 }, (_, i) => `t${i} `), delayMs: 20 }));
    const controller = new AbortController();
    const pending = client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }] }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 150);
    await expect(pending).rejects.toThrow();
    expect(await upstream.waitForAbort(3000)).toBeGreaterThan(0);
  });

  it('a request naming a conversation (X-Conversation-Id) is stored and continued from the store', async () => {
    upstream.setScript(() => ({ tokens: ['Noted', '.'] }));
    const headers = { 'X-Conversation-Id': 'openai-conv-1' };
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'My name is Alice' }] }, { headers });
    upstream.setScript(() => ({ tokens: ['Alice', '!'] }));
    const second = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'What is my name?' }] }, { headers });
    expect(second.choices[0]!.message.content).toBe('Alice!');
    const sent = JSON.stringify(upstream.requests.at(-1)!.body);
    expect(sent).toContain('My name is Alice');
    expect(sent).toContain('Noted.');
    const stored = await messagesOf(gw, 'openai-conv-1', alice.user.id);
    expect(stored.map((m) => [m.role, m.content])).toEqual([
      ['user', 'My name is Alice'],
      ['assistant', 'Noted.'],
      ['user', 'What is my name?'],
      ['assistant', 'Alice!'],
    ]);

    const bad = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${alice.token}`, 'X-Conversation-Id': 'no/slashes' },
      body: JSON.stringify({ model: 'local', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(bad.status).toBe(400);
  });

  it('a browser page on an allowed origin may send X-Conversation-Id (the CORS preflight allows it)', async () => {
    const preflight = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://localhost:5173', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type,x-conversation-id' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',');
    expect(allowed).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-conversation-id']));
  });

  it('a gateway API key works with the SDK, limits the model list to its own, and stops working the moment it is revoked', async () => {
    const created = await fetch(`${gw.url}/api/v2/keys`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${alice.token}` },
      body: JSON.stringify({ name: 'sdk tool', models: ['gpt-4o-mini'] }),
    });
    expect(created.status).toBe(201);
    const { key, id } = (await created.json()) as { key: string; id: string };
    const keyed = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });

    upstream.setScript(() => ({ tokens: ['key', 'ed'] }));
    const stream = await keyed.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('keyed');
    const listed = [];
    for await (const m of keyed.models.list()) listed.push(m.id);
    expect(listed).toEqual(['gpt-4o-mini']);
    await expect(keyed.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 400, error: { code: 'INVALID_MODEL' } });

    const revoked = await fetch(`${gw.url}/api/v2/keys/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${alice.token}` } });
    expect(revoked.status).toBe(200);
    const err = await keyed.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('the AI SDK streamText runs through @ai-sdk/openai-compatible', async () => {
    upstream.setScript(() => ({ tokens: ['Via', ' the', ' AI', ' SDK'], usage: { inputTokens: 7, outputTokens: 4 } }));
    const provider = createOpenAICompatible({ name: 'gateway', baseURL: `${gw.url}/v1`, apiKey: alice.token, includeUsage: true });
    const result = streamText({ model: provider('gpt-4o-mini'), prompt: 'Hello', maxRetries: 0 });
    let text = '';
    for await (const delta of result.textStream) text += delta;
    expect(text).toBe('Via the AI SDK');
    expect(await result.finishReason).toBe('stop');
    expect((await result.usage).outputTokens).toBe(4);
  });
});

describe('OpenAI-compatible API rate limits', () => {
  it('answers 429 in OpenAI shape with Retry-After', async () => {
    const gw = await startGateway({ RATE_LIMIT_USER: '1' });
    try {
      const bob = await register(gw.url, 'bob-openai@example.com');
      const client = new OpenAI({ apiKey: bob.token, baseURL: `${gw.url}/v1`, maxRetries: 0 });
      await client.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'one' }] });
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bob.token}` },
        body: JSON.stringify({ model: 'local', messages: [{ role: 'user', content: 'two' }] }),
      });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await res.json()).toMatchObject({ error: { code: 'RATE_LIMIT', type: 'rate_limit_error' } });
    } finally {
      await gw.destroy();
    }
  });
});

describe('GET /v1/models lists what a caller can use', () => {
  const listed = async (url: string, apiKey: string) => {
    const ids: string[] = [];
    for await (const m of new OpenAI({ apiKey, baseURL: `${url}/v1`, maxRetries: 0 }).models.list()) ids.push(m.id);
    return ids;
  };

  it('with an OpenAI-compatible server (OPENAI_BASE_URL): its own model and local, not OpenAI’s names it does not have', async () => {
    const ollama = await startOpenAIStandin({ models: ['llama3.2'] });
    const gw = await startGateway({ OPENAI_BASE_URL: ollama.url, OPENAI_API_KEY: 'ollama', PROVIDER_MAX_RETRIES: '0' });
    try {
      const user = await register(gw.url, 'models-compatible@example.com');
      expect((await listed(gw.url, user.token)).sort()).toEqual(['local', 'openai:llama3.2']);
    } finally {
      await gw.destroy();
      await ollama.close();
    }
  });

  it('on embedded defaults, an API key limited to gpt-4o-mini lists gpt-4o-mini, the name it chats with', async () => {
    const gw = await startGateway({});
    try {
      const user = await register(gw.url, 'models-key@example.com');
      expect(await listed(gw.url, user.token)).toEqual(['local']);
      const created = await fetch(`${gw.url}/api/v2/keys`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${user.token}` },
        body: JSON.stringify({ name: 'docs example', models: ['gpt-4o-mini', 'gemini:gemini-2.5-pro'] }),
      });
      const { key } = (await created.json()) as { key: string };
      expect(await listed(gw.url, key)).toEqual(['gpt-4o-mini', 'gemini:gemini-2.5-pro']);
      const reply = await new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      expect(reply.choices[0]!.message.content).toBeTruthy();
    } finally {
      await gw.destroy();
    }
  });
});
