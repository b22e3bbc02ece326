/**
 * The OpenAI stand-in in its own process, so that its CPU is not the benchmark client's.
 *
 *   node --import tsx bench/standin-process.ts <tokens> <paceMs>
 *
 * Prints one JSON line `{"url":"http://127.0.0.1:NNNN/v1"}` when listening. Exits on
 * SIGTERM / SIGINT, and when its stdin closes (the parent is gone, however it died).
 */
import { startOpenAIStandin } from '../test/standins/openai-standin.js';

function intArg(index: number, name: string): number {
  const raw = process.argv[index];
  const n = Number(raw);
  if (raw === undefined || !Number.isInteger(n) || n < 0) {
    console.error(`standin-process: ${name} must be a non-negative integer (got ${String(raw)})`);
    process.exit(2);
  }
  return n;
}

const tokenCount = intArg(2, 'tokens');
const paceMs = intArg(3, 'paceMs');
// Short word-like pieces; every request gets the same, immutable list.
const tokens = Array.from({ length: tokenCount }, (_, i) => ` w${i}`);

const standin = await startOpenAIStandin({
  recordRequests: false,
  script: () => ({ tokens, delayMs: paceMs, firstTokenDelayMs: paceMs }),
});

let stopping = false;
const stop = (code: number): void => {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(code), 2000);
  force.unref();
  standin.close().then(
    () => process.exit(code),
    () => process.exit(code),
  );
};
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.on('error', () => stop(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ url: standin.url })}\n`);
