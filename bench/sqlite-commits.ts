/**
 * What the conversation store's WAL checkpoints do to the event loop: SQLite's own (inside the
 * commit that takes the WAL past 1,000 pages, on the event loop) against the gateway's
 * (WalCheckpointer: a worker thread), on the real store (src/stores/sqlite-conversation-store.ts)
 * in a fresh file on this machine's disk under DATA_DIR's usual place (os.tmpdir() unless
 * `--dir`).
 *
 * Closed loop, like chat turns: `--concurrency` turns at a time, each stores its user message
 * (a new conversation), waits `--model-ms` (the model), stores a 400-character reply, and
 * starts over, for `--seconds`. Measured per mode: turns/s, the event loop's delay (a 1 ms
 * timer's lateness: p99 and max), the user message's write latency (what a first token waits
 * for) and the WAL's largest size. Modes alternate, each round on a new file.
 *
 *   npx tsx bench/sqlite-commits.ts [--concurrency 64] [--model-ms 2] [--seconds 4] [--rounds 3] [--dir DIR]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { conversationKey } from '../src/stores/conversation-store.js';
import { SqliteConversationStore } from '../src/stores/sqlite-conversation-store.js';
import { percentile } from './stats.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/sqlite-commits.ts [--concurrency 64] [--model-ms 2] [--seconds 4] [--rounds 3] [--dir DIR]';

const values = scriptArgs(USAGE, { concurrency: 64, 'model-ms': 2, seconds: 4, rounds: 3, dir: tmpdir() });
const { concurrency: CONCURRENCY, 'model-ms': MODEL_MS, seconds: SECONDS, rounds: ROUNDS } = values;
const REPLY = 'x'.repeat(400);

type Mode = 'inline' | 'worker';
interface Round {
  turnsPerSecond: number;
  loopDelayP99: number;
  loopDelayMax: number;
  writeP50: number;
  writeP99: number;
  writeMax: number;
  walMaxMb: number;
  restarts: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function round(mode: Mode): Promise<Round> {
  const dir = mkdtempSync(join(values.dir, 'bench-sqlite-'));
  const file = join(dir, 'gateway.sqlite');
  const store = new SqliteConversationStore(file, { walCheckpoint: mode });
  const delays: number[] = [];
  const writes: number[] = [];
  let walMax = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    delays.push(now - last - 1);
    last = now;
    try {
      walMax = Math.max(walMax, statSync(`${file}-wal`).size);
    } catch {
      // not there yet
    }
  }, 1);
  let turns = 0;
  let next = 0;
  const endAt = performance.now() + SECONDS * 1000;
  const loop = async () => {
    while (performance.now() < endAt) {
      const id = String(next++);
      const key = conversationKey('ip:127.0.0.1', id);
      const t0 = performance.now();
      await store.appendMessage({ conversationKey: key, role: 'user', content: `question ${id}`, conversation: { ownerId: 'ip:127.0.0.1', id, title: 'question' } });
      writes.push(performance.now() - t0);
      await sleep(MODEL_MS);
      await store.appendMessage({ conversationKey: key, role: 'assistant', content: REPLY, model: 'local', finishReason: 'stop' });
      turns++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(probe);
  const restarts = store.checkpoints?.restarts ?? 0;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  delays.sort((a, b) => a - b);
  writes.sort((a, b) => a - b);
  return {
    turnsPerSecond: turns / elapsed,
    loopDelayP99: percentile(delays, 99),
    loopDelayMax: delays.at(-1) ?? Number.NaN,
    writeP50: percentile(writes, 50),
    writeP99: percentile(writes, 99),
    writeMax: writes.at(-1) ?? Number.NaN,
    walMaxMb: walMax / 2 ** 20,
    restarts,
  };
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const results: Record<Mode, Round[]> = { inline: [], worker: [] };
await round('worker'); // warm-up (JIT, page cache)
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of (i % 2 === 0 ? ['inline', 'worker'] : ['worker', 'inline']) as Mode[]) {
    const r = await round(mode);
    results[mode].push(r);
    console.error(
      `round ${i + 1} ${mode.padEnd(6)} ${r.turnsPerSecond.toFixed(0)} turns/s; loop delay p99 ${r.loopDelayP99.toFixed(1)} max ${r.loopDelayMax.toFixed(1)} ms; ` +
        `user-message write p50 ${r.writeP50.toFixed(2)} p99 ${r.writeP99.toFixed(1)} max ${r.writeMax.toFixed(1)} ms; WAL max ${r.walMaxMb.toFixed(1)} MB, restarts ${r.restarts}`,
    );
  }
}
const row = (label: string, f: (r: Round) => number, digits = 1) => {
  const a = median(results.inline.map(f));
  const b = median(results.worker.map(f));
  console.log(`${label.padEnd(34)} ${a.toFixed(digits).padStart(9)} ${b.toFixed(digits).padStart(9)} ${(b / a).toFixed(2).padStart(7)}x`);
};
console.log(`\nmedians of ${ROUNDS} rounds, ${CONCURRENCY} turns at a time, ${MODEL_MS} ms model, ${SECONDS} s each; files in ${values.dir}`);
console.log(`${''.padEnd(34)} ${'inline'.padStart(9)} ${'worker'.padStart(9)} ${'ratio'.padStart(8)}`);
row('turns/s', (r) => r.turnsPerSecond, 0);
row('event-loop delay p99, ms', (r) => r.loopDelayP99);
row('event-loop delay max, ms', (r) => r.loopDelayMax);
row('user-message write p50, ms', (r) => r.writeP50, 2);
row('user-message write p99, ms', (r) => r.writeP99);
row('user-message write max, ms', (r) => r.writeMax);
row('WAL largest, MB', (r) => r.walMaxMb);
