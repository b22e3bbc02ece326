/** Command-line options of `npm run bench:ttft` (see {@link USAGE}). */
import { parseArgs } from 'node:util';
import { MODES, type Mode } from './sse-client.js';

/** Streams at a time in the JIT warm-up (`warmupTurns`). */
export const WARMUP_BATCH = 200;

export interface BenchOptions {
  /** Measured modes, in report order (direct, relay, gateway), whatever order they were given in. */
  modes: Mode[];
  /** Concurrency levels, run in this order. */
  concurrency: number[];
  /** Tokens the stand-in streams per reply. */
  tokens: number;
  /** Milliseconds before each token (the first one too). */
  paceMs: number;
  /** Measured requests per mode at concurrency 1 (sequential). */
  requests: number;
  /** Measured rounds per mode at concurrency > 1 (each round = `concurrency` simultaneous streams). */
  rounds: number;
  /**
   * Unmeasured turns per mode before anything else, WARMUP_BATCH at a time: V8 optimises a
   * function after it ran a few hundred times, so without them the first level (c=1) measures
   * each mode's interpreter, and the mode with more code (the gateway) the most. A server that
   * has served a while is past that. A code path run once a turn takes a few thousand turns:
   * after 400 the gateway's c=200 TTFT p50 still fell round after round (139 ms in the first
   * of 14 rounds, 56-86 in the last five; the relay's 104 -> 39-43); after 3,000, 12 rounds
   * stayed within 56-77 ms.
   */
  warmupTurns: number;
  /** Unmeasured sequential requests per mode before the first level. */
  warmup: number;
  /** Unmeasured rounds per mode before each level with concurrency > 1 (opens the connections). */
  warmupRounds: number;
  /** Hard limit for the whole run, in seconds. */
  timeoutSeconds: number;
  /** Where the JSON results go (relative to the repository root). */
  out: string;
  /** Run the gateway with --cpu-prof, writing a .cpuprofile under bench/results/profiles/ (when "gateway" is measured). */
  profile: boolean;
}

export const USAGE = `Usage: npm run bench:ttft -- [options]

  --modes direct,relay,gateway
                        measured modes, comma-separated (any subset)
  --concurrency 1,200   concurrency levels, comma-separated (e.g. 1,200,2000)
  --tokens 50           tokens per streamed reply
  --pace 20             ms before each token (also before the first)
  --requests 30         measured sequential requests per mode at concurrency 1
  --rounds 3            measured rounds per mode at concurrency > 1
  --warmup-turns 3000   unmeasured turns per mode at the start, 200 at a time (JIT warm-up)
  --warmup 5            unmeasured sequential requests per mode at the start
  --warmup-rounds 1     unmeasured rounds per mode before each level > 1
  --timeout 170         hard limit for the whole run, seconds
  --out bench/results/latest.json
  --profile             run the gateway under --cpu-prof (bench/results/profiles/*.cpuprofile;
                        open in Chrome DevTools or speedscope; slows the gateway a little)
  --help

Modes: "direct"  = client -> stand-in,
       "relay"   = client -> bare Node SSE relay (bench/relay-process.ts) -> stand-in,
       "gateway" = client -> gateway -> stand-in.
relay - direct is the cost of one extra Node HTTP hop; gateway - relay is the gateway's own cost.
Rounds of the modes alternate, their order rotating each round (D R G, R G D, G D R, ...), so
machine noise hits all alike; with a multiple of 3 rounds each mode goes first equally often.
A round opens its streams 25 per event-loop turn (each stream's clock starts at its own send).
Exit status: 0 ok, 1 failed streams or error, 2 hard timeout, 130 interrupted.`;

function positiveInt(name: string, raw: string, min = 1): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min} (got "${raw}")`);
  return n;
}

/** Parses argv (without node and script); throws on invalid input, returns `undefined` for --help. */
export function parseBenchArgs(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      modes: { type: 'string', default: MODES.join(',') },
      concurrency: { type: 'string', default: '1,200' },
      tokens: { type: 'string', default: '50' },
      pace: { type: 'string', default: '20' },
      requests: { type: 'string', default: '30' },
      rounds: { type: 'string', default: '3' },
      'warmup-turns': { type: 'string', default: '3000' },
      warmup: { type: 'string', default: '5' },
      'warmup-rounds': { type: 'string', default: '1' },
      timeout: { type: 'string', default: '170' },
      out: { type: 'string', default: 'bench/results/latest.json' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const concurrency = values.concurrency
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => positiveInt('concurrency', s));
  if (concurrency.length === 0) throw new Error('--concurrency needs at least one level');
  const given = values.modes
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const m of given) {
    if (!(MODES as readonly string[]).includes(m)) throw new Error(`--modes: unknown mode "${m}" (known: ${MODES.join(', ')})`);
  }
  const modes = MODES.filter((m) => given.includes(m));
  if (modes.length === 0) throw new Error('--modes needs at least one mode');
  return {
    modes,
    concurrency,
    tokens: positiveInt('tokens', values.tokens),
    paceMs: positiveInt('pace', values.pace, 0),
    requests: positiveInt('requests', values.requests),
    rounds: positiveInt('rounds', values.rounds),
    warmupTurns: positiveInt('warmup-turns', values['warmup-turns'], 0),
    warmup: positiveInt('warmup', values.warmup, 0),
    warmupRounds: positiveInt('warmup-rounds', values['warmup-rounds'], 0),
    timeoutSeconds: positiveInt('timeout', values.timeout),
    out: values.out,
    profile: values.profile,
  };
}
