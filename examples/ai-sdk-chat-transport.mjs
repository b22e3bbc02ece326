/**
 * The AI SDK's `DefaultChatTransport` (what `useChat` uses in React, Vue and Svelte) against
 * `POST /api/chat`, outside a framework: send one user message, read the UI message stream
 * into a message as it grows, then load the stored conversation back
 * (`GET /api/chat/:id/messages`, what a page passes to `useChat` after a reload).
 *
 * Run, with a gateway on GATEWAY_URL (default http://localhost:3000, `npm start`):
 *   node examples/ai-sdk-chat-transport.mjs "What is a UI message stream?"
 *   CHAT_ID=my-chat node examples/ai-sdk-chat-transport.mjs "Continue"
 * GATEWAY_TOKEN: a token or gateway API key; unset, the example registers a throwaway
 * account. Outside this repository: `npm install ai`.
 */
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const gatewayUrl = (process.env.GATEWAY_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const message = process.argv.slice(2).join(' ') || 'Hello from the AI SDK chat transport example';

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
  const headers = { Authorization: `Bearer ${await signIn()}` };
  // The chat id is the conversation: the gateway stores it and continues it from its own history.
  const chatId = process.env.CHAT_ID ?? crypto.randomUUID();
  const transport = new DefaultChatTransport({ api: `${gatewayUrl}/api/chat`, headers });
  const stream = await transport.sendMessages({
    chatId,
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: undefined,
    messages: [{ id: crypto.randomUUID(), role: 'user', parts: [{ type: 'text', text: message }] }],
  });
  let printed = 0;
  let reply;
  let failure;
  for await (const uiMessage of readUIMessageStream({ stream, onError: (error) => (failure = error), terminateOnError: true })) {
    const text = uiMessage.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');
    process.stdout.write(text.slice(printed));
    printed = text.length;
    reply = uiMessage;
  }
  process.stdout.write('\n');
  if (failure) throw failure;
  const stored = await (await fetch(`${gatewayUrl}/api/chat/${chatId}/messages`, { headers })).json();
  console.error(`[${reply?.metadata?.finishReason} from ${reply?.metadata?.model}; chat ${chatId} holds ${stored.length} messages]`);
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
}
