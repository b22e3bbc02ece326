import type Database from 'better-sqlite3';

/** Reads (WAL: they rarely wait at all) may wait this long on the event loop; writes never do (see WriteLock). */
export const READ_BUSY_TIMEOUT_MS = 5000;
/**
 * Longest wait between two attempts at the write lock. Another process holds it for one group
 * commit (well under a millisecond), the WAL checkpointer's restart for a few milliseconds, so
 * waiting longer only leaves this process idle.
 */
const BUSY_MAX_DELAY_MS = 2;
/** Writes fail after waiting this long for the write lock. */
const BUSY_GIVE_UP_MS = 10_000;

/** A write that found the lock taken (another process's commit, or the checkpointer's restart): to be retried later. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

/**
 * How the embedded stores' group commits take SQLite's write lock: without waiting (BEGIN
 * IMMEDIATE with busy_timeout 0). When another process holds it (several gateway processes on
 * one DATA_DIR) or the WAL checkpointer's restart does, SQLite's busy handler would sleep on
 * the event loop; the batch is retried from a timer instead, with a short backoff, while the
 * process serves, and fails once the lock has been refused for BUSY_GIVE_UP_MS.
 */
export class WriteLock {
  readonly #db: Database.Database;
  // Prepared once: `db.pragma()` prepares its statement on every call (~30 µs), twice per group commit.
  readonly #noWait: Database.Statement;
  readonly #readWait: Database.Statement;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #delay = 0;
  #busySince = 0;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#noWait = db.prepare('PRAGMA busy_timeout = 0');
    this.#readWait = db.prepare(`PRAGMA busy_timeout = ${READ_BUSY_TIMEOUT_MS}`);
  }

  /** A batch waits for its retry: new writes join the queue, not a commit of their own. */
  get waiting(): boolean {
    return this.#retry !== undefined;
  }

  /**
   * Runs `commit` (a transaction begun IMMEDIATE) with the lock taken without waiting. True when
   * it ran; false when the lock was taken, and `retry` then runs shortly (the caller puts the
   * batch back first in its queue). Throws what `commit` threw otherwise, and SQLITE_BUSY itself
   * once the lock has been refused for BUSY_GIVE_UP_MS.
   */
  commit(commit: () => void, retry: () => void): boolean {
    this.#retry = undefined;
    this.#noWait.get();
    try {
      commit();
    } catch (err) {
      if (!isBusy(err) || (this.#busySince !== 0 && performance.now() - this.#busySince > BUSY_GIVE_UP_MS)) {
        this.#busySince = 0;
        throw err;
      }
      this.#busySince ||= performance.now();
      this.#delay = Math.min(BUSY_MAX_DELAY_MS, this.#delay * 2 || 1);
      this.#retry = setTimeout(retry, this.#delay);
      return false;
    } finally {
      if (this.#db.open) this.#readWait.get();
    }
    this.#busySince = 0;
    this.#delay = 0;
    return true;
  }

  /**
   * Shutting down, not serving: no more retries, and the last commit (run by the caller after
   * this) may wait for the lock, up to BUSY_GIVE_UP_MS.
   */
  closing(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (this.#db.open) this.#db.pragma(`busy_timeout = ${BUSY_GIVE_UP_MS}`);
  }
}
