/** Polls until `check` returns a truthy value or the time runs out. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 5000, intervalMs = 20): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<Awaited<T>>;
    if (Date.now() > deadline) throw new Error(`waitFor timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Counts passes of the event loop (one per check phase) until `stop()`; `now()` is the current pass. */
export function passCounter(): { now(): number; stop(): void } {
  let pass = 0;
  let ticking = true;
  const tick = () => {
    pass++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return { now: () => pass, stop: () => (ticking = false) };
}
