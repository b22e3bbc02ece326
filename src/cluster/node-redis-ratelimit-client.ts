import { createHash } from 'node:crypto';
import type { RatelimitRedis } from '../ratelimit/redis-rate-limiter.js';

/** The part of a node-redis client this needs: raw commands, and whether it is connected. */
export interface CommandClient {
  readonly isReady: boolean;
  sendCommand(args: string[]): Promise<unknown>;
}

/** Script flags Redis itself does not know (Upstash's; Redis 7.0 refuses the whole script for one). */
const UPSTASH_ONLY_FLAGS = new Set(['allow-key-locking']);
const SHEBANG = /^#!lua flags=([^\n]*)\n/;

/**
 * @upstash/ratelimit over the REDIS_URL connection, so a REDIS_URL deployment counts limits
 * exactly with the library Upstash deployments use (same scripts, keys and sliding-window
 * arithmetic) rather than a second implementation of its own. The library only sends
 * EVALSHA and, on NOSCRIPT, EVAL; both are one atomic script run in Redis, which is all it
 * relies on. Its scripts carry `flags=allow-key-locking`, an Upstash extension (lock only
 * the declared keys) that Redis rejects; Redis runs every script atomically anyway, so the
 * flag is dropped and nothing is lost. Dropping it changes the script's SHA1, hence the map
 * from the SHA the library asks for to the one Redis knows.
 */
export class NodeRedisRatelimitClient implements RatelimitRedis {
  /** SHA1 of the library's script text -> SHA1 of the text Redis was given. */
  readonly #shas = new Map<string, string>();

  constructor(private readonly client: CommandClient) {}

  async evalsha(sha1: string, keys: string[], args: unknown[]): Promise<unknown> {
    const known = this.#shas.get(sha1);
    // Not run on this connection yet: the library answers NOSCRIPT with EVAL and the text.
    if (!known) throw new Error('NOSCRIPT the script has not been sent to Redis yet');
    return this.#send(['EVALSHA', known, ...withKeys(keys, args)]);
  }

  async eval(script: string, keys: string[], args: unknown[]): Promise<unknown> {
    const runnable = withoutUpstashFlags(script);
    const result = await this.#send(['EVAL', runnable, ...withKeys(keys, args)]);
    this.#shas.set(sha1Of(script), sha1Of(runnable));
    return result;
  }

  async ping(): Promise<string> {
    return String(await this.#send(['PING']));
  }

  #send(args: string[]): Promise<unknown> {
    // No offline queue: a limiter decision never waits for a Redis that is gone.
    if (!this.client.isReady) return Promise.reject(new Error('Redis is not connected'));
    return this.client.sendCommand(args);
  }
}

function withKeys(keys: string[], args: unknown[]): string[] {
  return [String(keys.length), ...keys, ...args.map(String)];
}

function withoutUpstashFlags(script: string): string {
  const shebang = SHEBANG.exec(script);
  if (!shebang) return script;
  const flags = shebang[1]!.split(',').map((f) => f.trim()).filter((f) => f !== '' && !UPSTASH_ONLY_FLAGS.has(f));
  return `#!lua${flags.length > 0 ? ` flags=${flags.join(',')}` : ''}\n${script.slice(shebang[0].length)}`;
}

function sha1Of(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}
