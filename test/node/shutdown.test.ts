import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/gateway.js';
import { io } from 'socket.io-client';
import { register } from '../helpers/accounts.js';
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

      const short = await post({ message: 'short', sessionId: 'short', maxTokens: 5 });
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
});
