/**
 * LOG_PRETTY: the real entry as a child process writes readable lines with LOG_PRETTY=true or
 * on a terminal, JSON lines into a pipe, and JSON when LOG_PRETTY=false even on a terminal.
 * Each run is pointed at a port that is already taken, so it logs its start-up lines and exits
 * by itself (69) without anything to clean up.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MAIN = resolve('src/node/main.ts');
const TSX_LOADER = createRequire(import.meta.url).resolve('tsx');
const HAS_SCRIPT = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

describe('LOG_PRETTY', () => {
  let taken: Server;
  let port: number;
  const dirs: string[] = [];

  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((done) => taken.listen(0, '127.0.0.1', done));
    port = (taken.address() as { port: number }).port;
  });
  afterAll(() => {
    taken.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string>) => {
    const cwd = mkdtempSync(join(tmpdir(), 'gateway-logs-'));
    dirs.push(cwd);
    return { cwd, env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: join(cwd, 'data'), ...extra } };
  };

  /** Runs the entry with stdout on a pipe; resolves with what it printed when it exits. */
  const run = (extra: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const { cwd, env: vars } = env(extra);
      const child = spawn(process.execPath, ['--import', TSX_LOADER, MAIN], { cwd, env: vars, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => done({ code, stdout, stderr }));
    });

  /** Runs the entry under `script`, so its stdout is a terminal. */
  const runOnTerminal = (extra: Record<string, string>) => {
    const { cwd, env: vars } = env(extra);
    const command = [process.execPath, '--import', TSX_LOADER, MAIN].map((a) => `'${a}'`).join(' ');
    return spawnSync('script', ['-qec', command, '/dev/null'], { cwd, env: { ...vars, TERM: 'xterm' }, encoding: 'utf8', timeout: 30_000 });
  };

  const isJson = (line: string) => {
    try {
      return typeof JSON.parse(line) === 'object';
    } catch {
      return false;
    }
  };

  it('true: one readable line per entry, level and message first, fields below; no JSON', async () => {
    const { code, stdout, stderr } = await run({ LOG_PRETTY: 'true' });
    expect(code, stderr).toBe(69);
    const lines = stdout.split('\n').filter(Boolean);
    const ready = lines.find((l) => l.includes('backends ready'));
    expect(ready, stdout).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO: backends ready/);
    expect(isJson(ready!)).toBe(false);
    expect(stdout).toMatch(/^ {4}store: "sqlite"$/m);
    expect(stdout).toMatch(/WARN: JWT_SECRET is not set/);
    expect(lines.filter(isJson)).toEqual([]);
    // Not a terminal: no colour codes in a file or pipe.
    expect(stdout).not.toMatch(ANSI);
  });

  it('unset, stdout a pipe: JSON lines, as before', async () => {
    const { code, stdout, stderr } = await run({});
    expect(code, stderr).toBe(69);
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.every(isJson)).toBe(true);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContainEqual(expect.stringContaining('backends ready'));
  });

  it.skipIf(!HAS_SCRIPT)('unset, stdout a terminal: readable and coloured; LOG_PRETTY=false there: JSON', () => {
    const tty = runOnTerminal({});
    expect(tty.status, tty.stdout).toBe(69);
    expect(tty.stdout).toMatch(ANSI);
    const plain = tty.stdout.replace(ANSI, '');
    expect(plain).toMatch(/INFO.*: backends ready/);
    expect(plain).not.toMatch(/"msg":/);

    const json = runOnTerminal({ LOG_PRETTY: 'false' });
    expect(json.status, json.stdout).toBe(69);
    expect(json.stdout).toMatch(/^\{.*"msg":"backends ready/m);
  });
});
