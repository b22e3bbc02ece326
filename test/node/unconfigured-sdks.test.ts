import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';

// The real entry on its embedded defaults, with a preload that records the npm packages its
// modules import (test/helpers/package-probe): the SDKs of services nobody configured are
// never loaded, so they cost a zero-config node no memory (~45 MB resident together).

const MAIN = resolve('src/node/main.ts');
const TSX_LOADER = createRequire(import.meta.url).resolve('tsx');
const PROBE = resolve('test/helpers/package-probe/register.mjs');
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function importedPackages(env: Record<string, string>): Promise<string[]> {
  const cwd = mkdtempSync(join(tmpdir(), 'gateway-sdks-'));
  dirs.push(cwd);
  const child = spawn(process.execPath, ['--import', TSX_LOADER, '--import', PROBE, MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', DATA_DIR: join(cwd, 'data'), LOG_LEVEL: 'info', LOG_PRETTY: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  try {
    const port = await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}):\n${out}\n${err}`);
      return out.split('\n').map(listeningPort).find((p) => p !== undefined);
    }, 45_000, 50);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, 10_000, 50);
    child.kill('SIGUSR2');
    const line = await waitFor(() => out.split('\n').find((l) => l.startsWith('{"packages":')), 10_000, 20);
    return (JSON.parse(line) as { packages: string[] }).packages;
  } finally {
    child.kill('SIGKILL');
  }
}

function listeningPort(line: string): number | undefined {
  if (!line.includes('"listening"')) return undefined;
  try {
    const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
    return entry.msg === 'listening' && typeof entry.port === 'number' ? entry.port : undefined;
  } catch {
    return undefined;
  }
}

describe('SDKs of services that are not configured', () => {
  it('are not loaded on the embedded defaults: no MongoDB, Pinecone, Redis or Gemini client', async () => {
    const packages = await importedPackages({});
    // The probe sees what the embedded defaults do use (else an empty list would pass).
    expect(packages).toEqual(expect.arrayContaining(['better-sqlite3', 'socket.io', 'openai', 'hono']));
    for (const unused of ['mongodb', '@pinecone-database/pinecone', 'redis', '@socket.io/redis-streams-adapter', '@google/genai']) {
      expect(packages, `${unused} was loaded`).not.toContain(unused);
    }
  }, 60_000);

  it('load when configured: with a Gemini key the Gemini SDK is loaded at start-up, not at the first request', async () => {
    const packages = await importedPackages({ GEMINI_API_KEY: 'test-key', GEMINI_BASE_URL: 'http://127.0.0.1:9' });
    expect(packages).toContain('@google/genai');
    expect(packages).not.toContain('mongodb');
  }, 60_000);
});
