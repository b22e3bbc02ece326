/**
 * The AI SDK's `streamText` with the OpenAI-compatible provider pointed at the gateway's
 * `/v1` API: the gateway is one more OpenAI-compatible backend to the SDK.
 *
 * Run, with a gateway on GATEWAY_URL (default http://localhost:3000, `npm start`):
 *   node examples/ai-sdk-stream-text.mjs "Explain backpressure in one paragraph"
 *   MODEL=gemini-2.5-flash node examples/ai-sdk-stream-text.mjs "Hi"
 * GATEWAY_TOKEN: a token or gateway API key; unset, the example registers a throwaway
 * account. Outside this repository: `npm install ai @ai-sdk/openai-compatible`.
 */
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { streamText } from 'ai';

const gatewayUrl = (process.env.GATEWAY_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const message = process.argv.slice(2).join(' ') || 'Hello from the AI SDK streamText example';

/** A token for this run: GATEWAY_TOKEN, or a new account's. */
async function signIn() {
  if (process.env.GATEWAY_TOKEN) return process.env.GATEWAY_TOKEN;
  const res = await fetch(`${gatewayUrl}/api/v2/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: `example-${crypto.randomUUID()}@example.com`, password: crypto.randomUUID() }),
  });
  if (!res.ok) throw new Error(`register: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

try {
  const token = await signIn();
  const gateway = createOpenAICompatible({ name: 'gateway', baseURL: `${gatewayUrl}/v1`, apiKey: token, includeUsage: true });
  // Any model the gateway serves (GET /v1/models lists them; its default first).
  const model =
    process.env.MODEL ?? (await (await fetch(`${gatewayUrl}/v1/models`, { headers: { Authorization: `Bearer ${token}` } })).json()).data[0].id;
  let failure;
  const result = streamText({ model: gateway(model), prompt: message, onError: ({ error }) => (failure = error) });
  for await (const text of result.textStream) process.stdout.write(text);
  process.stdout.write('\n');
  if (failure) throw failure;
  console.error(`[${await result.finishReason}: ${(await result.usage).totalTokens} tokens from ${model}]`);
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
}
