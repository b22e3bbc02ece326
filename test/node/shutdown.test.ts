import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { tempDataDir } from '../helpers/gateway.js';
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
        .prepare("SELECT conversation_id AS c, finish_reason AS f, length(content) AS n FROM messages WHERE role = 'assistant' ORDER BY c")
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
});
