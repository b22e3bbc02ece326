import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ConversationStore, MemoryClaim, Page, PendingMemory } from '../stores/conversation-store.js';
import type { Embedder } from './embedder.js';
import type { MemoryMatch, MemoryRecord, MemoryStore } from './memory-store.js';
import { BoundedMap } from '../bounded-map.js';
import { MemoryStoreError } from './memory-store-error.js';
import { withDeadline } from '../stall-breaker.js';

export interface LongTermMemoryOptions {
  /** Memories put into a prompt at most. */
  topK: number;
  /** Matches scoring below this are not recalled. */
  minScore: number;
  /** A recall slower than this is skipped (the turn goes on with short-term context only). */
  recallTimeoutMs: number;
  /** Extra candidates asked for, so memories already in the short-term window can be skipped. */
  windowSize: number;
  /** How long the writer waits for one batch's embedding (default WRITE_EMBED_TIMEOUT_MS). */
  writeEmbedTimeoutMs?: number | undefined;
}

export interface LongTermMemoryDeps {
  embedder: Embedder;
  store: MemoryStore;
  /** Holds the durable queue of memory writes and the per-user settings. */
  conversations: ConversationStore;
  logger: Logger;
  options: LongTermMemoryOptions;
  /** Times each recall. */
  metrics?: Pick<Metrics, 'memoryRecall'> | undefined;
}

export interface MemoryHealth {
  status: 'ok' | 'degraded';
  store: string;
  embedder: string;
  /** The last failure, in words, while degraded. */
  error?: string;
}

/** Queue entries written per batch. */
const BATCH = 64;
/** How often the queue is looked at without a nudge (retries, writes queued by other nodes or before a restart). */
const POLL_MS = 5_000;
/**
 * How long a batch read by this writer stays its own (ConversationStore.pendingMemories): far
 * longer than a write takes, so that only a writer that died leaves its batch to another. Within
 * its claim a batch is this writer's alone: an entry gone when it settles was discarded (a
 * deletion), not settled by another writer.
 */
const CLAIM_MS = 30 * 60_000;
/**
 * A batch whose embedding took until its claim's last minutes is not written: its write could
 * land after the claim ended, when another writer may hold the entries. It is retried instead.
 */
const CLAIM_MARGIN_MS = 10 * 60_000;
/** Settling a written batch, or taking back a discarded one, is tried this often (1 s, then 3 s apart). */
const FINISH_ATTEMPTS = 3;
/** Backoff for a failed write: 1 s doubling up to 5 min, retried for as long as it takes. */
const backoffMs = (attempts: number) => Math.min(300_000, 1_000 * 2 ** Math.min(attempts, 9));
/**
 * How long a deletion waits for the batch being written before it deletes anyway. That batch
 * holds other users' messages, and its embedding call is bounded only by the provider's timeout
 * and retries (minutes): a deletion must not wait for that. Waiting is not what makes a deletion
 * complete: it discards its queued entries first, and whatever the batch writes of entries gone
 * by the time it settles is taken back (#unwrite). The short wait only lets the usual batch (well
 * under a second) land before the deletion, so that nothing needs taking back.
 */
export const DELETION_WAIT_MS = 1_000;
/**
 * How long the writer waits for a batch's embedding before it gives up on it (retried with the
 * usual backoff). The provider's own bound is PROVIDER_TIMEOUT_MS per attempt, times its retries:
 * minutes, during which this node would write no memory for anyone. A batch is at most 64
 * texts of at most 8 KiB each, which a provider that answers embeds in seconds.
 */
const WRITE_EMBED_TIMEOUT_MS = 60_000;
/** What a deletion's bounded wait for the batch being written ends with (never seen outside idle()). */
const OVERDUE = new Error('the batch being written is overdue');
/** A failure this recent (and no success since) makes memory "degraded" in /readyz. */
const DEGRADED_FOR_MS = 60_000;
/** How long a user's memory setting is taken from this node's cache for recall and queueing (the writer reads it afresh). */
const SETTINGS_CACHE_MS = 5_000;
const SETTINGS_CACHE_MAX = 10_000;

/**
 * Long-term memory for signed-in users (seed 001, done right): recall the user's most
 * similar memories before a turn, and remember each exchange after it. Recall is bounded in
 * time and never fails a turn; writes go through a durable queue in the conversation store
 * (queued in the same write as the message), so a failed write is retried, not lost.
 */
