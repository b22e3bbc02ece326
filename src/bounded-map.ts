/**
 * Sets `key` in a cache kept in insertion order and bounded in entries: the key becomes the
 * newest, and past `max` entries the oldest is dropped. Every in-process cache a client can
 * grow (verified tokens and cookies, sessions, API keys, settings) goes through here.
 */
export function rememberBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as K);
}

/**
 * A Map bounded in entries, for a cache kept by a library that only calls `set` on it
 * (@upstash/ratelimit's cache of blocked identifiers): a key set becomes the newest, and past
 * `max` entries the oldest is dropped.
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
