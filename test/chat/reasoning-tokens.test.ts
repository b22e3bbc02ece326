/**
 * A reasoning model's usage counts the tokens it spent thinking among its output tokens: billed,
 * never part of the reply. The reply is stored with its own size, so the context of later turns
 * is budgeted by what they actually send. OpenAI's `completion_tokens_details.reasoning_tokens`
 * and Gemini's `thoughtsTokenCount`, through the real SDKs against the stand-ins.
 */
import { describe, expect, it } from 'vitest';
import { messagesOf } from '../helpers/conversations.js';
import { startGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { startGeminiStandin } from '../standins/gemini-standin.js';
import { startOpenAIStandin } from '../standins/openai-standin.js';
import type { Script } from '../standins/standin-script.js';

/** Turn 1: a short reply that took 17,990 tokens of thought; later turns: "fine". */
function thinkingScript(): () => Script {
  let turn = 0;
  return () => (++turn === 1 ? { tokens: ['OK, noted.'], usage: { inputTokens: 30, outputTokens: 18_000, reasoningTokens: 17_990 } } : { tokens: ['fine'] });
}

const LONG_QUESTION = 'Here is some context for my question. '.repeat(200) + 'What was the secret word?';

describe.each([
  { provider: 'OpenAI', model: 'openai:o4-mini' },
  { provider: 'Gemini', model: 'gemini-2.5-pro' },
])('thinking tokens of $provider', ({ provider, model }) => {
  it('are billed in the usage but not counted as the reply\'s size: the next turn still sends it', async () => {
    const standin = provider === 'OpenAI' ? await startOpenAIStandin({ script: thinkingScript() }) : await startGeminiStandin({ script: thinkingScript() });
    const keys = provider === 'OpenAI' ? { OPENAI_API_KEY: 'k', OPENAI_BASE_URL: standin.url } : { GEMINI_API_KEY: 'k', GEMINI_BASE_URL: standin.url };
    const gw = await startGateway({ ...keys, DEFAULT_MODEL: model, MODEL_CONTEXT_TOKENS: '20000', MAX_OUTPUT_TOKENS: '1000', PROVIDER_MAX_RETRIES: '0' });
    try {
      const sessionId = `thinking-${provider}`;
      const first = await readSse(await postChat(gw.url, { message: 'The secret word is PINEAPPLE. Remember it.', sessionId }));
      // The client is told what was billed.
      expect(first.at(-1)).toMatchObject({ done: true, usage: { outputTokens: 18_000, reasoningTokens: 17_990 } });
      const reply = (await messagesOf(gw, sessionId)).find((m) => m.role === 'assistant');
      expect(reply).toMatchObject({ content: 'OK, noted.', tokens: 10 });
      // A question long enough that the context must be budgeted: 18,000 tokens counted for the
      // reply would leave no room for turn 1; its 10 do.
      await readSse(await postChat(gw.url, { message: LONG_QUESTION, sessionId }));
      const sent = JSON.stringify(standin.requests.at(-1)!.body);
      expect(sent).toContain('PINEAPPLE');
      expect(sent).toContain('OK, noted.');
    } finally {
      await gw.destroy();
      await standin.close();
    }
  });
});
