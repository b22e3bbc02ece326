import { TurnAbort } from '../chat/turn-abort.js';

/**
 * The turns running on one socket, so a disconnect aborts them all and `/ai` can refuse a
 * second start (BUSY) and stop the running one.
 */
export class SocketTurns {
  readonly #running = new Map<AbortController, { conversationId: string | undefined }>();

  get size(): number {
    return this.#running.size;
  }

  begin(): { signal: AbortSignal; setConversation(id: string): void; end(): void } {
    const controller = new AbortController();
    const entry = { conversationId: undefined as string | undefined };
    this.#running.set(controller, entry);
    return {
      signal: controller.signal,
      setConversation: (id) => (entry.conversationId = id),
      end: () => this.#running.delete(controller),
    };
  }

  abortAll(kind: 'stopped' | 'aborted'): number {
    const n = this.#running.size;
    for (const controller of this.#running.keys()) controller.abort(new TurnAbort(kind));
    return n;
  }
}
