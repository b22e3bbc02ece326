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
