/**
 * The AI SDK's `AbstractChat` + `DefaultChatTransport` (what `useChat` runs in a browser) in
 * Node: the state a framework binding (React, Vue, Svelte) keeps, as plain fields.
 */
import { AbstractChat, DefaultChatTransport, type ChatState, type ChatStatus, type UIMessage } from 'ai';

class PlainState implements ChatState<UIMessage> {
  status: ChatStatus = 'ready';
  error: Error | undefined = undefined;
  constructor(public messages: UIMessage[] = []) {}
  pushMessage = (m: UIMessage) => void this.messages.push(m);
  popMessage = () => void this.messages.pop();
  replaceMessage = (i: number, m: UIMessage) => void (this.messages[i] = m);
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

export class NodeChat extends AbstractChat<UIMessage> {
  constructor(options: { id: string; api: string; headers: Record<string, string>; messages?: UIMessage[] }) {
    super({ id: options.id, transport: new DefaultChatTransport({ api: options.api, headers: options.headers }), state: new PlainState(options.messages) });
  }
}

/** A UI message's text parts, joined. */
export const textOf = (m: UIMessage | undefined) => (m?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');
