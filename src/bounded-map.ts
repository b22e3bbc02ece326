/**
 * A Map kept in insertion order and bounded in entries: a key set becomes the newest, and past
 * `max` entries the oldest is dropped. Every in-process cache a client can grow goes through
 * here (verified tokens and cookies, sessions, API keys and their last-used writes, memory
 * settings, and @upstash/ratelimit's cache of refused identifiers, which only calls `set`).
 */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly #max: number;

  constructor(max: number) {
    super();
    this.#max = max;
  }

  override set(key: K, value: V): this {
    super.delete(key);
    super.set(key, value);
    if (this.size > this.#max) super.delete(this.keys().next().value as K);
    return this;
  }
}
