/**
 * `GET /api/chat/:id/messages`, what a `useChat` page loads after a reload, for a conversation
 * longer than the history it answers: the latest messages, oldest first, driven by the AI
 * SDK's own `AbstractChat` + `DefaultChatTransport`.
 */
import type { UIMessage } from 'ai';
import { NodeChat, textOf } from '../helpers/ai-sdk-chat.js';
import { describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { gatewayForSuite } from '../helpers/gateway.js';

/** What the route answers at most. */
const HISTORY_LIMIT = 200;

const shown = (messages: UIMessage[]) => messages.map((m) => [m.role, textOf(m)]);

describe('AI SDK history of a long conversation (/api/chat/:id/messages)', () => {
  const gw = gatewayForSuite({ RATE_LIMIT_USER: '1000', MEMORY_ENABLED: 'false' });

  it('answers the latest messages, oldest first, and a Chat reloaded from them carries on', async () => {
    const account = await register(gw().url, 'long-history@example.com');
    const headers = { Authorization: `Bearer ${account.token}` };
    const api = `${gw().url}/api/chat`;
    const chat = new NodeChat({ id: 'long-chat', api, headers });
    const turns = HISTORY_LIMIT / 2 + 5;
    for (let i = 1; i <= turns; i++) {
      await chat.sendMessage({ text: `question number ${i}` }, { body: { maxTokens: 2 } });
      expect(chat.error).toBeUndefined();
    }
    expect(chat.messages).toHaveLength(turns * 2);

    const load = async () => {
      const res = await fetch(`${api}/long-chat/messages`, { headers });
      expect(res.status).toBe(200);
      return (await res.json()) as (UIMessage & { metadata: { createdAt: string } })[];
    };
    const history = await load();
    expect(history).toHaveLength(HISTORY_LIMIT);
    // What the page showed last, in the order it showed it: the first turns are the ones left out.
    expect(shown(history)).toEqual(shown(chat.messages.slice(-HISTORY_LIMIT)));
    expect(textOf(history[0])).toBe('question number 6');
    expect(shown(history.slice(-2))[0]).toEqual(['user', `question number ${turns}`]);
    expect(history.at(-1)!.role).toBe('assistant');
    const dates = history.map((m) => Date.parse(m.metadata.createdAt));
    expect(dates).toEqual([...dates].sort((a, b) => a - b));

    const reloaded = new NodeChat({ id: 'long-chat', api, headers, messages: history });
    await reloaded.sendMessage({ text: 'and one more' }, { body: { maxTokens: 2 } });
    expect(reloaded.error).toBeUndefined();
    expect(reloaded.status).toBe('ready');
    const after = await load();
    expect(after).toHaveLength(HISTORY_LIMIT);
    expect(shown(after)).toEqual(shown(reloaded.messages.slice(-HISTORY_LIMIT)));
    expect(shown(after.slice(-2))[0]).toEqual(['user', 'and one more']);
  });
});
