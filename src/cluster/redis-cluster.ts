import { createAdapter } from '@socket.io/redis-streams-adapter';
import { createClient } from 'redis';
import type { ServerOptions } from 'socket.io';
import type { ChatTurnEvent } from '../chat/chat-pipeline.js';
import type { ClusterLink, TurnLease } from '../chat/turn-coordinator.js';
import { isTerminal, newTurnId, type LoggedEvent, type TurnLog, type TurnStreams } from '../chat/turn-streams.js';
import type { Config } from '../config.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RatelimitRedis } from '../ratelimit/redis-rate-limiter.js';
import { NodeRedisRatelimitClient } from './node-redis-ratelimit-client.js';

type Client = ReturnType<typeof createClient>;

/** How long a running-turn lock outlives a node that died holding it; refreshed every third of it. */
const LEASE_MS = 10_000;
/** Entries one turn's log may hold (a reply of this many network reads is cut short in the log, not on the wire). */
const LOG_MAX_ENTRIES = 50_000;
/** A running turn's log is kept this long past the TTL in case the turn runs long. */
const RUNNING_GRACE_S = 3_600;
/** A resume that sees nothing new for this long ends (a turn never goes quiet that long: the idle timeout cuts it first). */
const FOLLOW_IDLE_MS = 120_000;
/** How often a resumed stream past STREAM_RESUME_REDIS_READERS polls the shared connection. */
const POLL_MS = 100;
const CONNECT_TIMEOUT_MS = 5_000;

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

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
  #down = false;
  #closed = false;

  private constructor(
    /** Commands of this module; no offline queue, so nothing waits on a Redis that is gone. */
    private readonly client: Client,
    private readonly subscriber: Client,
    /** The Socket.IO adapter's (it keeps its offline queue: packets survive a Redis restart). */
    private readonly adapterClient: Client,
    private readonly logger: Logger,
    config: Config,
  ) {
    this.#prefix = config.redis!.prefix;
    const ttl = config.streams.resumeTtlSeconds;
    this.streams = ttl > 0 ? new RedisTurnStreams(client, this.#prefix, ttl, logger, config.streams.redisReaders) : undefined;
  }

  static async connect(config: Config, logger: Logger): Promise<RedisCluster> {
    const log = logger.child({ component: 'redis' });
    const url = config.redis!.url;
    const reconnectStrategy = (retries: number) => Math.min(50 + retries * 100, 2_000);
    const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy, connectTimeout: CONNECT_TIMEOUT_MS } });
    const subscriber = createClient({ url, socket: { reconnectStrategy, connectTimeout: CONNECT_TIMEOUT_MS } });
    const adapterClient = createClient({ url, socket: { reconnectStrategy, connectTimeout: CONNECT_TIMEOUT_MS } });
    const cluster = new RedisCluster(client, subscriber, adapterClient, log, config);
    for (const c of [client, subscriber, adapterClient]) cluster.#watch(c);
    // The adapter duplicates its client (one reader per stream): those need an error listener too, or a Redis restart kills the process.
    const duplicate = adapterClient.duplicate.bind(adapterClient);
    adapterClient.duplicate = ((...args: Parameters<typeof duplicate>) => {
      const copy = duplicate(...args);
      cluster.#watch(copy);
      return copy;
    }) as typeof adapterClient.duplicate;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all([client.connect(), subscriber.connect(), adapterClient.connect()]),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS))),
      ]);
    } catch (err) {
      await cluster.close();
      throw new RedisConnectError(err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
    await subscriber.subscribe(cluster.#channel('stop'), (message) => {
      for (const listener of cluster.#stopListeners) listener(message);
    });
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
      won = await this.client.set(key, token, { NX: true, PX: LEASE_MS });
    } catch {
      // Redis is gone: this node decides alone (its own tracker already said no turn runs here).
      return { release: () => undefined };
    }
    if (won !== 'OK') return undefined;
    const refresh = setInterval(() => {
      if (this.client.isReady) this.client.sendCommand(['EVAL', REFRESH, '1', key, token, String(LEASE_MS)]).catch(() => undefined);
    }, LEASE_MS / 3);
    refresh.unref?.();
    let released = false;
    return {
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
    return (await this.client.exists(this.#lockKey(conversationKey))) > 0;
  }

  async publishStop(conversationKey: string): Promise<void> {
    if (!this.client.isReady) return;
    await this.client.publish(this.#channel('stop'), conversationKey);
  }

  onStop(listener: (conversationKey: string) => void): void {
    this.#stopListeners.push(listener);
  }

  async ping(): Promise<void> {
    if (!this.client.isReady) throw new Error('not connected');
    await this.client.ping();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of [this.client, this.subscriber, this.adapterClient]) {
      try {
        if (c.isOpen) c.destroy();
      } catch {
        // already gone
      }
    }
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
  ) {}

  #latestKey(conversationKey: string): string {
    return `${this.prefix}:turn:${conversationKey}`;
  }

  #logKey(conversationKey: string, turnId: string): string {
    return `${this.prefix}:turn:${conversationKey}:${turnId}`;
  }

  open(conversationKey: string): TurnLog {
    const { client } = this;
    const turnId = newTurnId();
    const latest = this.#latestKey(conversationKey);
    const key = this.#logKey(conversationKey, turnId);
    const running = String(this.ttlSeconds + RUNNING_GRACE_S);
    const ttl = String(this.ttlSeconds);
    const ignore = () => undefined;
    let seq = 0;
    let ended = false;
    if (client.isReady) client.sendCommand(['SET', latest, turnId, 'EX', running]).catch(ignore);
    return {
      turnId,
      append: (event) => {
        if (ended) return seq;
        seq++;
        const terminal = isTerminal(event);
        ended = terminal;
        // Fire and forget, pipelined on one connection (so in order): the client's stream never waits for Redis.
        if (!client.isReady) return seq;
        client.sendCommand(['XADD', key, 'MAXLEN', '~', String(LOG_MAX_ENTRIES), `0-${seq}`, 'e', encode(event)]).catch(ignore);
        if (seq === 1 || terminal) client.sendCommand(['EXPIRE', key, terminal ? ttl : running]).catch(ignore);
        if (terminal) client.sendCommand(['SET', latest, turnId, 'EX', ttl]).catch(ignore);
        return seq;
      },
    };
  }

  async latest(conversationKey: string): Promise<{ turnId: string; ended: boolean } | undefined> {
    if (!this.client.isReady) return undefined;
    const turnId = await this.client.get(this.#latestKey(conversationKey));
    if (!turnId) return undefined;
    const last = (await this.client.sendCommand(['XREVRANGE', this.#logKey(conversationKey, turnId), '+', '-', 'COUNT', '1'])) as RawEntry[];
    const event = last[0] ? decode(last[0][1]) : undefined;
    return { turnId, ended: event !== undefined && isTerminal(event) };
  }

  #blockingFollowers = 0;

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
      if (blocking) await reader.connect();
      if ((await reader.exists(key)) === 0) return;
      let last = afterSeq;
      let quietSince = Date.now();
      while (!signal.aborted) {
        const read = ['XREAD', 'COUNT', '500', ...(blocking ? ['BLOCK', '1000'] : []), 'STREAMS', key, `0-${last}`];
        const reply = (await reader.sendCommand(read)) as [string, RawEntry[]][] | null;
        if (!reply) {
          if (!blocking) await abortableSleep(POLL_MS, signal);
          if (Date.now() - quietSince > FOLLOW_IDLE_MS || (await reader.exists(key)) === 0) return;
          continue;
        }
        quietSince = Date.now();
        for (const [id, fields] of reply[0]?.[1] ?? []) {
          const seq = Number(id.slice(id.indexOf('-') + 1));
          const event = decode(fields);
          last = seq;
          if (!event) continue;
          yield { seq, event };
          if (isTerminal(event)) return;
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

function decode(fields: string[]): ChatTurnEvent | undefined {
  const at = fields.indexOf('e');
  if (at < 0 || fields[at + 1] === undefined) return undefined;
  try {
    const event = JSON.parse(fields[at + 1]!) as ChatTurnEvent;
    if (event.type === 'error') {
      const raw = event.error as unknown as { code: ErrorCode; message: string };
      return { ...event, error: new AppError(raw.code, raw.message) };
    }
    return event;
  } catch {
    return undefined;
  }
}