export class LongTermMemory {
  readonly #settings = new BoundedMap<string, { enabled: boolean; until: number }>(SETTINGS_CACHE_MAX);
  #scheduled: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  /** The batch being written now (claimed, written, settled), if any. */
  #batch: Promise<void> | undefined;
  /** Its claim and entries, once read. */
  #current: { claim: MemoryClaim; ids: string[] } | undefined;
  /** The batch a deletion already stopped waiting for: later deletions do not wait for it again. */
  #overdue: Promise<void> | undefined;
  /**
   * A written batch whose settling failed (the store did not answer): settled again before the
   * next batch, so its entries are not held for the rest of their claim, and what a deletion
   * discarded meanwhile is still taken back.
   */
  #unsettled: { claim: MemoryClaim; settle: () => Promise<string[]>; written: PendingMemory[] } | undefined;
  #again = false;
  #poller: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #lastFailure: { at: number; error: string } | undefined;
  /** The store answered init(); until then (a backend down at start) memory is degraded and init is retried. */
  #ready = false;

  constructor(private readonly deps: LongTermMemoryDeps) {}

  get options(): LongTermMemoryOptions {
    return this.deps.options;
  }

  /**
   * Checks the store (dimension included) and starts writing what is queued. `tolerate`
   * decides which failures leave memory degraded (retried in the background) rather than
   * failing the start: a backend that is merely unreachable, not one that refuses the setup.
   */
  async init(tolerate: (err: unknown) => boolean = () => false): Promise<void> {
    try {
      await this.deps.store.init();
      this.#ready = true;
    } catch (err) {
      if (!tolerate(err)) throw err;
      this.#failed('start', err);
    }
    this.#poller = setInterval(() => void this.#tick(), POLL_MS);
    this.#poller.unref?.();
    this.wake();
  }

