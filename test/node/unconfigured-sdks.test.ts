import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config.js';
import { spawnGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/wait.js';

// The real entry on its embedded defaults, with a preload that records the npm packages its
// modules import (test/helpers/package-probe): the SDKs of services nobody configured are
// never loaded, so they cost a zero-config node no memory (~45 MB resident together).

const PROBE = resolve('test/helpers/package-probe/register.mjs');

async function importedPackages(env: Env): Promise<string[]> {
  const gw = await spawnGateway(env, { nodeArgs: ['--import', PROBE] });
  try {
    process.kill(gw.pid, 'SIGUSR2');
    const line = await waitFor(() => gw.output().split('\n').find((l) => l.startsWith('{"packages":')), 10_000, 20);
    return (JSON.parse(line) as { packages: string[] }).packages;
  } finally {
    await gw.destroy();
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
