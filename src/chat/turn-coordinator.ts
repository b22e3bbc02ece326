import type { TurnStreams } from './turn-streams.js';

/** A conversation's running-turn slot, held while the turn runs. */
export interface TurnLease {
  release(): void;
  /**
   * The id the turn holding this lease is known by cluster-wide (the lock's token): its resumable
   * log takes it, so a resume on any node can tell whether the lock is still that turn's.
   */
  readonly turnId?: string | undefined;
}

/**
 * What several nodes agree on through a shared service (Redis): one running turn per
 * conversation (BUSY), and stops that reach whichever node runs the turn.
 */
export interface TurnCoordinator {
  /** Claims the slot; undefined when a turn of this conversation runs on some node. */
  acquire(conversationKey: string): Promise<TurnLease | undefined>;
  /** Whether a turn of this conversation runs on some node. */
  isRunning(conversationKey: string): Promise<boolean>;
  /** Asks every node to stop this conversation's running turn. */
  publishStop(conversationKey: string): Promise<void>;
  /** Called when some node asked for a stop. */
  onStop(listener: (conversationKey: string) => void): void;
}

/** The shared service itself: the coordinator, the turn logs, and its health. */
export interface ClusterLink extends TurnCoordinator {
  readonly kind: string;
  /** Turn logs in the shared service; undefined when resuming is off. */
  readonly streams: TurnStreams | undefined;
  ping(): Promise<void>;
  close(): Promise<void>;
}
