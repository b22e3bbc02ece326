/**
 * A token bucket for what one client connection sends (Socket.IO packets, /v1/realtime
 * messages): `perSecond` sustained, twice that at once (a reconnecting client sends what it
 * buffered). Answers whether the next one fits; with `perSecond` 0, always.
 */
export function eventBudget(perSecond: number): () => boolean {
  if (perSecond <= 0) return () => true;
  const burst = perSecond * 2;
  let tokens = burst;
  let at = performance.now();
  return () => {
    const now = performance.now();
    tokens = Math.min(burst, tokens + ((now - at) * perSecond) / 1000);
    at = now;
    if (tokens < 1) return false;
    tokens--;
    return true;
  };
}
