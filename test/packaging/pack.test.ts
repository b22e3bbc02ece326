/**
 * What a consumer installs: `npm pack` (which runs `prepare`, the build, as a git-dependency
 * install does), the tarball unpacked as `node_modules/ai-chat-gateway` of a scratch project,
 * then the package imported by name: its runtime exports start a gateway, and its type
 * declarations (the Socket.IO event maps) type-check a client under `tsc --strict`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve('.');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('the packed package', () => {
  let scratch: string;
  let files: string[];
  let consumer: string;

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'gateway-pack-'));
    const out = execFileSync(NPM, ['pack', '--json', '--pack-destination', scratch], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 });
    // npm prints the build's own output before the JSON report.
    const report = JSON.parse(out.slice(out.indexOf('[\n'))) as { filename: string; files: { path: string }[] }[];
    files = report[0]!.files.map((f) => f.path);

    consumer = join(scratch, 'consumer');
    const installed = join(consumer, 'node_modules', 'ai-chat-gateway');
    mkdirSync(installed, { recursive: true });
    execFileSync('tar', ['-xzf', join(scratch, report[0]!.filename), '-C', installed, '--strip-components=1']);
    // The package's own dependencies resolve from this checkout's install (no network, no rebuild of native modules).
    symlinkSync(join(ROOT, 'node_modules'), join(installed, 'node_modules'), 'dir');
    for (const dep of ['socket.io-client', '@types']) symlinkSync(join(ROOT, 'node_modules', dep), join(consumer, 'node_modules', dep), 'dir');
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  }, 300_000);

  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('holds the build (JS, declarations), the licence, the docs and examples, and nothing private', () => {
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/protocol/socket-events.d.ts', 'dist/node/main.js', 'LICENSE', 'README.md', 'package.json', 'examples/openai-sdk.mjs', 'examples/browser-sse/index.html', 'docs/protocols.md', 'docs/errors.md']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => /^(test|bench|scratch|data|node_modules|\.ci)\//.test(f) || f === '.env')).toEqual([]);
    const license = readFileSync(join(consumer, 'node_modules/ai-chat-gateway/LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License/);
    expect(license).toContain('AI chat gateway contributors');
  });

  it('imports by name and starts a gateway from the packed build', () => {
    const script = `
      import { createNodeServer, loadConfig, ERROR_CODES } from 'ai-chat-gateway';
      const server = await createNodeServer(loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', DATA_DIR: ${JSON.stringify(join(scratch, 'data'))} }));
      const { port } = await server.listen();
      const health = await (await fetch('http://127.0.0.1:' + port + '/healthz')).json();
      await server.close();
      console.log(JSON.stringify({ codes: ERROR_CODES, health }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer, encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { codes: string[]; health: unknown };
    expect(result.codes).toContain('RATE_LIMIT');
    expect(result.health).toEqual({ status: 'ok' });
  });

  it('its event maps type-check a Socket.IO client, and reject a wrong event or payload', () => {
    writeFileSync(
      join(consumer, 'client.ts'),
      `import { io, type Socket } from 'socket.io-client';
import type { AiClientToServerEvents, AiServerToClientEvents, DefaultClientToServerEvents, DefaultServerToClientEvents, ErrorCode } from 'ai-chat-gateway';

const ai: Socket<AiServerToClientEvents, AiClientToServerEvents> = io('http://localhost:3000/ai', { auth: { token: 't' } });
ai.on('chat:end', (e) => {
  const tokens: number = e.totalTokens;
  const reason: 'stop' | 'length' = e.finishReason;
  void [tokens, reason];
});
ai.on('chat:error', (e) => {
  const code: ErrorCode = e.code;
  void code;
});
ai.emit('chat:start', { message: 'Hello', conversationId: null, maxTokens: 64 });
const root: Socket<DefaultServerToClientEvents, DefaultClientToServerEvents> = io('http://localhost:3000');
root.emit('ai:chat', { message: 'Hello', sessionId: 'my-session' });
root.on('ai:stream', ({ content, sessionId }) => void [content.length, sessionId.length]);
`,
    );
    writeFileSync(
      join(consumer, 'wrong.ts'),
      `import { io, type Socket } from 'socket.io-client';
import type { AiClientToServerEvents, AiServerToClientEvents } from 'ai-chat-gateway';
const ai: Socket<AiServerToClientEvents, AiClientToServerEvents> = io('http://localhost:3000/ai');
ai.emit('chat:begin', { message: 'no such event' });
ai.emit('chat:start', { text: 'wrong field' });
`,
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const options = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--skipLibCheck'];
    const good = spawnSync(process.execPath, [tsc, ...options, 'client.ts'], { cwd: consumer, encoding: 'utf8', timeout: 120_000 });
    expect(good.status, good.stdout + good.stderr).toBe(0);
    const bad = spawnSync(process.execPath, [tsc, ...options, 'wrong.ts'], { cwd: consumer, encoding: 'utf8', timeout: 120_000 });
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toMatch(/wrong\.ts\(4,9\).*"chat:begin"/);
    expect(bad.stdout).toMatch(/wrong\.ts\(5,.*text/);
  });
});
