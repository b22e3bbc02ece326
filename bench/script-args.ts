/**
 * Command-line options of the single-purpose bench scripts (profile, log-cost, ...): node's
 * `parseArgs` plus what a user expects of a command. `--help` (or `-h`) prints the script's
 * usage line and exits 0. An unknown option, a missing value, or a number option that is not a
 * finite number of at least 0 prints one line saying what is wrong and the usage line, then
 * exits 2. No stack trace.
 */
import { parseArgs } from 'node:util';

type StringOption = { type: 'string'; default: string };
type BooleanOption = { type: 'boolean'; default: boolean };
type Options = Record<string, StringOption | BooleanOption>;
type Values<O extends Options> = { [K in keyof O]: O[K] extends BooleanOption ? boolean : string };

/**
 * Parses `argv` (default: this process's arguments). A string option whose default is a number
 * must be given as a number too.
 */
export function scriptArgs<O extends Options>(usage: string, options: O, argv: string[] = process.argv.slice(2)): Values<O> {
  const result = parseScriptArgs(usage, options, argv);
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

export type ParsedScriptArgs<O extends Options> = { kind: 'values'; values: Values<O> } | { kind: 'help' } | { kind: 'error'; message: string };

/** {@link scriptArgs} without printing or exiting. */
export function parseScriptArgs<O extends Options>(usage: string, options: O, argv: string[]): ParsedScriptArgs<O> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h', default: false } }, allowPositionals: false }));
  } catch (err) {
    return { kind: 'error', message: err instanceof Error ? err.message : String(err) };
  }
  if (values['help'] === true) return { kind: 'help' };
  for (const [name, option] of Object.entries(options)) {
    if (option.type !== 'string' || !isNumber(option.default)) continue;
    const given = values[name];
    if (typeof given !== 'string' || !isNumber(given)) {
      return { kind: 'error', message: `--${name} must be a number of at least 0 (got ${JSON.stringify(given)})` };
    }
  }
  delete values['help'];
  return { kind: 'values', values: values as Values<O> };
}

function isNumber(text: string): boolean {
  return text.trim() !== '' && Number.isFinite(Number(text)) && Number(text) >= 0;
}
