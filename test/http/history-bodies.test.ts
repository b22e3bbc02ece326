/**
 * Requests that carry their whole conversation every time: the AI SDK's `useChat` (only the
 * last message is new; the server keeps the conversation) and stateless /v1/chat/completions
 * (the messages are the context). A chat outgrows MAX_BODY_BYTES long before it outgrows a
 * model's context: these routes read up to MAX_HISTORY_BODY_BYTES, and past that say what to do.
 */
import type { UIMessage } from 'ai';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { NodeChat, textOf } from '../helpers/ai-sdk-chat.js';
import { gatewayForSuite } from '../helpers/gateway.js';

/** A chat as a page holds it after many long replies: `pairs` exchanges of about `chars` characters each. */
function longChat(pairs: number, chars: number): UIMessage[] {
  return Array.from({ length: pairs * 2 }, (_, i) => ({
    id: `m${i}`,
    role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
    parts: [{ type: 'text' as const, text: `${i}: ${'lorem ipsum '.repeat(Math.ceil(chars / 12))}`.slice(0, chars) }],
  }));
}

const HISTORY_BODY_BYTES = 1024 * 1024;

describe('requests that carry their whole conversation', () => {
  // MAX_BODY_BYTES at its default (256 KiB); MAX_HISTORY_BODY_BYTES lowered to 1 MiB to reach it quickly.
  const gw = gatewayForSuite({ RATE_LIMIT_USER: '1000', MEMORY_ENABLED: 'false', MAX_HISTORY_BODY_BYTES: String(HISTORY_BODY_BYTES) });

  it('useChat with a chat larger than MAX_BODY_BYTES carries on; the earlier messages are not checked one by one', async () => {
    const account = await register(gw().url, 'history-bodies@example.com');
    const headers = { Authorization: `Bearer ${account.token}` };
    // 600 KiB of history in the page, and one earlier message of a shape the server does not know.
    const messages = longChat(60, 5_000);
    (messages[3] as unknown as { role: string }).role = 'tool';
    const chat = new NodeChat({ id: 'history-bodies', api: `${gw().url}/api/chat`, headers, messages });
    await chat.sendMessage({ text: 'and now?' }, { body: { maxTokens: 3 } });
    expect(chat.error).toBeUndefined();
    expect(chat.status).toBe('ready');
    expect(textOf(chat.messages.at(-1))).not.toBe('');
  });

  it('useChat past MAX_HISTORY_BODY_BYTES: 413 with the bound, and the connection closed', async () => {
    const account = await register(gw().url, 'history-bodies-413@example.com');
    const body = JSON.stringify({ id: 'too-long', messages: [...longChat(120, 5_000), { id: 'new', role: 'user', parts: [{ type: 'text', text: 'hi' }] }], trigger: 'submit-message' });
    expect(Buffer.byteLength(body)).toBeGreaterThan(HISTORY_BODY_BYTES);
    const res = await fetch(`${gw().url}/api/chat`, { method: 'POST', headers: { Authorization: `Bearer ${account.token}`, 'Content-Type': 'application/json' }, body });
    expect(res.status).toBe(413);
    const answer = (await res.json()) as { error: string; code: string };
    expect(answer.code).toBe('BAD_REQUEST');
    expect(answer.error).toBe(`Request body exceeds ${HISTORY_BODY_BYTES} bytes`);
    expect(res.headers.get('connection')).toBe('close');
  });

  it('useChat: the last message is still checked, and named by its place', async () => {
    const account = await register(gw().url, 'history-bodies-last@example.com');
    const post = (messages: unknown[]) =>
      fetch(`${gw().url}/api/chat`, { method: 'POST', headers: { Authorization: `Bearer ${account.token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'checked', messages }) });
    const bad = await post([...longChat(2, 10), { id: 'x', role: 'robot', parts: [] }]);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/messages\.4\.role/);
    const notUser = await post(longChat(2, 10));
    expect(notUser.status).toBe(400);
    expect(((await notUser.json()) as { error: string }).error).toMatch(/last message must be a user message/);
  });

  it('a stateless /v1/chat/completions request larger than MAX_BODY_BYTES is answered, through the openai client', async () => {
    const account = await register(gw().url, 'history-bodies-v1@example.com');
    const client = new OpenAI({ apiKey: account.token, baseURL: `${gw().url}/v1`, maxRetries: 0 });
    const history = longChat(40, 5_000).map((m) => ({ role: m.role, content: textOf(m) }));
    const completion = await client.chat.completions.create({ model: 'local', messages: [...history, { role: 'user', content: 'sum it up' }], max_tokens: 3 });
    expect(completion.choices[0]!.message.content).not.toBe('');
  });
});
