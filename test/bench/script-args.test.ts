import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseScriptArgs } from '../../bench/script-args.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Options by their defaults: a number, a string and a flag. */
const OPTIONS = { rounds: 3, dir: '/tmp', paired: false };

describe('bench scripts: command-line options', () => {
  it('gives the defaults, and what was given, numbers as numbers', () => {
    expect(parseScriptArgs(OPTIONS, [])).toEqual({ kind: 'values', values: { rounds: 3, dir: '/tmp', paired: false } });
    expect(parseScriptArgs(OPTIONS, ['--rounds', '5', '--dir', 'x y', '--paired'])).toEqual({
      kind: 'values',
      values: { rounds: 5, dir: 'x y', paired: true },
    });
  });

  it('answers --help and -h with the usage, not a run', () => {
    expect(parseScriptArgs(OPTIONS, ['--help'])).toEqual({ kind: 'help' });
    expect(parseScriptArgs(OPTIONS, ['--rounds', '2', '-h'])).toEqual({ kind: 'help' });
  });

  it('refuses unknown options, missing values, positionals and numbers that are not numbers', () => {
    const error = (argv: string[]) => {
      const r = parseScriptArgs(OPTIONS, argv);
      expect(r.kind).toBe('error');
      return r.kind === 'error' ? r.message : '';
    };
    expect(error(['--bogus'])).toMatch(/bogus/);
    expect(error(['--rounds'])).toMatch(/rounds/);
    expect(error(['extra'])).toMatch(/extra/);
    expect(error(['--rounds', 'three'])).toBe('--rounds must be a number of at least 0 (got "three")');
    expect(error(['--rounds=-1'])).toMatch(/--rounds must be a number/);
    expect(error(['--rounds', ''])).toMatch(/--rounds must be a number/);
    // A string option whose default is not a number takes any text.
    expect(parseScriptArgs(OPTIONS, ['--dir', '12abc']).kind).toBe('values');
  });

  it('a script answers --help with exit 0 and a bad option with exit 2, one line and the usage, no stack', async () => {
    const run = promisify(execFile);
    const tsx = ['--import', 'tsx', 'bench/profile.ts'];
    const help = await run(process.execPath, [...tsx, '--help'], { cwd: ROOT });
    expect(help.stdout.trim()).toBe('Usage: npx tsx bench/profile.ts [--concurrency 200] [--rounds 3] [--tokens 50] [--pace 20] [--top 15] [--interval 1000]');
    const bad = await run(process.execPath, [...tsx, '--tokens', 'many'], { cwd: ROOT }).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(bad?.code).toBe(2);
    expect(bad?.stderr).toBe(
      '--tokens must be a number of at least 0 (got "many")\nUsage: npx tsx bench/profile.ts [--concurrency 200] [--rounds 3] [--tokens 50] [--pace 20] [--top 15] [--interval 1000]\n',
    );
  }, 30_000);
});
