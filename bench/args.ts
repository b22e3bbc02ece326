/** Command-line options of `npm run bench` (see {@link USAGE}). */
import { parseArgs } from 'node:util';

export interface BenchOptions {
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
  /** Unmeasured sequential requests per mode before the first level. */
  warmup: number;
  /** Unmeasured rounds per mode before each level with concurrency > 1 (opens the connections). */
  warmupRounds: number;
  /** Hard limit for the whole run, in seconds. */
  timeoutSeconds: number;
  /** Where the JSON results go (relative to the repository root). */
  out: string;
  /** Run the gateway with --cpu-prof, writing a .cpuprofile under bench/results/profiles/. */
  profile: boolean;
}

export const USAGE = `Usage: npm run bench -- [options]

  --concurrency 1,200   concurrency levels, comma-separated (e.g. 1,200,2000)
  --tokens 50           tokens per streamed reply
  --pace 20             ms before each token (also before the first)
  --requests 40         measured sequential requests per mode at concurrency 1
  --rounds 2            measured rounds per mode at concurrency > 1
  --warmup 5            unmeasured sequential requests per mode at the start
  --warmup-rounds 1     unmeasured rounds per mode before each level > 1
  --timeout 170         hard limit for the whole run, seconds
  --out bench/results/latest.json
  --profile             run the gateway under --cpu-prof (bench/results/profiles/*.cpuprofile;
                        open in Chrome DevTools or speedscope; slows the gateway a little)
  --help

Modes: "direct" = client -> stand-in, "gateway" = client -> gateway -> stand-in.
Direct and gateway rounds alternate (ABBA order) so machine noise hits both alike.
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
      concurrency: { type: 'string', default: '1,200' },
      tokens: { type: 'string', default: '50' },
      pace: { type: 'string', default: '20' },
      requests: { type: 'string', default: '40' },
      rounds: { type: 'string', default: '2' },
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
  return {
    concurrency,
    tokens: positiveInt('tokens', values.tokens),
    paceMs: positiveInt('pace', values.pace, 0),
    requests: positiveInt('requests', values.requests),
    rounds: positiveInt('rounds', values.rounds),
    warmup: positiveInt('warmup', values.warmup, 0),
    warmupRounds: positiveInt('warmup-rounds', values['warmup-rounds'], 0),
    timeoutSeconds: positiveInt('timeout', values.timeout),
    out: values.out,
    profile: values.profile,
  };
}
