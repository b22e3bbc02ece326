/**
 * Command-line options of the single-purpose bench scripts (profile, log-cost, ...): node's
 * `parseArgs` plus what a user expects of a command. Options are given by their defaults, and
 * each default's type is the option's: a number option answers a number, a boolean one is a
 * flag, a string one answers the text. `--help` (or `-h`) prints the script's usage line and
 * exits 0. An unknown option, a missing value, a stray argument, or a number option given
 * something other than a finite number of at least 0 prints one line saying what is wrong and
 * the usage line, then exits 2. No stack trace.
 */
import { parseArgs } from 'node:util';

type Defaults = Record<string, number | string | boolean>;
type Values<D extends Defaults> = { [K in keyof D]: D[K] extends number ? number : D[K] extends boolean ? boolean : string };

/** Parses `argv` (default: this process's arguments) against `defaults`. */
export function scriptArgs<D extends Defaults>(usage: string, defaults: D, argv: string[] = process.argv.slice(2)): Values<D> {
  const result = parseScriptArgs(defaults, argv);
  if (result.kind === 'help') {
    console.log(usage);
    process.exit(0);
  }
  if (result.kind === 'error') {
    console.error(`${result.message}\n${usage}`);
    process.exit(2);
  }
  return result.values;
}

export type ParsedScriptArgs<D extends Defaults> = { kind: 'values'; values: Values<D> } | { kind: 'help' } | { kind: 'error'; message: string };

/** {@link scriptArgs} without printing or exiting. */
export function parseScriptArgs<D extends Defaults>(defaults: D, argv: string[]): ParsedScriptArgs<D> {
  const options: Record<string, { type: 'string'; default: string } | { type: 'boolean'; default: boolean; short?: string }> = {};
  for (const [name, value] of Object.entries(defaults)) {
    options[name] = typeof value === 'boolean' ? { type: 'boolean', default: value } : { type: 'string', default: String(value) };
  }
  options['help'] = { type: 'boolean', default: false, short: 'h' };
  let parsed: Record<string, string | boolean | undefined>;
  try {
    ({ values: parsed } = parseArgs({ args: argv, options, allowPositionals: false }));
  } catch (err) {
    return { kind: 'error', message: err instanceof Error ? err.message : String(err) };
  }
  if (parsed['help'] === true) return { kind: 'help' };
  const values: Record<string, number | string | boolean> = {};
  for (const [name, value] of Object.entries(defaults)) {
    const given = parsed[name]!;
    if (typeof value !== 'number') {
      values[name] = given;
      continue;
    }
    const n = typeof given === 'string' && given.trim() !== '' ? Number(given) : Number.NaN;
    if (!Number.isFinite(n) || n < 0) return { kind: 'error', message: `--${name} must be a number of at least 0 (got ${JSON.stringify(given)})` };
    values[name] = n;
  }
  return { kind: 'values', values: values as Values<D> };
}
