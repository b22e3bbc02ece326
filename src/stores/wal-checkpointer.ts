import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../logger.js';

/**
 * How long after a commit the checkpointer is woken: the WAL frames of a burst of commits are
 * copied back in one checkpoint. SQLite's own rule (every 1,000 pages) would have run one
 * about as often under load.
 */
const WAKE_AFTER_MS = 100;
/**
 * A WAL this long (pages; 16 MiB at SQLite's 4 KiB) is restarted after its checkpoint: see
 * WalCheckpointer. SQLite's own checkpoint keeps it near 1,000 pages.
 */
const RESTART_PAGES = 4_096;
/** How long a restart may wait for the commit in progress (a few ms at most) before it gives up until the next wake. */
const RESTART_WAIT_MS = 1_000;
/** How long `close` waits for the worker's last checkpoint (a slow disk) before ending it. */
const CLOSE_WAIT_MS = 5_000;

/**
 * The worker: its own connection to the database file, which runs a PASSIVE checkpoint (it
 * never waits for a lock nor blocks a writer or a reader) each time it is woken, then a
 * RESTART one when the WAL is long, and closes on `close` (the last connection to close
 * checkpoints the WAL and removes it, as SQLite always does). Another process checkpointing
 * the same file answers SQLITE_BUSY: skipped, the next wake tries again. Anything else is
 * thrown, which ends the worker: the owner then checkpoints on its own connection again.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = ' + workerData.restartWaitMs);
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const restart = db.prepare('PRAGMA wal_checkpoint(RESTART)');
parentPort.on('message', (message) => {
  if (message === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  let result;
  try {
    result = passive.get();
    if (result.log >= workerData.restartPages) result = { ...restart.get(), restarted: 1 };
  } catch (err) {
    if (err && (err.code === 'SQLITE_BUSY' || err.code === 'SQLITE_LOCKED')) result = { busy: 1, log: -1, checkpointed: -1 };
    else throw err;
  }
  parentPort.postMessage(result);
});
`;

/** What the last checkpoint found (SQLite's own figures, in pages), and how many ran. */
export interface CheckpointStats {
  /** Checkpoints the worker ran. */
  runs: number;
  /** Pages in the WAL at the last one, and how many of them it had copied back to the database. */
  walPages: number;
  checkpointedPages: number;
  /** Runs that found another connection's checkpoint (or a reader) in the way. */
  busy: number;
  /** Runs that restarted the WAL (it had reached RESTART_PAGES). */
  restarts: number;
}

/**
 * Runs a SQLite database's WAL checkpoints on a worker thread instead of the event loop.
 *
 * In WAL mode SQLite checkpoints from inside the commit that takes the WAL past 1,000 pages:
 * the WAL is synced, its pages are copied back into the database file, and that file is
 * synced. With better-sqlite3 the commit runs on the event loop, so every few dozen group
 * commits under load one of them held the loop for the two fsyncs: 11-16 ms on this machine's
 * disk (bench/sqlite-commits.ts), more on a network disk, with every client's stream waiting.
 * The owner turns SQLite's automatic checkpoint off on its connection (`wal_autocheckpoint =
 * 0`) and calls `committed()` after its commits; the checkpoint then runs here, on a second
 * connection, a moment later. Durability is unchanged: the commit itself never synced (WAL,
 * `synchronous = NORMAL`), and the checkpoint syncs as before, only off the loop.
 *
 * A checkpoint that runs beside the writer never catches up with it under steady load (new
 * commits land while it syncs), and SQLite starts the WAL over only when a commit finds it
 * wholly copied back: the WAL would grow without end. So once it reaches RESTART_PAGES the
 * worker follows with a RESTART checkpoint, which holds off new commits while it copies the
 * last frames (the owner's commit then finds the lock taken and retries from a timer, as with
 * another process's lock: the loop is not held), and the next commit starts the WAL over.
 *
 * If the worker cannot start or fails, `onLost` is told once: the owner then turns its own
 * automatic checkpoint back on, and the WAL never grows unchecked.
 */
export class WalCheckpointer {
  readonly #worker: Worker;
  #wake: ReturnType<typeof setTimeout> | undefined;
  #closing = false;
  #lost = false;
  readonly #exited: Promise<void>;
  readonly stats: CheckpointStats = { runs: 0, walPages: 0, checkpointedPages: 0, busy: 0, restarts: 0 };

  constructor(file: string, onLost: (err: Error) => void) {
    const lost = (err: Error) => {
      if (this.#lost || this.#closing) return;
      this.#lost = true;
      clearTimeout(this.#wake);
      onLost(err);
    };
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file, driver: createRequire(import.meta.url).resolve('better-sqlite3'), restartPages: RESTART_PAGES, restartWaitMs: RESTART_WAIT_MS },
      // A few pragmas and a prepared statement: it needs little heap.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // Never what keeps the process alive.
    this.#worker.unref();
    this.#worker.on('message', (r: { busy: number; log: number; checkpointed: number; restarted?: number }) => {
      this.stats.runs++;
      if (r.busy) this.stats.busy++;
      else if (r.restarted) this.stats.restarts++;
      if (r.log >= 0) {
        this.stats.walPages = r.log;
        this.stats.checkpointedPages = r.checkpointed;
      }
    });
    this.#worker.on('error', (err) => lost(err));
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once('exit', (code) => {
        lost(new Error(`the WAL checkpoint worker stopped (exit code ${code})`));
        resolve();
      });
    });
  }

  /** False once the worker was lost (the owner checkpoints by itself again). */
  get running(): boolean {
    return !this.#lost && !this.#closing;
  }

  /** A commit added to the WAL: a checkpoint follows shortly (one for a whole burst of commits). */
  committed(): void {
    if (this.#wake !== undefined || !this.running) return;
    this.#wake = setTimeout(this.#run, WAKE_AFTER_MS);
    this.#wake.unref();
  }

  readonly #run = () => {
    this.#wake = undefined;
    if (this.running) this.#worker.postMessage('run');
  };

  /**
   * Ends the worker after the owner closed its connection: the worker's connection is then the
   * last, and its close checkpoints what is left and removes the WAL file.
   */
  async close(): Promise<void> {
    if (this.#closing) return this.#exited;
    this.#closing = true;
    clearTimeout(this.#wake);
    this.#wake = undefined;
    if (this.#lost) return;
    this.#worker.postMessage('close');
    const timer = setTimeout(() => void this.#worker.terminate(), CLOSE_WAIT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}

/**
 * Turns SQLite's automatic checkpoint off on `db` and runs it on a worker thread instead; if the
 * worker is lost, the automatic checkpoint comes back (SQLite's default, 1,000 pages). The
 * owner's writes must not wait for the write lock on the event loop (busy_timeout 0, retried
 * from a timer: see {@link isBusy}), since the worker's RESTART holds it for a moment.
 */
export function offLoopCheckpoints(db: Database.Database, file: string, logger: Logger | undefined): WalCheckpointer {
  db.pragma('wal_autocheckpoint = 0');
  return new WalCheckpointer(file, (err) => {
    if (db.open) db.pragma('wal_autocheckpoint = 1000');
    logger?.warn({ err }, 'the WAL checkpoint worker is gone; SQLite checkpoints inside commits again');
  });
}

/** A write that found the lock taken (another process's commit, or the checkpointer's restart): to be retried later. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}
