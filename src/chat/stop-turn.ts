import type { TurnCoordinator } from './turn-coordinator.js';
import type { TurnTracker } from './turn-tracker.js';

/**
 * Stops a conversation's running turn wherever it runs: here at once (resolving once its partial
 * reply is stored), on another node through the coordinator. True when a turn was running.
 */
export async function stopConversationTurn(services: { turns: TurnTracker; coordinator: TurnCoordinator | undefined }, conversationKey: string): Promise<boolean> {
  const { turns, coordinator } = services;
  if (turns.isRunning(conversationKey)) return (await turns.abortConversation(conversationKey, 'stop')) > 0;
  if (!coordinator) return false;
  const running = await coordinator.isRunning(conversationKey).catch(() => false);
  if (running) await coordinator.publishStop(conversationKey).catch(() => undefined);
  return running;
}
