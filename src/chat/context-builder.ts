import { MEMORY_PREFIX, type ModelMessage } from '../models/language-model.js';
import { countMessageTokens, countTokens } from '../models/tokenizer.js';
import type { StoredMessage } from '../stores/conversation-store.js';

export interface ContextInput {
  systemPrompt: string;
  /** Long-term memories recalled for this user, most similar first. */
  recalled: readonly string[];
  /** Recent messages, oldest first; the last one is the new user message. */
  history: readonly StoredMessage[];
  /** Tokens the model accepts in one request. */
  contextTokens: number;
  /** Tokens kept free for the reply. */
  reserveTokens: number;
}

const encoder = new TextEncoder();

/**
 * System prompt, recalled memory, then history oldest first, with the oldest history
 * dropped until the prompt fits the model's budget. The newest message always stays.
 */
export function buildContext(input: ContextInput): ModelMessage[] {
  const head: ModelMessage[] = [{ role: 'system', content: input.systemPrompt }];
  if (input.recalled.length) {
    head.push({ role: 'system', content: MEMORY_PREFIX + input.recalled.map((r) => `- ${r}`).join('\n') });
  }
  const history: ModelMessage[] = input.history.map((m) => ({ role: m.role, content: m.content }));
  const budget = Math.max(0, input.contextTokens - input.reserveTokens);

  // A token is never shorter than a byte, so a prompt whose bytes fit needs no tokenizer pass.
  const bytes = [...head, ...history].reduce((n, m) => n + encoder.encode(m.content).length + 16, 0);
  if (bytes <= budget) return [...head, ...history];

  let total = countMessageTokens(head);
  const kept: ModelMessage[] = [];
  for (let i = history.length - 1; i >= 0; i--) {
    const m = history[i]!;
    const cost = countTokens(m.content) + 4;
    if (kept.length > 0 && total + cost > budget) break;
    total += cost;
    kept.push(m);
  }
  return [...head, ...kept.reverse()];
}
