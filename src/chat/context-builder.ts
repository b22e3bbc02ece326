import { memoryBlock, type ModelMessage } from '../models/language-model.js';
import { MESSAGE_OVERHEAD, countMessageTokens, countTokensBounded } from '../models/tokenizer.js';

/** A message of the context's history: stored ones carry their token count (and id), a client's (stateless turns) may not. */
export interface ContextMessage {
  id?: string;
  role: ModelMessage['role'];
  content: string;
  tokens?: number | undefined;
}

export interface ContextInput {
  systemPrompt: string;
  /** Long-term memories recalled for this user, most similar first. */
  recalled: readonly string[];
  /** Recent messages, oldest first; the last one is the new user message. */
  history: readonly ContextMessage[];
  /** Tokens the model accepts in one request. */
  contextTokens: number;
  /** Tokens kept free for the reply. */
  reserveTokens: number;
}

/**
 * System prompt, recalled memory, then history oldest first, with the oldest history
 * dropped until the prompt fits the model's budget. The newest message always stays, and so
 * do the history's own system messages (a client's instructions, on the OpenAI-compatible API):
 * only user and assistant messages are dropped, oldest first.
 * History carries the token counts stored with each message, so nothing is re-tokenised.
 */
export function buildContext(input: ContextInput): ModelMessage[] {
  const head: ModelMessage[] = [{ role: 'system', content: input.systemPrompt }];
  if (input.recalled.length) {
    head.push({ role: 'system', content: memoryBlock(input.recalled) });
  }
  const history: ModelMessage[] = input.history.map((m) => ({ role: m.role, content: m.content }));
  const budget = Math.max(0, input.contextTokens - input.reserveTokens);

  // A token is never shorter than a byte, and a UTF-16 unit never more than 3 UTF-8 bytes:
  // a prompt whose upper bound fits needs no counting at all.
  let upperBound = 0;
  for (const m of head) upperBound += m.content.length * 3 + 16;
  for (const m of history) upperBound += m.content.length * 3 + 16;
  if (upperBound <= budget) return [...head, ...history];

  const cost = (m: ContextMessage) => (m.tokens ?? countTokensBounded(m.content)) + MESSAGE_OVERHEAD;
  const last = input.history.length - 1;
  let total = countMessageTokens(head);
  for (let i = 0; i < last; i++) if (input.history[i]!.role === 'system') total += cost(input.history[i]!);
  const keep = new Array<boolean>(input.history.length).fill(false);
  for (let i = last; i >= 0; i--) {
    const m = input.history[i]!;
    if (m.role === 'system' && i !== last) {
      keep[i] = true; // counted above
      continue;
    }
    const c = cost(m);
    if (i !== last && total + c > budget) break;
    total += c;
    keep[i] = true;
  }
  // What is before the break: the system messages only.
  for (let i = 0; i < last; i++) if (input.history[i]!.role === 'system') keep[i] = true;
  return [...head, ...history.filter((_, i) => keep[i])];
}
