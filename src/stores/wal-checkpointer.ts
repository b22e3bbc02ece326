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
 * The worker, one per process for every database file: its own connection to each file, which
 * runs a PASSIVE checkpoint (it never waits for a lock nor blocks a writer or a reader) each
 * time that file's owner wakes it, then a RESTART one when the WAL is long. `close` closes
 * that file's connection (the last connection to a file checkpoints the WAL and removes it, as
 * SQLite always does); `exit` ends the worker. Another process checkpointing the same file
 * answers SQLITE_BUSY: skipped, the next wake tries again. Any other failure on a file closes
 * that file's connection and is reported for it alone.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const files = new Map();
const fail = (id, err) => parentPort.postMessage({ id, error: String((err && err.message) || err) });
parentPort.on('message', ({ op, id, file }) => {
  if (op === 'exit') return parentPort.close();
  if (op === 'open') {
    try {
      const db = new Database(file, { fileMustExist: true });
      db.pragma('busy_timeout = ' + workerData.restartWaitMs);
      files.set(id, { db, passive: db.prepare('PRAGMA wal_checkpoint(PASSIVE)'), restart: db.prepare('PRAGMA wal_checkpoint(RESTART)') });
    } catch (err) {
      fail(id, err);
    }
    return;
  }
  const entry = files.get(id);
  if (op === 'close') {
    files.delete(id);
    try {
      entry?.db.close();
    } finally {
      parentPort.postMessage({ id, closed: true });
    }
    return;
  }
  if (!entry) return;
  let result;
  try {
    result = entry.passive.get();
    if (result.log >= workerData.restartPages) result = { ...entry.restart.get(), restarted: 1 };
  } catch (err) {
    if (!err || (err.code !== 'SQLITE_BUSY' && err.code !== 'SQLITE_LOCKED')) {
      files.delete(id);
      try { entry.db.close(); } catch {}
      return fail(id, err);
    }
    result = { busy: 1, log: -1, checkpointed: -1 };
  }
  parentPort.postMessage({ id, ...result });
});
`;

type WorkerReply = { id: number; error?: string; closed?: boolean; busy?: number; log?: number; checkpointed?: number; restarted?: number };

/** The process's checkpoint worker and the files it serves; started with the first file's first commit. */
class SharedWorker {
  static #current: SharedWorker | undefined;
  readonly #worker: Worker;
  readonly #members = new Map<number, WalCheckpointer>();
  #nextId = 1;
  #gone = false;

  static join(member: WalCheckpointer, file: string): { worker: SharedWorker; id: number } {
    let shared = SharedWorker.#current;
    if (!shared || shared.#gone) shared = SharedWorker.#current = new SharedWorker();
    const id = shared.#nextId++;
    shared.#members.set(id, member);
    shared.#worker.postMessage({ op: 'open', id, file });
    return { worker: shared, id };
  }

  private constructor() {
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: createRequire(import.meta.url).resolve('better-sqlite3'), restartPages: RESTART_PAGES, restartWaitMs: RESTART_WAIT_MS },
      // Pragmas and a few prepared statements: it needs little heap.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // Never what keeps the process alive.
    this.#worker.unref();
    this.#worker.on('message', (reply: WorkerReply) => this.#members.get(reply.id)?.reply(reply));
    const end = (err: Error) => {
      if (this.#gone) return;
      this.#gone = true;
      if (SharedWorker.#current === this) SharedWorker.#current = undefined;
      const members = [...this.#members.values()];
      this.#members.clear();
      for (const member of members) member.lost(err);
    };
    this.#worker.on('error', end);
    this.#worker.once('exit', (code) => end(new Error(`the WAL checkpoint worker stopped (exit code ${code})`)));
  }

  post(op: 'run' | 'close', id: number): void {
    if (!this.#gone) this.#worker.postMessage({ op, id });
  }

  #holds = 0;
  /** Keeps the process alive while a close waits for the worker (an unref'd worker's reply would not). */
  hold(): void {
    if (this.#holds++ === 0) this.#worker.ref();
  }

  release(): void {
    if (--this.#holds === 0) this.#worker.unref();
  }

  /** A member is done (closed or lost): the last one ends the worker. */
  leave(id: number): void {
    if (!this.#members.delete(id) || this.#members.size > 0 || this.#gone) return;
    this.#gone = true;
    if (SharedWorker.#current === this) SharedWorker.#current = undefined;
    this.#worker.postMessage({ op: 'exit' });
  }
}

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
 * One worker thread serves every database of the process (a thread costs ~7 MB of memory), from
 * the first commit on. If it cannot start or fails, or fails on this file, `onLost` is told
 * once: the owner then turns its own automatic checkpoint back on, and the WAL never grows
 * unchecked.
 */
export class WalCheckpointer {
  readonly #file: string;
  readonly #onLost: (err: Error) => void;
  /** The shared worker and this file's id there; joined at the first commit. */
  #member: { worker: SharedWorker; id: number } | undefined;
  #wake: ReturnType<typeof setTimeout> | undefined;
  #closing = false;
  #lost = false;
  #closed: (() => void) | undefined;
  readonly stats: CheckpointStats = { runs: 0, walPages: 0, checkpointedPages: 0, busy: 0, restarts: 0 };

  constructor(file: string, onLost: (err: Error) => void) {
    this.#file = file;
    this.#onLost = onLost;
  }

  /** False once the worker was lost (the owner checkpoints by itself again) or closed. */
  get running(): boolean {
    return !this.#lost && !this.#closing;
  }

  /** A commit added to the WAL: a checkpoint follows shortly (one for a whole burst of commits). */
  committed(): void {
    if (this.#wake !== undefined || !this.running) return;
    if (!this.#member) {
      // The worker starts with the first commit: a process that never writes never pays for it.
      // Never throws: it is called right after a commit, which must not look failed.
      try {
        this.#member = SharedWorker.join(this, this.#file);
      } catch (err) {
        this.lost(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
    this.#wake = setTimeout(this.#run, WAKE_AFTER_MS);
    this.#wake.unref();
  }

  readonly #run = () => {
    this.#wake = undefined;
    if (this.running) this.#member?.worker.post('run', this.#member.id);
  };

  /** From the worker: a checkpoint's result, this file's failure, or its close. */
  reply(r: WorkerReply): void {
    if (r.closed) return this.#closed?.();
    if (r.error !== undefined) return this.lost(new Error(`the WAL checkpoint worker failed on this database: ${r.error}`));
    this.stats.runs++;
    if (r.busy) this.stats.busy++;
    else if (r.restarted) this.stats.restarts++;
    if (r.log !== undefined && r.log >= 0) {
      this.stats.walPages = r.log;
      this.stats.checkpointedPages = r.checkpointed ?? 0;
    }
  }

  /** The worker is gone, or failed on this file: told to the owner once (not after close). */
  lost(err: Error): void {
    this.#closed?.();
    if (this.#lost || this.#closing) return;
    this.#lost = true;
    clearTimeout(this.#wake);
    if (this.#member) this.#member.worker.leave(this.#member.id);
    this.#onLost(err);
  }

  /**
   * Closes this file's connection in the worker after the owner closed its own: the worker's is
   * then the last, and its close checkpoints what is left and removes the WAL file. Resolves
   * when that is done (or after CLOSE_WAIT_MS on a disk that does not answer).
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#wake);
    this.#wake = undefined;
    const member = this.#member;
    if (this.#lost || !member) return;
    member.worker.hold();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, CLOSE_WAIT_MS);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#closed = done;
      member.worker.post('close', member.id);
    });
    this.#closed = undefined;
    member.worker.release();
    member.worker.leave(member.id);
  }
}

/** How an embedded store's WAL is checkpointed (SQLITE_CHECKPOINTS). */
export interface CheckpointOptions {
  /**
   * `worker` (default): WAL checkpoints run on a worker thread (WalCheckpointer); `inline`:
   * SQLite's own, inside the commit that fills the WAL, on the event loop.
   */
  walCheckpoint?: 'worker' | 'inline' | undefined;
  /** Told if the checkpoint worker is lost (checkpoints then run inline again). */
  logger?: Logger | undefined;
}

/**
 * Turns SQLite's automatic checkpoint off on `db` and runs it on a worker thread instead; if the
 * worker is lost, the automatic checkpoint comes back (SQLite's default, 1,000 pages). Undefined
 * (SQLite's own checkpoints) for `walCheckpoint: 'inline'` and for an in-memory database, which
 * has no WAL file for another connection to open. The owner's writes must not wait for the
 * write lock on the event loop (busy_timeout 0, retried from a timer: see WriteLock), since the
 * worker's RESTART holds it for a moment.
 */
export function offLoopCheckpoints(db: Database.Database, file: string, options: CheckpointOptions): WalCheckpointer | undefined {
  if (options.walCheckpoint === 'inline' || file === ':memory:') return undefined;
  db.pragma('wal_autocheckpoint = 0');
  return new WalCheckpointer(file, (err) => {
    if (db.open) db.pragma('wal_autocheckpoint = 1000');
    options.logger?.warn({ err }, 'the WAL checkpoint worker is gone; SQLite checkpoints inside commits again');
  });
}
