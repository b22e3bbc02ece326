import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/gateway.js';
import { io } from 'socket.io-client';
import { bearer, register } from '../helpers/accounts.js';
import { spawnGateway } from '../helpers/gateway-process.js';
import { postChat, readSse } from '../helpers/sse.js';
import { startOpenAIStandin } from '../standins/openai-standin.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';

/** Starts the real entry point (`src/node/main.ts`) as a child process. */
function startProcess(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/node/main.ts'], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = waitFor(() => /"port":(\d+)/.exec(out)?.[1], 20_000).then(Number);
  return { child, exited, port, log: () => out };
}

describe('graceful shutdown', () => {
  it('on SIGTERM stops accepting, lets a short stream finish, aborts a long one after the grace period and stores both', async () => {
    const dataDir = tempDataDir();
    try {
      const proc = startProcess({ DATA_DIR: dataDir, LOCAL_MODEL_TOKEN_DELAY_MS: '40', SHUTDOWN_GRACE_MS: '800' });
      const port = await proc.port;
      const url = `http://127.0.0.1:${port}/api/v2/ai/chat/stream`;
      const post = (body: object) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

      // 12 tokens at 40 ms: still streaming when SIGTERM comes (with 5 it ended first once in CI,
      // the second request's head having taken long), and done well within the grace period.
      const short = await post({ message: 'short', sessionId: 'short', maxTokens: 12 });
      const long = await post({ message: 'long', sessionId: 'long' });
      const shortText = short.text();
      const longText = long.text();
      await new Promise((r) => setTimeout(r, 60));
      const started = Date.now();
      proc.child.kill('SIGTERM');

      expect(await proc.exited).toBe(0);
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(700);
      expect(took).toBeLessThan(5000);
      expect(await shortText).toContain('"done":true');
      const longBody = await longText;
      expect(longBody).not.toContain('"done":true');
      expect(longBody).toContain('"code":"INTERNAL"');
      expect(longBody).toContain('shutting down');
      expect(proc.log()).toMatch(/"finished":1,"aborted":1/);

      const db = new Database(join(dataDir, 'gateway.sqlite'), { readonly: true });
      const replies = db
        .prepare(
          "SELECT c.id AS c, m.finish_reason AS f, length(m.content) AS n FROM messages m JOIN conversations c ON c.key = m.conversation_key WHERE m.role = 'assistant' ORDER BY c.id",
        )
        .all() as { c: string; f: string; n: number }[];
      db.close();
      expect(replies).toEqual([
        { c: 'long', f: 'aborted', n: expect.any(Number) },
        { c: 'short', f: 'length', n: expect.any(Number) },
      ]);
      expect(replies[0]!.n).toBeGreaterThan(0);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('seed 000 and 001 clients waiting for a whole reply are told about the shutdown before their socket closes', async () => {
    const dataDir = tempDataDir();
    try {
      const proc = startProcess({ DATA_DIR: dataDir, LOCAL_MODEL_TOKEN_DELAY_MS: '40', SHUTDOWN_GRACE_MS: '300', JWT_SECRET: TEST_JWT_SECRET });
      const port = await proc.port;
      const base = `http://127.0.0.1:${port}`;
      const account = await register(base, 'shutdown-001@example.com');
      const seed000 = io(base, { transports: ['websocket'], reconnection: false });
      const seed001 = io(base, { transports: ['polling'], reconnection: false, extraHeaders: { cookie: account.cookie } });
      const answers: { seed: string; payload: unknown }[] = [];
      seed000.on('ai-message-response', (payload) => answers.push({ seed: '000', payload }));
      seed001.on('ai-response', (payload) => answers.push({ seed: '001', payload }));
      await Promise.all([seed000, seed001].map((s) => new Promise<void>((r) => s.once('connect', () => r()))));
      seed000.emit('ai-message', { prompt: 'a long answer please' });
      seed001.emit('ai-message', { chatId: 'shutdown-001', content: 'a long answer please' });
      await new Promise((r) => setTimeout(r, 200));
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      expect(answers.sort((a, b) => a.seed.localeCompare(b.seed))).toEqual([
        { seed: '000', payload: { error: expect.stringMatching(/shutting down/), code: 'INTERNAL' } },
        { seed: '001', payload: { error: expect.stringMatching(/shutting down/), code: 'INTERNAL' } },
      ]);
      seed000.close();
      seed001.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a memory write waiting on an embedding provider that does not answer holds the shutdown 5 s at most; its messages go back to the queue, due at once', async () => {
    // The provider answers chat at once and never answers an embedding request (a hang).
    const openai = await startOpenAIStandin({ script: (req) => (req.path.endsWith('/embeddings') ? { tokens: ['x'], delayMs: 600_000 } : { tokens: ['noted'] }) });
    const gw = await spawnGateway({
      SHUTDOWN_GRACE_MS: '2000',
      OPENAI_BASE_URL: openai.url,
      OPENAI_API_KEY: 'sk-test',
      DEFAULT_MODEL: 'local',
      EMBEDDING_PROVIDER: 'openai',
      MEMORY_RECALL_TIMEOUT_MS: '200',
      JWT_SECRET: TEST_JWT_SECRET,
    });
    try {
      const user = await register(gw.url, 'shutdown-memory@example.com');
      const events = await readSse(await postChat(gw.url, { message: 'Remember that my favourite colour is teal.', sessionId: 'teal' }, bearer(user)));
      expect(events.at(-1)).toMatchObject({ done: true });
      // The writer's request (the exchange, two texts) is waiting at the provider.
      await waitFor(() => openai.requests.some((r) => r.path.endsWith('/embeddings') && JSON.stringify(r.body).includes('favourite colour') && JSON.stringify(r.body).includes('"input":[')), 10_000);
      const started = performance.now();
      process.kill(gw.pid, 'SIGTERM');
      await waitFor(() => !gw.alive(), 15_000, 50);
      const ms = performance.now() - started;
      expect(gw.exit()).toEqual({ code: 0, signal: null });
      expect(ms).toBeLessThan(9_000);
      expect(gw.output()).toContain('its entries go back to the queue');
      expect(gw.output()).toContain('"shut down"');
      // Due now, not held for the rest of the dead writer's claim.
      const queued = await gw.store.pendingMemories(10, Date.now());
      expect(queued.map((p) => p.message.content)).toContain('Remember that my favourite colour is teal.');
    } finally {
      await gw.destroy();
      await openai.close();
    }
  }, 60_000);
});
