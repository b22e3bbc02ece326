import type { ChatTurnEvent, PreparedTurn, TurnSink } from '../../src/chat/chat-pipeline.js';
import type { LanguageModel, ModelCallOptions, ModelStreamPart } from '../../src/models/language-model.js';

/**
 * Runs a prepared turn into a sink that records every event, in order, the way a protocol
 * adapter would see them. `onEvent` sees each event as it comes (to stop or abort mid-stream).
 */
export async function runTurn(turn: PreparedTurn, options: { signal?: AbortSignal; onEvent?: (e: ChatTurnEvent) => void } = {}): Promise<ChatTurnEvent[]> {
  const events: ChatTurnEvent[] = [];
  const push = (e: ChatTurnEvent) => {
    events.push(e);
    options.onEvent?.(e);
  };
  const sink: TurnSink = {
    start: (e) => push(e),
    delta: (text) => {
      push({ type: 'delta', text });
      return true;
    },
    drained: () => Promise.resolve(),
    end: (e) => push(e),
    error: (e) => push(e),
  };
  await turn.run(sink, options.signal);
  return events;
}

/**
 * A model's output as the old iterator-shaped parts: one `text-delta` per `onText` call, then
 * the `finish` (or the failure, rethrown). `onPart` sees each part as it comes.
 */
export async function modelParts(model: LanguageModel, options: ModelCallOptions, onPart?: (p: ModelStreamPart) => void): Promise<ModelStreamPart[]> {
  const parts: ModelStreamPart[] = [];
  const push = (p: ModelStreamPart) => {
    parts.push(p);
    onPart?.(p);
  };
  const stream = model.stream(options, (text) => push({ type: 'text-delta', text }));
  const finish = await stream.done;
  push({ type: 'finish', finishReason: finish.finishReason, usage: finish.usage });
  return parts;
}
