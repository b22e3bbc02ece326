/**
 * What long-term memory costs the first token: time-to-first-token of signed-in turns on the
 * gateway process with memory on and off (the same user opted in and out between rounds, in
 * one run), while that user holds `--memories` memories (default 10,000) in the embedded
 * store, beside other users' memories.
 *
 *   npx tsx bench/memory-ttft.ts [--memories 10000] [--turns 40] [--rounds 4]
 *
 * Results: stdout and bench/results/memory-ttft.json.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NoblePasswordHasher } from '../src/auth/noble-password-hasher.js';
import { LocalEmbedder } from '../src/memory/local-embedder.js';
import { SqliteMemoryStore } from '../src/memory/sqlite-memory-store.js';
import { SqliteConversationStore } from '../src/stores/sqlite-conversation-store.js';
import { startGatewayProcess, startStandinProcess, runBench, stopAllChildren } from './processes.js';
import { gatewayTarget, measureStream } from './sse-client.js';
import { percentile } from './stats.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/memory-ttft.ts [--memories 10000] [--turns 40] [--rounds 4]';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { memories: MEMORIES, turns: TURNS, rounds: ROUNDS } = scriptArgs(USAGE, { memories: 10_000, turns: 40, rounds: 4 });
const TOKENS = 5;
const PASSWORD = 'bench-password-1';

const SUBJECTS = ['my sister', 'the train', 'our dog', 'the meeting', 'my landlord', 'the recipe', 'a colleague', 'the garden', 'my bike', 'the doctor'];
const VERBS = ['moved to', 'cancelled', 'recommended', 'broke', 'asked about', 'finished', 'forgot', 'painted', 'booked', 'returned'];
const OBJECTS = ['Lisbon', 'the blue kettle', 'a Tuesday slot', 'the quarterly report', 'thirty tomatoes', 'the old piano', 'a jazz concert', 'the spare keys', 'two bus tickets', 'the birthday cake'];
/** Varied, realistic-looking sentences, different per index. */
const sentence = (i: number) =>
  `Note ${i}: ${SUBJECTS[i % 10]} ${VERBS[Math.floor(i / 10) % 10]} ${OBJECTS[Math.floor(i / 100) % 10]} around ${(i * 37) % 24}:00 on day ${i % 365}.`;

async function seed(dataDir: string): Promise<string> {
  const conversations = new SqliteConversationStore(join(dataDir, 'gateway.sqlite'));
  const user = await conversations.createUser({ email: 'bench-memory@example.com', name: null, passwordHash: await new NoblePasswordHasher().hash(PASSWORD) });
  await conversations.close();
  const embedder = new LocalEmbedder({});
  const store = new SqliteMemoryStore(join(dataDir, 'memory.sqlite'), { dimensions: embedder.dimensions, embedder: `${embedder.kind}:${embedder.model}` });
  await store.init();
  const owners = [user.id, ...Array.from({ length: 5 }, (_, i) => `other-user-${i}`)];
  for (const owner of owners) {
    const count = owner === user.id ? MEMORIES : Math.ceil(MEMORIES / 5);
    for (let start = 0; start < count; start += 1000) {
      const texts = Array.from({ length: Math.min(1000, count - start) }, (_, k) => sentence(start + k + (owner === user.id ? 0 : 7)));
      const vectors = await embedder.embed(texts, 'document');
      await store.upsert(
        texts.map((text, k) => ({
          id: `${owner}-${start + k}`,
          ownerId: owner,
          conversationId: 'seeded',
          messageId: `${owner}-m${start + k}`,
          role: 'user' as const,
          text,
          createdAt: Date.now() - (count - start - k) * 1000,
          vector: vectors[k]!,
        })),
      );
    }
  }
  await store.close();
  return user.id;
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-memory-'));
  try {
    process.stderr.write(`seeding ${MEMORIES} memories for one user (and ${MEMORIES} for five others)...\n`);
    const seededAt = performance.now();
    await seed(dataDir);
    process.stderr.write(`seeded in ${((performance.now() - seededAt) / 1000).toFixed(1)} s\n`);
    const standin = await startStandinProcess(ROOT, TOKENS, 0);
    const gateway = await startGatewayProcess(ROOT, standin.url, dataDir, [], { JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0123' });
    const login = await fetch(`${gateway.url}/api/v2/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email: 'bench-memory@example.com', password: PASSWORD }) });
    const { token } = (await login.json()) as { token: string };
    const auth = { Authorization: `Bearer ${token}` };
    const setMemory = (enabled: boolean) =>
      fetch(`${gateway.url}/api/v2/memory/settings`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ enabled }) }).then((r) => r.text());
    const target = (i: number) => ({
      ...gatewayTarget(gateway.url),
      body: JSON.stringify({ message: `What did ${SUBJECTS[i % 10]} do with ${OBJECTS[i % 10]}?`, model: 'gpt-4o-mini', sessionId: `bench-${i}` }),
      headers: auth,
    });
    const ttft: Record<'on' | 'off', number[]> = { on: [], off: [] };
    let n = 0;
    for (let round = -1; round < ROUNDS; round++) {
      for (const mode of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        await setMemory(mode === 'on');
        for (let t = 0; t < TURNS; t++) {
          const r = await measureStream('gateway', target(n++), TOKENS, 10_000);
          if (!r.ok) throw new Error(`turn failed: ${r.error}`);
          if (round >= 0) ttft[mode].push(r.ttftMs); // round -1 warms up
        }
      }
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { n: s.length, p50: +percentile(s, 50).toFixed(2), p99: +percentile(s, 99).toFixed(2) };
    };
    const on = stat(ttft.on);
    const off = stat(ttft.off);
    const result = { memories: MEMORIES, on, off, addedP50: +(on.p50 - off.p50).toFixed(2), addedP99: +(on.p99 - off.p99).toFixed(2) };
    console.log(`TTFT of signed-in turns with ${MEMORIES} memories for the user (ms):`);
    console.log(`  memory off  p50 ${off.p50.toFixed(2)}  p99 ${off.p99.toFixed(2)}  (n=${off.n})`);
    console.log(`  memory on   p50 ${on.p50.toFixed(2)}  p99 ${on.p99.toFixed(2)}  (n=${on.n})`);
    console.log(`  memory adds p50 ${result.addedP50.toFixed(2)} ms, p99 ${result.addedP99.toFixed(2)} ms`);
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/memory-ttft.json'), `${JSON.stringify({ at: new Date().toISOString(), ...result }, null, 2)}\n`);
  } finally {
    await stopAllChildren();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

runBench(main);