  async #tick(): Promise<void> {
    if (!this.#ready) {
      try {
        await this.deps.store.init();
        this.#ready = true;
        this.deps.logger.info({ store: this.deps.store.kind }, 'long-term memory store reachable again');
      } catch (err) {
        this.#failed('start', err);
        return;
      }
    }
    this.wake();
  }

  /** Whether this user's turns recall and are remembered (memory on, and the user did not opt out). */
  async isEnabledFor(userId: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.#settings.get(userId);
    if (cached && cached.until > now) return cached.enabled;
    const { memoryEnabled } = await this.deps.conversations.getUserSettings(userId);
    this.#cacheSetting(userId, memoryEnabled);
    return memoryEnabled;
  }

  async setEnabled(userId: string, enabled: boolean): Promise<void> {
    await this.deps.conversations.setUserSettings(userId, { memoryEnabled: enabled });
    this.#cacheSetting(userId, enabled);
    // Queued writes of a user who opted out are never made.
    if (!enabled) await this.deps.conversations.discardPendingMemories(userId);
  }

  /**
   * The user's memories most similar to `text`, best first: up to topK + windowSize of them
   * (the caller drops those already in its short-term window, then keeps topK). Never throws:
   * a slow or failing embedder or store means no memories for this turn, and a warning.
   */
  async recall(userId: string, text: string): Promise<MemoryMatch[]> {
    const { topK, minScore, recallTimeoutMs, windowSize } = this.deps.options;
    if (!this.#ready) return [];
    const started = performance.now();
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`recall took longer than ${recallTimeoutMs} ms`);
        controller.abort(err);
        reject(err);
      }, recallTimeoutMs);
    });
    try {
      const work = (async () => {
        const [vector] = await this.deps.embedder.embed([text], 'query', controller.signal);
        // A text without letters or digits ("???") embeds to the zero vector under the local
        // embedder: it is similar to nothing, and Pinecone refuses it.
        if (!vector || isZero(vector)) return [];
        return this.deps.store.query(userId, vector, { topK: topK + windowSize, minScore });
      })();
      const matches = await Promise.race([work, timeout]);
      this.#succeeded();
      this.deps.metrics?.memoryRecall((performance.now() - started) / 1000, 'ok');
      return matches;
    } catch (err) {
      this.#failed('recall', err);
      this.deps.metrics?.memoryRecall((performance.now() - started) / 1000, controller.signal.aborted ? 'timeout' : 'error');
      return [];
    } finally {
      clearTimeout(timer);
    }
  }

  /** Nudges the writer: something was queued. */
  wake(): void {
    if (this.#scheduled || this.#closing) return;
    this.#scheduled = setTimeout(() => {
      this.#scheduled = undefined;
      void this.#drain();
    }, 0);
  }

  /**
   * Resolves when the batch being written now, if any, is done (taken back if a deletion
   * discarded its entries), or after `maxWaitMs`, whichever comes first. A deletion discards the
   * entries first, so a later batch cannot hold them; waiting for the writer's whole run instead
   * would wait for as long as anyone chats. A batch that outlasted one deletion's wait is not
   * waited for again (its embedding call hangs): what it writes of deleted entries is taken back
   * when it settles.
   */
  async idle(maxWaitMs = Infinity): Promise<void> {
    const batch = this.#batch;
    if (!batch || batch === this.#overdue) return;
    const done = batch.then(
      () => true,
      () => true,
    );
    const finished = maxWaitMs === Infinity ? await done : await withDeadline(done, maxWaitMs, OVERDUE).catch(() => false);
    if (!finished && this.#batch === batch) this.#overdue = batch;
  }

  list(userId: string, options: { limit: number; cursor?: string | undefined }): Promise<Page<MemoryRecord>> {
    return this.deps.store.list(userId, options);
  }

  /** Forgets one memory (and its write, if it is still queued or being retried); false when the user has none with this id. */
  async forget(userId: string, id: string): Promise<boolean> {
    await this.deps.conversations.discardPendingMemories(userId, [id]);
    await this.idle(DELETION_WAIT_MS);
    return (await this.deps.store.delete(userId, [id])) > 0;
  }

  /** Erases everything the user has, queued writes included. */
  async erase(userId: string): Promise<void> {
    await this.deps.conversations.discardPendingMemories(userId);
    await this.idle(DELETION_WAIT_MS);
    await this.deps.store.deleteAll(userId);
  }

  /** Forgets what one conversation taught (its queued writes go with its messages). */
  async forgetConversation(userId: string, conversationId: string): Promise<void> {
    await this.idle(DELETION_WAIT_MS);
    await this.deps.store.deleteByConversation(userId, conversationId);
  }

  /** For /readyz: the store's answer now, and whether recall or writes failed lately. */
  async health(): Promise<MemoryHealth> {
    const base = { store: this.deps.store.kind, embedder: `${this.deps.embedder.kind}:${this.deps.embedder.model}` };
    if (!this.#ready) return { status: 'degraded', ...base, error: this.#lastFailure?.error ?? 'not started' };
    try {
      await this.deps.store.ping();
    } catch (err) {
      return { status: 'degraded', ...base, error: `store: ${describe(err)}` };
    }
    const failure = this.#lastFailure;
    if (failure && Date.now() - failure.at < DEGRADED_FOR_MS) return { status: 'degraded', ...base, error: failure.error };
    return { status: 'ok', ...base };
  }

  /**
   * Stops the writer: the batch under way may finish within `waitMs`; past that (a provider that
   * does not answer) its entries are handed back to the queue, due now, and written after the
   * restart (or by another node), so a shutdown never waits on a provider's timeouts.
   */
  async close(waitMs = 5_000): Promise<void> {
    this.#closing = true;
    clearInterval(this.#poller);
    clearTimeout(this.#scheduled);
    // The run under way, or a last try at settling the batch whose settling failed: both within waitMs.
    const running: Promise<unknown> | undefined = this.#running ?? (this.#unsettled ? this.#settleAgain() : undefined);
    if (running) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finished = await Promise.race([running.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)))]);
      clearTimeout(timer);
      const current = this.#current;
      if (!finished && current) {
        this.deps.logger.warn({ memories: current.ids.length }, 'long-term memory: a write was still under way at shutdown; its entries go back to the queue');
        const now = Date.now();
        await this.deps.conversations.settleMemories([], current.ids.map((messageId) => ({ messageId, nextAt: now })), current.claim.token).catch(() => undefined);
      }
    }
    await this.deps.store.close();
  }

  /** Whether any memory operation can run now (for the routes: 503-like answers while the store is down). */
  get ready(): boolean {
    return this.#ready;
  }

  async #drain(): Promise<void> {
    if (!this.#ready) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      if (this.#unsettled && !(await this.#settleAgain())) return;
      do {
        this.#again = false;
        const now = Date.now();
        const claim = { token: crypto.randomUUID(), until: now + CLAIM_MS };
        const batch = (this.#batch = this.deps.conversations.pendingMemories(BATCH, now, claim).then(async (pending) => {
          this.#current = { claim, ids: pending.map((p) => p.message.id) };
          if (pending.length) await this.#write(pending, claim);
          if (pending.length === BATCH) this.#again = true;
        }));
        try {
          await batch;
        } finally {
          this.#batch = undefined;
          this.#current = undefined;
          this.#overdue = undefined;
        }
        // A batch left unsettled stops the run: the next batch must not take its place (its
        // entries would then stay claimed), and the store is not answering anyway.
      } while (this.#again && !this.#closing && !this.#unsettled);
    })()
      .catch((err: unknown) => this.#failed('queue', err))
      .finally(() => (this.#running = undefined));
    await this.#running;
  }

  async #write(batch: PendingMemory[], claim: MemoryClaim): Promise<void> {
    const { conversations, embedder, store } = this.deps;
    let keep: PendingMemory[] = [];
    const dropped: string[] = [];
    // Read afresh (a node's cache may not have seen an opt-out made on another node yet).
    const enabled = new Map<string, boolean>();
    for (const p of batch) {
      if (!enabled.has(p.ownerId)) {
        const { memoryEnabled } = await conversations.getUserSettings(p.ownerId);
        this.#cacheSetting(p.ownerId, memoryEnabled);
        enabled.set(p.ownerId, memoryEnabled);
      }
      // Opted out since it was queued, or nothing to remember.
      if (!enabled.get(p.ownerId) || p.message.content.trim() === '') dropped.push(p.message.id);
      else keep.push(p);
    }
    /** Entries whose write failed: retried after a backoff. */
    let failed: PendingMemory[] = [];
    let failure: unknown;
    try {
      if (keep.length) {
        // Raced, and the request aborted at the deadline: an embedder that does not honour its
        // signal must not hold the writer either.
        const abort = new AbortController();
        const vectors = await withDeadline(
          embedder.embed(keep.map((p) => p.message.content), 'document', abort.signal),
          this.deps.options.writeEmbedTimeoutMs ?? WRITE_EMBED_TIMEOUT_MS,
          new Error('the embedding of a batch of memories took too long; retried later'),
        ).catch((err: unknown) => {
          abort.abort();
          throw err;
        });
        if (Date.now() > claim.until - CLAIM_MARGIN_MS) throw new Error('the batch took too long to embed; retried under a new claim');
        // A text without letters or digits ("???", an emoji) embeds to the zero vector under the
        // local embedder: it has no direction, so it is never recalled, and Pinecone refuses it
        // (which would fail its whole batch, again and again). Nothing to remember, like a blank text.
        const records: (MemoryRecord & { vector: Float32Array })[] = [];
        const written: PendingMemory[] = [];
        keep.forEach((p, i) => {
          const vector = vectors[i]!;
          if (isZero(vector)) return void dropped.push(p.message.id);
          written.push(p);
          records.push({
            id: p.message.id,
            ownerId: p.ownerId,
            conversationId: p.conversationId,
            messageId: p.message.id,
            role: p.message.role,
            text: p.message.content,
            createdAt: p.message.createdAt,
            vector,
          });
        });
        keep = written;
        try {
          await store.upsert(records);
        } catch (err) {
          if (!refusedRequest(err) || records.length < 2) throw err;
          // The store refused the request itself (not an outage): one entry it cannot take must
          // not hold back the rest of its batch. Each is written alone, once (at most BATCH
          // requests); those refused again are retried later, alone of their batch.
          const refused = new Set<string>();
          for (const record of records) {
            try {
              await store.upsert([record]);
            } catch (one) {
              refused.add(record.id);
              failure = one;
            }
          }
          failed = keep.filter((p) => refused.has(p.message.id));
        }
      }
    } catch (err) {
      failed = keep;
      failure = err;
    }
    const now = Date.now();
    const done = [...dropped, ...keep.filter((p) => !failed.includes(p)).map((p) => p.message.id)];
    const retry = failed.map((p) => ({ messageId: p.message.id, nextAt: now + backoffMs(p.attempts) }));
    if (failed.length) this.#failed('write', failure, { queued: failed.length, maxAttempts: Math.max(...failed.map((p) => p.attempts + 1)) });
    else if (keep.length) this.#succeeded();
    const settle = () => conversations.settleMemories(done, retry, claim.token);
    let gone: string[];
    try {
      gone = await this.#finish('settle', settle);
    } catch (err) {
      this.#failed('queue', err);
      this.#unsettled = { claim, settle, written: keep };
      return;
    }
    await this.#settled(claim, keep, gone);
  }

  /** Takes back what a deletion discarded meanwhile, unless the claim ran out (another writer may hold the entries since). */
  async #settled(claim: MemoryClaim, written: PendingMemory[], gone: readonly string[]): Promise<void> {
    // Past its claim another writer may have settled an entry: gone no longer means discarded.
    if (Date.now() > claim.until) {
      this.deps.logger.warn({ memories: written.length }, 'a memory write outlasted its claim; what it wrote is left as it is');
      return;
    }
    await this.#unwrite(written, new Set(gone));
  }

  /** Settles the batch whose settling failed; false while the store still does not answer. */
  async #settleAgain(): Promise<boolean> {
    const unsettled = this.#unsettled!;
    if (Date.now() > unsettled.claim.until) {
      // Its entries are due again for any writer.
      this.#unsettled = undefined;
      return true;
    }
    try {
      const gone = await unsettled.settle();
      this.#unsettled = undefined;
      await this.#settled(unsettled.claim, unsettled.written, gone);
      return true;
    } catch (err) {
      this.#failed('queue', err);
      return false;
    }
  }

  /** Runs a step that must not be skipped (settling, taking back) up to FINISH_ATTEMPTS times. */
  async #finish<T>(what: string, step: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (err) {
        if (attempt >= FINISH_ATTEMPTS) throw err;
        this.deps.logger.warn({ err, attempt }, `long-term memory: ${what} failed; trying again`);
        await new Promise((r) => setTimeout(r, attempt === 1 ? 1_000 : 3_000));
      }
    }
  }

  /**
   * Takes back what was just written for entries discarded meanwhile: a deletion (of a
   * conversation, an account, every memory) or an opt-out, on this node after its wait for the
   * writer, or on another node that cannot wait for it. Such a deletion discards the entries
   * before it erases: an entry still queued once the write was done is erased by it; one gone by
   * then is erased here. (A failed write may have landed in part: taken back as well.)
   */
  async #unwrite(written: readonly PendingMemory[], gone: ReadonlySet<string>): Promise<void> {
    const byOwner = new Map<string, string[]>();
    for (const p of written) if (gone.has(p.message.id)) byOwner.set(p.ownerId, [...(byOwner.get(p.ownerId) ?? []), p.message.id]);
    for (const [ownerId, ids] of byOwner) {
      try {
        await this.#finish('taking back a discarded write', () => this.deps.store.delete(ownerId, ids));
      } catch (err) {
        this.deps.logger.error({ err, memories: ids.length }, 'memories deleted while they were being written could not be taken back from the store');
      }
    }
  }

  #cacheSetting(userId: string, enabled: boolean) {
    this.#settings.set(userId, { enabled, until: Date.now() + SETTINGS_CACHE_MS });
  }

  #succeeded() {
    this.#lastFailure = undefined;
  }

  #failed(what: 'start' | 'recall' | 'write' | 'queue', err: unknown, details: Record<string, unknown> = {}) {
    const error = `${what}: ${describe(err)}`;
    const first = !this.#lastFailure;
    this.#lastFailure = { at: Date.now(), error };
    // Warn on the first failure of a streak; later ones at debug, so an outage does not flood the log.
    const log = first ? this.deps.logger.warn.bind(this.deps.logger) : this.deps.logger.debug.bind(this.deps.logger);
    log(
      { err, ...details },
      what === 'recall'
        ? 'long-term memory unavailable: this turn answers with short-term context only'
        : what === 'start'
          ? 'long-term memory store unreachable; turns answer with short-term context until it is back'
          : 'long-term memory write failed; it stays queued and is retried',
    );
  }
}

/** Whether every component is zero (a vector without direction). */
function isZero(vector: Float32Array): boolean {
  for (let i = 0; i < vector.length; i++) if (vector[i] !== 0) return false;
  return true;
}

/**
 * A store's refusal of the request itself (HTTP 400, 413 or 422: something in it is invalid),
 * as opposed to an outage, a rate limit or a configuration the store refuses for every request.
 */
function refusedRequest(err: unknown): boolean {
  return err instanceof MemoryStoreError && (err.status === 400 || err.status === 413 || err.status === 422);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 200) : 'unknown error';
}
