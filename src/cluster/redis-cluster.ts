import { createAdapter } from '@socket.io/redis-streams-adapter';
import { createClient } from 'redis';
import type { ServerOptions } from 'socket.io';
import type { ChatTurnEvent } from '../chat/chat-pipeline.js';
import type { ClusterLink, TurnLease } from '../chat/turn-coordinator.js';
import { isTerminal, newTurnId, type LoggedEvent, type StartEvent, type TurnLog, type TurnStreams } from '../chat/turn-streams.js';
import type { Config } from '../config.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RatelimitRedis } from '../ratelimit/redis-rate-limiter.js';
import { GuardedService, STALL_COOL_MS } from '../stall-breaker.js';
import { NodeRedisRatelimitClient } from './node-redis-ratelimit-client.js';

type Client = ReturnType<typeof createClient>;

/** How long a running-turn lock outlives a node that died holding it. */
const LEASE_MS = 10_000;
/** How often a running turn refreshes its lock, and a resume of a running turn checks it. */
const REFRESH_MS = LEASE_MS / 3;
/**
 * How long a resume must find its turn's lock missing before it believes the turn is gone: longer
 * than REFRESH_MS, as a live holder whose lock lapsed (Redis restarted, or it started without
 * Redis) takes it back at its next refresh.
 */
const LOCK_MISSING_MS = LEASE_MS / 2;
/**
 * Entries one turn's log may hold (an entry is what one tick handed over: a network read, most
 * often). A reply that needs more streams on to its client but is no longer kept for resuming:
 * its log is deleted, as a broken one is, rather than trimmed (trimming drops its beginning,
 * and a resume would replay it with a hole).
 */
const LOG_MAX_ENTRIES = 50_000;
/** A running turn's log is kept this long past the TTL in case the turn runs long. */
const RUNNING_GRACE_S = 3_600;
/** A resume that sees nothing new for this long ends (a turn never goes quiet that long: the idle timeout cuts it first). */
const FOLLOW_IDLE_MS = 120_000;
/** How often a resumed stream past STREAM_RESUME_REDIS_READERS polls the shared connection. */
const POLL_MS = 100;
/** How long a resumed stream's own connection blocks on one read. */
const BLOCK_MS = 1_000;
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * How long a command that a request waits on (a turn's lock, a resume's lookups, a stop) may
 * go unanswered. A Redis that accepts connections but answers nothing (a frozen process, a
 * full disk on AOF, a network black hole) must not hold turn starts: past this the node
 * decides alone, as when Redis is gone.
 */
const COMMAND_TIMEOUT_MS = 1_000;

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/** Deletes a turn's log, and the conversation's latest-turn pointer if it still names that turn. */
const FORGET = "redis.call('del', KEYS[1]); if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[2]) end; return 1";
/**
 * Extends a turn's lock, or takes it again if it is missing: a Redis that restarted (or was away
 * or stalled when the turn started) no longer holds it, and without it another node would start
 * a second reply in the conversation and a stop sent there would reach nobody. 0 when another
 * turn holds it.
 */
const REFRESH = `local held = redis.call('get', KEYS[1])
if held == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if not held then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end
return 0`;
/**
 * Ends the log of a turn whose node is gone with an error entry, unless the log moved past what
 * the resume read (ARGV[1]) meanwhile. Returns the entry's seq, or 0.
 */
const INTERRUPT = `local top = redis.call('xrevrange', KEYS[1], '+', '-', 'COUNT', 1)[1]
if not top then return 0 end
local seq = tonumber(string.match(top[1], '%-(%d+)$'))
if seq > tonumber(ARGV[1]) then return 0 end
redis.call('xadd', KEYS[1], '0-' .. (seq + 1), 'e', ARGV[2])
redis.call('expire', KEYS[1], ARGV[3])
if redis.call('get', KEYS[2]) == ARGV[4] then redis.call('expire', KEYS[2], ARGV[3]) end
return seq + 1`;

