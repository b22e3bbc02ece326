/**
 * `regenerate()` and editing a message with the AI SDK's own `AbstractChat` +
 * `DefaultChatTransport`: the stored conversation is cut back as the page's chat is, so the model
 * does not see the answer it is asked to replace and a reload shows what the page showed.
 */
import type { UIMessage } from 'ai';
import { describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { NodeChat, textOf } from '../helpers/ai-sdk-chat.js';
import { gatewayForSuite } from '../helpers/gateway.js';

const shown = (messages: readonly UIMessage[]) => messages.map((m) => [m.role, textOf(m)]);

describe('useChat regenerate and edit (/api/chat)', () => {
  const gw = gatewayForSuite({ RATE_LIMIT_USER: '1000', MEMORY_ENABLED: 'false' });

  const setUp = async (email: string, id: string) => {
    const account = await register(gw().url, email);
    const headers = { Authorization: `Bearer ${account.token}` };
    const api = `${gw().url}/api/chat`;
    const stored = async () => {
      const res = await fetch(`${api}/${id}/messages`, { headers });
      expect(res.status).toBe(200);
      return (await res.json()) as UIMessage[];
    };
    return { chat: new NodeChat({ id, api, headers }), stored, api, headers };
  };

  it('regenerate(): the last reply is replaced, in the store too, and the model sees the conversation without it', async () => {
    const { chat, stored } = await setUp('regen@example.com', 'regen-1');
    await chat.sendMessage({ text: 'first question' });
    await chat.sendMessage({ text: 'second question' });
    expect(chat.messages).toHaveLength(4);
    await chat.regenerate();
    expect(chat.error).toBeUndefined();
    expect(chat.messages).toHaveLength(4);
    // The embedded model says how many earlier messages it was given: the first exchange only.
    expect(textOf(chat.messages[3])).toContain('This conversation has 2 earlier messages in context');
    expect(shown(await stored())).toEqual(shown(chat.messages));
  });

  it('regenerate({messageId}) of an earlier reply: what followed it goes, in the store too', async () => {
    const { chat, stored } = await setUp('regen-earlier@example.com', 'regen-2');
    await chat.sendMessage({ text: 'one' });
    await chat.sendMessage({ text: 'two' });
    await chat.sendMessage({ text: 'three' });
    await chat.regenerate({ messageId: chat.messages[3]!.id });
    expect(chat.error).toBeUndefined();
    expect(shown(chat.messages).map(([role, text]) => (role === 'user' ? text : role))).toEqual(['one', 'assistant', 'two', 'assistant']);
    expect(textOf(chat.messages[3])).toContain('This conversation has 2 earlier messages in context');
    expect(shown(await stored())).toEqual(shown(chat.messages));
  });

  it('editing a message (sendMessage with its messageId): it and what followed are replaced, in the store too', async () => {
    const { chat, stored } = await setUp('edit@example.com', 'edit-1');
    await chat.sendMessage({ text: 'my name is Bob' });
    await chat.sendMessage({ text: 'what is my name?' });
    await chat.sendMessage({ text: 'and what is yours?' });
    await chat.sendMessage({ text: 'what is my name, really?', messageId: chat.messages[2]!.id });
    expect(chat.error).toBeUndefined();
    expect(chat.messages).toHaveLength(4);
    expect(shown(await stored())).toEqual(shown(chat.messages));
    expect(textOf(chat.messages[3])).toContain('This conversation has 2 earlier messages in context');
  });

  it('a page reloaded from /messages edits its first message: the whole conversation is replaced', async () => {
    const { chat, stored, api, headers } = await setUp('edit-reload@example.com', 'edit-2');
    await chat.sendMessage({ text: 'start' });
    await chat.sendMessage({ text: 'go on' });
    const reloaded = new NodeChat({ id: 'edit-2', api, headers, messages: await stored() });
    await reloaded.sendMessage({ text: 'start over', messageId: reloaded.messages[0]!.id });
    expect(reloaded.error).toBeUndefined();
    expect(reloaded.messages).toHaveLength(2);
    expect(shown(reloaded.messages)[0]).toEqual(['user', 'start over']);
    // The page has the stored ids: the message named is the place.
    expect(shown(await stored())).toEqual(shown(reloaded.messages));
    expect(textOf(reloaded.messages[1])).toContain('This is the start of the conversation');
  });

  it('a page reloaded from /messages regenerates an earlier reply by its stored id', async () => {
    const { chat, stored, api, headers } = await setUp('regen-reload@example.com', 'regen-4');
    await chat.sendMessage({ text: 'alpha' });
    await chat.sendMessage({ text: 'beta' });
    const reloaded = new NodeChat({ id: 'regen-4', api, headers, messages: await stored() });
    await reloaded.regenerate({ messageId: reloaded.messages[1]!.id });
    expect(reloaded.error).toBeUndefined();
    expect(shown(reloaded.messages).map(([role, text]) => (role === 'user' ? text : role))).toEqual(['alpha', 'assistant']);
    expect(shown(await stored())).toEqual(shown(reloaded.messages));
  });

  it('a client that sends only its last message (prepareSendMessagesRequest): a regenerate deletes nothing, since it looks exactly like the retry of a refused message', async () => {
    const { stored, api, headers } = await setUp('regen-last-only@example.com', 'regen-3');
    const post = (body: object) => fetch(api, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const only = (id: string, text: string) => [{ id, role: 'user', parts: [{ type: 'text', text }] }];
    expect((await post({ id: 'regen-3', trigger: 'submit-message', messages: only('u1', 'continue') })).status).toBe(200);
    // The same text again, refused before anything is stored (here a bad temperature; a 429 or a lost request alike).
    expect((await post({ id: 'regen-3', trigger: 'submit-message', messages: only('u2', 'continue'), temperature: 5 })).status).toBe(400);
    // The AI SDK's retry is a regenerate of that last user message, sent alone.
    const retry = await post({ id: 'regen-3', trigger: 'regenerate-message', messages: only('u2', 'continue') });
    expect(retry.status).toBe(200);
    await retry.text();
    // The first exchange, which the page still shows, is kept.
    expect(shown(await stored()).map(([role, text]) => (role === 'user' ? text : role))).toEqual(['continue', 'assistant', 'continue', 'assistant']);
  });
});
