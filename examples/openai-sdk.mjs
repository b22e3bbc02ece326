/**
 * The official `openai` SDK against the gateway's OpenAI-compatible API: a streamed chat
 * completion (`POST /v1/chat/completions`, `stream: true`, usage included), model from
 * `GET /v1/models`. Stateless by default: the SDK sends the history. With CONVERSATION_ID the
 * request names a stored conversation (`X-Conversation-Id`) and the gateway keeps the history.
 *
 * Run, with a gateway on GATEWAY_URL (default http://localhost:3000, `npm start`):
 *   node examples/openai-sdk.mjs "Write a haiku about streams"
 *   MODEL=gpt-4o-mini CONVERSATION_ID=haiku node examples/openai-sdk.mjs "Another one"
 * GATEWAY_TOKEN: a token or gateway API key to use as the SDK's apiKey; unset, the example
 * registers a throwaway account. Outside this repository: `npm install openai`.
 */
import OpenAI from 'openai';

const gatewayUrl = (process.env.GATEWAY_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const message = process.argv.slice(2).join(' ') || 'Hello from the openai SDK example';

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
  // The gateway token takes the place of an OpenAI key; the provider key stays on the server.
  const client = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: await signIn() });
  // The first model listed is the gateway's default.
  const model = process.env.MODEL ?? (await client.models.list()).data[0]?.id;
  const conversation = process.env.CONVERSATION_ID;
  const stream = await client.chat.completions.create(
    { model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: message }] },
    conversation ? { headers: { 'X-Conversation-Id': conversation } } : {},
  );
  let finish;
  let usage;
  for await (const chunk of stream) {
    process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  process.stdout.write('\n');
  console.error(`[${finish}: ${usage?.total_tokens} tokens from ${model}${conversation ? `, stored in ${conversation}` : ''}]`);
} catch (err) {
  // The SDK's APIError carries the gateway's error code (BAD_REQUEST, RATE_LIMIT, ...).
  console.error(err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? err));
  process.exitCode = 1;
}