/**
 * Several nodes on one Redis: the Socket.IO Redis Streams adapter (rooms across nodes), a
 * running-turn lock per conversation (SET NX PX with a refreshed lease), stops over pub/sub,
 * and turn logs in Redis Streams. Losing Redis never stops this node: it serves its own
 * clients (local BUSY rule, nothing recorded), logs it, and /readyz says `degraded`.
 */
export class RedisCluster implements ClusterLink {
  readonly kind = 'redis';
  readonly streams: TurnStreams | undefined;
  readonly #stopListeners: ((conversationKey: string) => void)[] = [];
  readonly #prefix: string;
  /** The adapter's own connections (a stream reader, a pub/sub one): closed here, after the adapter. */
  readonly #adapterCopies = new Set<{ readonly isOpen: boolean; destroy(): void }>();
  #down = false;
  #closed = false;
  readonly #answers: RedisAnswers;

  private constructor(
    /** Commands of this module; no offline queue, so nothing waits on a Redis that is gone. */
    private readonly client: Client,
    /** The stop channel; it sends nothing after SUBSCRIBE (re-sent on reconnect), so no offline queue either. */
    private readonly subscriber: Client,
    /** The Socket.IO adapter's: an offline queue of at most REDIS_QUEUE_MAX packets, so a Redis restart loses none of a short gap. */
    private readonly adapterClient: Client,
    private readonly logger: Logger,
    config: Config,
  ) {
    this.#prefix = config.redis!.prefix;
    this.#answers = redisAnswers(logger);
    const ttl = config.streams.resumeTtlSeconds;
    const lockKey = (conversationKey: string) => this.#lockKey(conversationKey);
    this.streams = ttl > 0 ? new RedisTurnStreams(client, this.#prefix, ttl, logger, config.streams.redisReaders, this.#answers, lockKey) : undefined;
  }

  static async connect(config: Config, logger: Logger): Promise<RedisCluster> {
    const log = logger.child({ component: 'redis' });
    const url = config.redis!.url;
    const reconnectStrategy = (retries: number) => Math.min(50 + retries * 100, 2_000);
    // Every connection holds at most REDIS_QUEUE_MAX commands, sent or waiting to be: a Redis that
    // is away (offline queue) or stalled (no replies) costs bounded memory, the rest fail at once.
    // No CLIENT SETINFO on connect: node-redis (before 5.11, redis/node-redis#3108) ignores that
    // command's failure, so a connection that a dying Redis accepts and then resets during the
    // handshake became "ready" on a dead socket and never reconnected (/readyz stuck on `down`,
    // commands hanging, the adapter reading nothing). Without it, the handshake sends nothing
    // unless the URL asks for AUTH or SELECT, whose failure does make node-redis retry.
    const options = {
      url,
      commandsQueueMaxLength: config.redis!.queueMax,
      disableClientInfo: true,
      socket: { reconnectStrategy, connectTimeout: CONNECT_TIMEOUT_MS },
    };
    const client = createClient({ ...options, disableOfflineQueue: true });
    const subscriber = createClient({ ...options, disableOfflineQueue: true });
    const adapterClient = createClient(options);
    const cluster = new RedisCluster(client, subscriber, adapterClient, log, config);
    for (const c of [client, subscriber, adapterClient]) cluster.#watch(c);
    cluster.#adoptAdapterCommands(adapterClient, ['publish', 'sPublish', 'set']);
    // The adapter duplicates its client (a stream reader, a pub/sub connection): each needs an
    // error listener, or a Redis restart kills the process, and is closed with this cluster.
    const duplicate = adapterClient.duplicate.bind(adapterClient);
    adapterClient.duplicate = ((...args: Parameters<typeof duplicate>) => {
      const copy = duplicate(...args);
      cluster.#watch(copy);
      cluster.#adoptAdapterCommands(copy, ['subscribe', 'sSubscribe']);
      // The adapter disconnects its copies itself when it closes: a no-op once this cluster has.
      copy.disconnect = async () => {
        if (copy.isOpen) copy.destroy();
      };
      cluster.#adapterCopies.add(copy);
      return copy;
    }) as typeof adapterClient.duplicate;
    // Connecting proves little: a frozen Redis (SIGSTOP, a black hole) still has its connections
    // accepted by the kernel, and the handshake sends nothing. So each connection must answer a
    // PING, and the stop channel's SUBSCRIBE must be confirmed, all within the one deadline: else
    // start-up would wait forever on a Redis it cannot use, instead of exiting 69 with the reason.
    const ready = async (c: Client) => {
      await c.connect();
      await c.ping();
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all([
          ready(client),
          ready(adapterClient),
          ready(subscriber).then(() =>
            subscriber.subscribe(cluster.#channel('stop'), (message) => {
              for (const listener of cluster.#stopListeners) listener(message);
            }),
          ),
        ]),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS))),
      ]);
    } catch (err) {
      await cluster.close();
      throw new RedisConnectError(err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
    log.info({ streams: cluster.streams ? 'redis' : 'off' }, 'connected to Redis: rooms, turn locks, stops and resumable streams are shared');
    return cluster;
  }

  /** The Socket.IO adapter factory: rooms and broadcasts across every node. */
  socketAdapter(): NonNullable<ServerOptions['adapter']> {
    return createAdapter(this.adapterClient, { streamName: `${this.#prefix}:socket.io` }) as NonNullable<ServerOptions['adapter']>;
  }

  /** Rate limits counted in this Redis (when Upstash is not configured), on the command connection. */
  ratelimitRedis(): RatelimitRedis {
    return new NodeRedisRatelimitClient(this.client);
  }

  get healthy(): boolean {
    return this.client.isReady;
  }

  /**
   * The adapter (0.3.x) drops the promises of these commands (PUBLISH of ephemeral packets, SET
   * of a session, SUBSCRIBE): one that fails, because Redis is gone or the connection is
   * destroyed at shutdown with it still queued, would be an unhandled rejection. The adapter
   * never looks at their outcome, so they are marked handled; the promise it gets is the same.
   */
  #adoptAdapterCommands(c: object, names: readonly ('publish' | 'sPublish' | 'set' | 'subscribe' | 'sSubscribe')[]): void {
    const target = c as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const name of names) {
      const command = target[name]!.bind(c);
      target[name] = (...args: unknown[]) => {
        const reply = command(...args);
        if (reply instanceof Promise) reply.catch(() => undefined);
        return reply;
      };
    }
  }

  #watch(c: { on(event: string, listener: (err: Error) => void): unknown }): void {
    c.on('error', (err: Error) => {
      if (this.#closed || this.#down) return;
      this.#down = true;
      this.logger.error({ err: err.message }, 'lost Redis: serving this node\'s own clients only (BUSY decided here, stops and resumes local) until it is back');
    });
    c.on('ready', () => {
      if (!this.#down) return;
      this.#down = false;
      this.logger.warn({}, 'Redis is back: cluster-wide rules hold again');
    });
  }

  #channel(name: string): string {
    return `${this.#prefix}:${name}`;
  }

  #lockKey(conversationKey: string): string {
    return `${this.#prefix}:lock:${conversationKey}`;
  }

  async acquire(conversationKey: string): Promise<TurnLease | undefined> {
    const key = this.#lockKey(conversationKey);
    const token = newTurnId();
    let won: unknown;
    try {
      if (!this.client.isReady) throw new Error('Redis is not connected');
      won = await this.#answers.ask(() => this.client.set(key, token, { NX: true, PX: LEASE_MS }), 'a turn lock');
    } catch {
      // Redis is gone or stalled: this node decides alone (its own tracker already said no turn
      // runs here). The lease still refreshes: once Redis answers, the refresh takes the lock (or
      // keeps the one a stalled Redis took late), so the rest of this reply is BUSY and stoppable
      // on every node; it is given back at the reply's end.
      won = 'OK';
    }
    if (won !== 'OK') return undefined;
    let released = false;
    const refresh = setInterval(() => {
      if (!this.client.isReady) return;
      this.client.sendCommand<number>(['EVAL', REFRESH, '1', key, token, String(LEASE_MS)]).then((held) => {
        if (held !== 0 || released) return;
        // Another turn holds it (this node was cut off from Redis longer than the lease, and another
        // node started a reply there). This reply streams on to its client, but it is no longer
        // BUSY or stoppable elsewhere; taking the lock back would only take it from that turn.
        clearInterval(refresh);
        this.logger.warn({ conversationId: conversationIdOf(conversationKey) }, 'a running reply lost its conversation lock to another reply: it streams on, but no longer cluster-wide');
      }, () => undefined);
    }, REFRESH_MS);
    refresh.unref?.();
    return {
      // The turn's log takes it as its id: a resume can then tell whether the lock is still this turn's.
      turnId: token,
      release: () => {
        if (released) return;
        released = true;
        clearInterval(refresh);
        if (this.client.isReady) this.client.sendCommand(['EVAL', RELEASE, '1', key, token]).catch(() => undefined);
      },
    };
  }

  async isRunning(conversationKey: string): Promise<boolean> {
    if (!this.client.isReady) return false;
    return (await this.#answers.ask(() => this.client.exists(this.#lockKey(conversationKey)), 'a turn lock')) > 0;
  }

  async publishStop(conversationKey: string): Promise<void> {
    if (!this.client.isReady) return;
    await this.#answers.ask(() => this.client.publish(this.#channel('stop'), conversationKey), 'a stop');
  }

  onStop(listener: (conversationKey: string) => void): void {
    this.#stopListeners.push(listener);
  }

  async ping(): Promise<void> {
    if (!this.client.isReady) throw new Error('not connected');
    await this.#answers.ask(() => this.client.ping(), 'a ping');
  }

  /**
   * Destroys every connection, the adapter's copies too (their commands, queued for a Redis
   * that is gone, fail now instead of waiting for it). Call it after the Socket.IO server has
   * closed: a closed adapter stops its stream reader, which would otherwise read again at once.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of [this.client, this.subscriber, this.adapterClient, ...this.#adapterCopies]) {
      if (c.isOpen) c.destroy();
    }
    this.#adapterCopies.clear();
  }
}

export class RedisConnectError extends Error {
  constructor(reason: string) {
    super(`REDIS_URL: could not connect (${reason.replace(/rediss?:\/\/\S+/g, '<url>')}); check that Redis runs and is reachable, or unset REDIS_URL to run as a single node`);
    this.name = 'RedisConnectError';
  }
}

/** Turn logs as Redis Streams: one stream per turn (entry ids `0-<seq>`), plus the conversation's latest turn id. */
class RedisTurnStreams implements TurnStreams {
  readonly kind = 'redis';

  constructor(
    private readonly client: Client,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly logger: Logger,
    /** Resumed streams that get a Redis connection of their own (STREAM_RESUME_REDIS_READERS). */
    private readonly maxBlockingReaders: number,
    private readonly answers: RedisAnswers,
    private readonly lockKey: (conversationKey: string) => string,
  ) {}

  #latestKey(conversationKey: string): string {
    return `${this.prefix}:turn:${conversationKey}`;
  }

  #logKey(conversationKey: string, turnId: string): string {
    return `${this.prefix}:turn:${conversationKey}:${turnId}`;
  }

  /** `turnId`: the turn's lease's (its lock's token), so a resume can tell whether the lock is still this turn's. */
  open(conversationKey: string, turnId = newTurnId()): TurnLog {
    const { client } = this;
    const latest = this.#latestKey(conversationKey);
    const key = this.#logKey(conversationKey, turnId);
    const running = String(this.ttlSeconds + RUNNING_GRACE_S);
    const ttl = String(this.ttlSeconds);
    const ignore = () => undefined;
    let seq = 0;
    let ended = false;
    // A log that missed an event (Redis away, or a write refused) would replay with a hole: it
    // records nothing more, and is deleted as soon as Redis answers again. So does one whose
    // connection was replaced since it opened, even if no event fell in the gap: the Redis that
    // answers now may be a restarted one without the events (and pointer) written before.
    const connection = client.socketEpoch;
    let broken = false;
    let forget: 'no' | 'sent' | 'done' = 'no';
    const breakLog = () => {
      broken = true;
    };
    const forgetLog = () => {
      if (forget !== 'no' || !client.isReady) return;
      forget = 'sent';
      client.sendCommand(['EVAL', FORGET, '2', key, latest, turnId]).then(
        () => (forget = 'done'),
        () => (forget = 'no'),
      );
    };
    let entries = 0;
    let pending: string[] = [];
    const flush = () => {
      const events = pending;
      pending = [];
      if (events.length === 0 || broken) return;
      if (++entries > LOG_MAX_ENTRIES) {
        broken = true;
        forgetLog();
        return;
      }
      const fields: string[] = [];
      for (const e of events) fields.push('e', e);
      client.sendCommand(['XADD', key, `0-${seq}`, ...fields]).catch(breakLog);
      if (seq === events.length || ended) client.sendCommand(['EXPIRE', key, ended ? ttl : running]).catch(ignore);
      if (ended) client.sendCommand(['SET', latest, turnId, 'EX', ttl]).catch(ignore);
    };
    if (client.isReady) client.sendCommand(['SET', latest, turnId, 'EX', running]).catch(ignore);
    return {
      turnId,
      append: (event) => {
        if (ended) return seq;
        seq++;
        const terminal = isTerminal(event);
        ended = terminal;
        if (!broken && (!client.isReady || client.socketEpoch !== connection)) broken = true;
        if (broken) {
          forgetLog();
          return seq;
        }
        // Fire and forget, pipelined on one connection (so in order): the client's stream never waits
        // for Redis. The events of one tick (a model handing over several tokens at once) go in one
        // stream entry, its id the last event's seq: one command instead of one per event.
        pending.push(encode(event));
        if (terminal) flush();
        else if (pending.length === 1) queueMicrotask(flush);
        return seq;
      },
    };
  }

  async latest(conversationKey: string): Promise<{ turnId: string; ended: boolean } | undefined> {
    if (!this.client.isReady) return undefined;
    // A Redis that does not answer in time keeps nothing this node can reach, as one that is gone.
    const turnId = await this.answers.ask(() => this.client.get(this.#latestKey(conversationKey)), 'a resume').catch(() => null);
    if (!turnId) return undefined;
    return { turnId, ended: (await this.extent(conversationKey, turnId))?.ended ?? false };
  }

  async startOf(conversationKey: string, turnId: string): Promise<StartEvent | undefined> {
    if (!this.client.isReady) return undefined;
    // The start is the first event of the first entry.
    const read = () => this.client.sendCommand<RawEntry[]>(['XRANGE', this.#logKey(conversationKey, turnId), '-', '+', 'COUNT', '1']);
    const first = await this.answers.ask(read, 'a resume').catch((): RawEntry[] => []);
    const event = first[0] ? decode(first[0][1])[0] : undefined;
    return event?.type === 'start' ? event : undefined;
  }

  async extent(conversationKey: string, turnId: string): Promise<{ lastSeq: number; ended: boolean } | undefined> {
    if (!this.client.isReady) return undefined;
    const read = () => this.client.sendCommand<RawEntry[]>(['XREVRANGE', this.#logKey(conversationKey, turnId), '+', '-', 'COUNT', '1']);
    const last = await this.answers.ask(read, 'a resume').catch((): RawEntry[] => []);
    if (!last[0]) return undefined;
    const event = decode(last[0][1]).at(-1);
    return { lastSeq: seqOf(last[0][0]), ended: event !== undefined && isTerminal(event) };
  }

  #blockingFollowers = 0;

  /**
   * Appends the error entry that ends an interrupted turn's log, unless the log grew past
   * `afterSeq` (the turn was alive after all). Returns that entry, or undefined.
   */
  async #interrupt(
    reader: Client,
    conversationKey: string,
    turnId: string,
    afterSeq: number,
    ask: <T>(send: () => Promise<T>) => Promise<T>,
  ): Promise<LoggedEvent | undefined> {
    const key = this.#logKey(conversationKey, turnId);
    // The conversation id is in the turn's first entry (its `start`).
    const first = await ask(() => reader.sendCommand<RawEntry[]>(['XRANGE', key, '-', '+', 'COUNT', '1']));
    const start = first[0] ? decode(first[0][1]).find((e) => e.type === 'start') : undefined;
    const event: ChatTurnEvent = {
      type: 'error',
      conversationId: start?.type === 'start' ? start.conversationId : '',
      messageId: undefined,
      content: '',
      error: new AppError('INTERNAL', INTERRUPTED_MESSAGE),
    };
    const args = [String(afterSeq), encode(event), String(this.ttlSeconds), turnId];
    const seq = await ask(() => reader.sendCommand<number>(['EVAL', INTERRUPT, '2', key, this.#latestKey(conversationKey), ...args]));
    if (!seq) return undefined;
    this.logger.warn({ conversationId: conversationIdOf(conversationKey), turnId }, 'a resumed reply was interrupted: its node stopped before its end (its lock is gone)');
    return { seq, event };
  }

  async *follow(conversationKey: string, turnId: string, afterSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent> {
    if (!this.client.isReady || signal.aborted) return;
    const key = this.#logKey(conversationKey, turnId);
    // A blocking read holds its connection: a follower gets its own while there are few, else polls on the shared one.
    const blocking = this.#blockingFollowers < this.maxBlockingReaders;
    const reader = blocking ? this.client.duplicate() : this.client;
    if (blocking) {
      this.#blockingFollowers++;
      reader.on('error', () => undefined);
    }
    const stop = () => {
      if (blocking) reader.destroy();
    };
    signal.addEventListener('abort', stop, { once: true });
    try {
      // Every read has a deadline: a stalled Redis ends the resumed stream instead of holding it.
      const ask = <T>(send: () => Promise<T>, blockMs = 0) => this.answers.ask(send, 'a resumed stream', blockMs);
      if (blocking) await ask(() => reader.connect());
      if ((await ask(() => reader.exists(key))) === 0) return;
      let last = afterSeq;
      let quietSince = Date.now();
      // A turn whose node died never writes its last entry: while the log is quiet, its lock says
      // whether the turn still runs (the lease frees it within LEASE_MS of the node's death).
      let lockCheckAt = Date.now() + REFRESH_MS;
      let lockMissingSince: number | undefined;
      while (!signal.aborted) {
        const read = ['XREAD', 'COUNT', '500', ...(blocking ? ['BLOCK', String(BLOCK_MS)] : []), 'STREAMS', key, `0-${last}`];
        const reply = await ask(() => reader.sendCommand<[string, RawEntry[]][] | null>(read), blocking ? BLOCK_MS : 0);
        if (!reply) {
          if (!blocking) await abortableSleep(POLL_MS, signal);
          if (Date.now() - quietSince > FOLLOW_IDLE_MS || (await ask(() => reader.exists(key))) === 0) return;
          if (Date.now() < lockCheckAt) continue;
          const holder = await ask(() => reader.get(this.lockKey(conversationKey)));
          const now = Date.now();
          if (holder === turnId) {
            lockMissingSince = undefined;
            lockCheckAt = now + REFRESH_MS;
            continue;
          }
          if (holder === null && now - (lockMissingSince ??= now) < LOCK_MISSING_MS) {
            lockCheckAt = lockMissingSince + LOCK_MISSING_MS;
            continue;
          }
          // Gone, or another turn's: this one ended without its last entry. Its log gets one, so
          // this resume and every later one (an EventSource reconnects by itself) end at once.
          const ending = await this.#interrupt(reader, conversationKey, turnId, last, ask);
          if (ending) {
            yield ending;
            return;
          }
          // The log moved on meanwhile: read on.
          lockMissingSince = undefined;
          lockCheckAt = now + REFRESH_MS;
          continue;
        }
        quietSince = Date.now();
        for (const [id, fields] of reply[0]?.[1] ?? []) {
          // An entry holds the events of one tick, the last one's seq in its id.
          const events = decode(fields);
          const lastOfEntry = seqOf(id);
          const first = lastOfEntry - events.length + 1;
          for (let i = 0; i < events.length; i++) {
            const seq = first + i;
            if (seq <= last) continue; // resumed from an event inside this entry
            const event = events[i]!;
            yield { seq, event };
            if (isTerminal(event)) return;
          }
          last = lastOfEntry;
        }
      }
    } catch (err) {
      if (!signal.aborted) this.logger.warn({ err: (err as Error).message }, 'a resumed stream lost Redis');
    } finally {
      signal.removeEventListener('abort', stop);
      if (blocking) {
        this.#blockingFollowers--;
        if (reader.isOpen) reader.destroy();
      }
    }
  }
}

type RawEntry = [string, string[]];

/** What a resume of a turn whose node stopped mid-reply ends with (the reply was not stored: that node is gone). */
const INTERRUPTED_MESSAGE = 'The reply was interrupted: the server that was streaming it stopped. Send the message again';

/** A conversation key's id part, for logs (its owner part may be an anonymous client's cookie id). */
function conversationIdOf(conversationKey: string): string {
  return conversationKey.slice(conversationKey.lastIndexOf('/') + 1);
}

/** An entry id `0-<seq>` as its sequence number. */
function seqOf(id: string): number {
  return Number(id.slice(id.indexOf('-') + 1));
}

/**
 * The commands a request waits on: each with a deadline (COMMAND_TIMEOUT_MS, plus how long the
 * command itself blocks), and once one gave up, requests skip Redis (the command is not even
 * sent) for STALL_COOL_MS, then one tries it again. A command that gave up stays queued on its
 * connection (bounded by REDIS_QUEUE_MAX), so replies still match their commands if Redis
 * answers later; such a reply ends the stall at once.
 */
interface RedisAnswers {
  ask<T>(send: () => Promise<T>, waiting: string, blockMs?: number): Promise<T>;
}

function redisAnswers(logger: Logger): RedisAnswers {
  const service = new GuardedService('Redis', STALL_COOL_MS, (stalled, detail) => {
    if (stalled) logger.warn(detail, 'Redis accepts commands but does not answer: this node decides alone until it does');
    else logger.warn({}, 'Redis answers again: cluster-wide rules hold again');
  });
  return { ask: (send, waiting, blockMs = 0) => service.call(send, COMMAND_TIMEOUT_MS + blockMs, waiting) };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function encode(event: ChatTurnEvent): string {
  if (event.type !== 'error') return JSON.stringify(event);
  return JSON.stringify({ ...event, error: { code: event.error.code, message: event.error.message } });
}

/** The events of one entry, in order (`e` fields); an unreadable one is left out. */
function decode(fields: string[]): ChatTurnEvent[] {
  const events: ChatTurnEvent[] = [];
  for (let at = 0; at + 1 < fields.length; at += 2) {
    if (fields[at] !== 'e') continue;
    try {
      const event = JSON.parse(fields[at + 1]!) as ChatTurnEvent;
      if (event.type === 'error') {
        const raw = event.error as unknown as { code: ErrorCode; message: string };
        events.push({ ...event, error: new AppError(raw.code, raw.message) });
      } else events.push(event);
    } catch {
      // skipped
    }
  }
  return events;
}
