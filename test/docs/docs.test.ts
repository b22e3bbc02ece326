/**
 * The user documentation stays true to the code: every error code has its section, every
 * variable the docs name exists, every relative link and anchor resolves, and the backup
 * commands of operations.md back up a running gateway's data.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config.js';
import { ERROR_CODES } from '../../src/errors.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';

const DOCS = ['README.md', 'examples/README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (file: string) => readFileSync(file, 'utf8');

/** GitHub's heading anchors: lower case, punctuation dropped (but - and _), spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const heading = !inCode && /^#{1,6} (.+)$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

describe('docs/', () => {
  it('has the four guides, linked from the README', () => {
    const readme = read('README.md');
    for (const doc of ['docs/protocols.md', 'docs/errors.md', 'docs/configuration.md', 'docs/operations.md']) {
      expect(existsSync(doc), doc).toBe(true);
      expect(readme, doc).toContain(`](${doc}`);
    }
  });

  it('errors.md has a section for every error code, with its HTTP status in the table', () => {
    const errors = read('docs/errors.md');
    for (const code of ERROR_CODES) {
      expect(errors, code).toMatch(new RegExp(`^## ${code}$`, 'm'));
      expect(errors, code).toMatch(new RegExp(`^\\| \\[\`${code}\`\\]\\(#${code.toLowerCase()}\\) \\| \\d{3}`, 'm'));
    }
  });

  it('the guides in docs/ explain every variable the server reads', () => {
    const guides = DOCS.filter((f) => f.startsWith('docs/')).map(read).join('\n');
    // In a table or sentence (`NAME`) or in a recipe's variables (NAME=… at the start of a line).
    expect(Object.keys(configSchema.shape).filter((name) => !guides.includes(`\`${name}`) && !new RegExp(`^${name}=`, 'm').test(guides))).toEqual([]);
  });

  it('names only variables the server reads', () => {
    // Besides the server's: what the examples, the browser tests and the benches read, and
    // MongoDB's wire messages (the README's stand-in notes).
    const others = ['GATEWAY_URL', 'GATEWAY_TOKEN', 'CONVERSATION_ID', 'CHAT_ID', 'CHROMIUM_PATH', 'UPDATE_DOCS_SCREENSHOT', 'BENCH_GATEWAY_ENV', 'BENCH_GATEWAY_NODE_ARGS', 'OP_MSG', 'OP_QUERY'];
    const known = new Set([...Object.keys(configSchema.shape), ...ERROR_CODES, ...others]);
    const unknown = new Map<string, string>();
    for (const file of DOCS) {
      for (const [name] of read(file).matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) {
        if (!known.has(name)) unknown.set(name, file);
      }
    }
    expect(Object.fromEntries(unknown)).toEqual({});
  });

  it('every relative link and anchor resolves', () => {
    const broken: string[] = [];
    for (const file of DOCS) {
      const text = read(file).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split('#') as [string, string | undefined];
        const resolved = path === '' ? file : join(dirname(file), path);
        if (!existsSync(resolved)) {
          broken.push(`${file}: ${target} (no ${resolved})`);
          continue;
        }
        if (anchor && resolved.endsWith('.md') && !anchorsOf(read(resolved)).has(anchor)) broken.push(`${file}: ${target} (no heading #${anchor})`);
      }
    }
    expect(broken).toEqual([]);
  });

  describe('operations.md backups, run against a gateway that is serving', () => {
    let gw: TestGateway;
    let scratch: string;

    beforeAll(async () => {
      scratch = mkdtempSync(join(tmpdir(), 'gateway-backup-'));
      gw = await startGateway({ DATA_DIR: join(scratch, 'data') });
      const events = await readSse(await postChat(gw.url, { message: 'keep me', sessionId: 'backed-up' }));
      expect(events.at(-1)).toMatchObject({ done: true });
      // The snippet imports better-sqlite3 from the directory it runs in, as it does in the gateway's.
      symlinkSync(resolve('node_modules'), join(scratch, 'node_modules'), 'dir');
    });
    afterAll(async () => {
      await gw.close();
      rmSync(scratch, { recursive: true, force: true });
    });

    const messagesIn = (file: string) => {
      const db = new Database(file, { readonly: true });
      try {
        return (db.prepare('SELECT content FROM messages ORDER BY created_at').all() as { content: string }[]).map((m) => m.content);
      } finally {
        db.close();
      }
    };

    it('the better-sqlite3 snippet copies both databases, private, while the gateway runs', () => {
      const block = /```bash\n(umask 077\nmkdir -p backups\nnode --input-type=module -e "[\s\S]*?")\n```/.exec(read('docs/operations.md'));
      expect(block).not.toBeNull();
      const run = spawnSync('bash', ['-euc', block![1]!], { cwd: scratch, encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      for (const name of ['gateway', 'memory']) {
        const file = join(scratch, 'backups', `${name}.sqlite`);
        expect(existsSync(file), file).toBe(true);
      }
      expect(messagesIn(join(scratch, 'backups', 'gateway.sqlite'))).toContain('keep me');
      expect(spawnSync('stat', ['-c', '%a', join(scratch, 'backups', 'gateway.sqlite')], { encoding: 'utf8' }).stdout.trim()).toBe('600');
    });

    it.skipIf(spawnSync('sqlite3', ['--version']).status !== 0)('the sqlite3 commands do the same', () => {
      const block = /```bash\n(umask 077[^\n]*\nmkdir -p backups\/\$\(date \+%F\)[\s\S]*?)\n```/.exec(read('docs/operations.md'));
      expect(block).not.toBeNull();
      mkdirSync(join(scratch, 'cli'), { recursive: true });
      symlinkSync(join(scratch, 'data'), join(scratch, 'cli', 'data'), 'dir');
      const run = spawnSync('bash', ['-euc', block![1]!], { cwd: join(scratch, 'cli'), encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe('ok');
      const [day] = readdirSync(join(scratch, 'cli', 'backups'));
      expect(messagesIn(join(scratch, 'cli', 'backups', day!, 'gateway.sqlite'))).toContain('keep me');
      expect(readFileSync(join(scratch, 'cli', 'backups', day!, 'jwt-secret'), 'utf8')).toBe(readFileSync(join(scratch, 'data', 'jwt-secret'), 'utf8'));
    });
  });
});
