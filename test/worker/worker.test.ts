import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true', NO_COLOR: '1' };

describe('Cloudflare Workers entry', () => {
  it('builds with wrangler deploy --dry-run, with no native module in the bundle', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'worker-build-'));
    try {
      const result = spawnSync('npx', ['wrangler', 'deploy', '--dry-run', '--outdir', outdir], { env: wranglerEnv, encoding: 'utf8', timeout: 120_000 });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/--dry-run: exiting now/);
      const bundle = join(outdir, 'worker.js');
      expect(statSync(bundle).size).toBeGreaterThan(10_000);
      // prom-client is Node-only: the Workers build reports to the no-op Metrics.
      const text = spawnSync('grep', ['-c', 'better-sqlite3\\|socket.io\\|node:sqlite\\|prom-client', bundle], { encoding: 'utf8' }).stdout.trim();
      expect(text).toBe('0');
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }, 120_000);

  describe('under wrangler dev (workerd) on loopback', () => {
    let url: string;
    let child: ReturnType<typeof spawn>;
    let log = '';

    beforeAll(async () => {
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      child = spawn('npx', ['wrangler', 'dev', '--ip', '127.0.0.1', '--port', String(port), '--show-interactive-dev-session=false', '--inspector-port', String(await freePort())], {
        env: wranglerEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      await waitFor(() => fetch(`${url}/healthz`).then((r) => r.ok, () => false), 90_000, 250).catch((err: unknown) => {
        throw new Error(`wrangler dev did not come up: ${String(err)}\n${log}`);
      });
    }, 120_000);

    afterAll(() => {
      if (child.pid) process.kill(-child.pid, 'SIGTERM');
    });

    it('answers the SSE route in the seed 002 format and continues a session', async () => {
      const first = await readSse(await postChat(url, { message: 'Hello' }));
      expect(first.length).toBeGreaterThan(3);
      expect(first[0]).toEqual({ content: expect.any(String), sessionId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      const sessionId = first.at(-1)!.sessionId as string;
      expect(first.at(-1)).toMatchObject({ done: true, sessionId });
      expect(contentOf(first)).toContain('You said: "Hello"');

      const second = await readSse(await postChat(url, { message: 'again', sessionId }));
      expect(contentOf(second)).toContain('2 earlier messages');
    });

    it('puts the same headers on the streamed and the JSON responses: request id, security headers, CORS, rate limits, the anonymous cookie', async () => {
      const origin = { Origin: 'http://localhost:5173' };
      const sse = await postChat(url, { message: 'Hello' }, origin);
      await sse.text();
      const json = await postChat(url, 'nope', origin);
      await json.text();
      for (const [what, res] of [['sse', sse], ['json', json]] as const) {
        expect(res.headers.get('x-request-id'), what).toMatch(/^[0-9a-f-]{36}$/);
        expect(res.headers.get('x-content-type-options'), what).toBe('nosniff');
        expect(res.headers.get('access-control-allow-origin'), what).toBe('http://localhost:5173');
        expect(res.headers.get('vary'), what).toContain('Origin');
        expect(res.headers.getSetCookie(), what).toEqual([expect.stringMatching(/^anon_session=[\w-]{22}\.[\w-]{43}; /)]);
      }
      expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(sse.headers.get('ratelimit-limit')).toMatch(/^\d+$/);
    });

    it('refuses bad input with coded JSON errors', async () => {
      const res = await postChat(url, 'nope');
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'BAD_REQUEST' });
      const model = await postChat(url, { message: 'x', model: 'not a model!' });
      expect(await model.json()).toMatchObject({ code: 'INVALID_MODEL' });
    });
  });
});
