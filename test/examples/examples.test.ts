/**
 * Every example in examples/ run as a user runs it (a child process, GATEWAY_URL set) against
 * a real gateway on the embedded local model, whose reply quotes the message: the example's
 * stdout must carry the streamed reply.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const TSX_LOADER = createRequire(import.meta.url).resolve('tsx');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runExample(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  const path = resolve('examples', file);
  const node = file.endsWith('.ts') ? ['--import', TSX_LOADER, path] : [path];
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [...node, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe('examples/', () => {
  let gw: TestGateway;
  let env: Record<string, string>;

  beforeAll(async () => {
    // Paced like a remote model, so the examples really read a stream of several chunks.
    gw = await startGateway({ LOCAL_MODEL_TOKEN_DELAY_MS: '2' });
    env = { GATEWAY_URL: gw.url };
  });
  afterAll(() => gw.destroy());

  const quoted = (message: string) => `You said: "${message}"`;

  async function tokenFor(email: string): Promise<string> {
    const res = await fetch(`${gw.url}/api/v2/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password: 'correct horse battery' }),
    });
    return ((await res.json()) as { token: string }).token;
  }

  it('socketio-chat.ts: /ai chat:start streams the reply, chat:end reports it (signed in by registering)', async () => {
    const run = await runExample('socketio-chat.ts', ['Hello over Socket.IO'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello over Socket.IO'));
    expect(run.stderr).toMatch(/\[new conversation [\w-]+\]/);
    expect(run.stderr).toMatch(/\[stop: \d+ tokens from local, conversation [\w-]+\]/);
  });

  it('socketio-chat.ts continues a named conversation with CONVERSATION_ID', async () => {
    const token = await tokenFor('examples-socket@example.com');
    const first = await runExample('socketio-chat.ts', ['First'], { ...env, GATEWAY_TOKEN: token, CONVERSATION_ID: 'example-trip' });
    expect(first.code, first.stderr).toBe(0);
    const second = await runExample('socketio-chat.ts', ['Second'], { ...env, GATEWAY_TOKEN: token, CONVERSATION_ID: 'example-trip' });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(quoted('Second'));
    expect(second.stdout).toMatch(/This conversation has 2 earlier messages/);
  });

  it('browser-sse/node.mjs runs the page\'s own module: two turns in one conversation, anonymous', async () => {
    const page = readFileSync(resolve('examples/browser-sse/index.html'), 'utf8');
    expect(page).toContain("import { streamChat } from './sse-chat.js';");
    const run = await runExample('browser-sse/node.mjs', ['Hello over SSE'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello over SSE'));
    expect(run.stdout).toContain(quoted('And once more'));
    expect(run.stdout).toMatch(/This conversation has 2 earlier messages/);
    expect(run.stderr).toMatch(/\[stop, session [\w-]+\]/);
  });

  it('browser-sse: a refusal reaches the page\'s code as its code (an invalid token)', async () => {
    const run = await runExample('browser-sse/node.mjs', ['Hello'], { ...env, GATEWAY_TOKEN: 'not-a-token' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^UNAUTHORIZED: Invalid token/m);
  });

  it('openai-sdk.mjs: a streamed chat completion with usage, model from /v1/models', async () => {
    const run = await runExample('openai-sdk.mjs', ['Hello from openai'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello from openai'));
    expect(run.stderr).toMatch(/\[stop: \d+ tokens from local\]/);
  });

  it('openai-sdk.mjs with CONVERSATION_ID: the gateway keeps the history (X-Conversation-Id)', async () => {
    const token = await tokenFor('examples-openai@example.com');
    const first = await runExample('openai-sdk.mjs', ['One'], { ...env, GATEWAY_TOKEN: token, CONVERSATION_ID: 'openai-example' });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/stored in openai-example/);
    const second = await runExample('openai-sdk.mjs', ['Two'], { ...env, GATEWAY_TOKEN: token, CONVERSATION_ID: 'openai-example' });
    expect(second.stdout).toContain(quoted('Two'));
    expect(second.stdout).toMatch(/This conversation has 2 earlier messages/);
  });

  it('openai-sdk.mjs on a gateway API key (GATEWAY_TOKEN=gk_…), limited to one model', async () => {
    const token = await tokenFor('examples-key@example.com');
    const created = await fetch(`${gw.url}/api/v2/keys`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: 'examples', models: ['local'] }),
    });
    const { key } = (await created.json()) as { key: string };
    expect(key).toMatch(/^gk_/);
    const run = await runExample('openai-sdk.mjs', ['Hello with a key'], { ...env, GATEWAY_TOKEN: key });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello with a key'));
  });

  it('openai-sdk.mjs: an error carries the gateway\'s code', async () => {
    const run = await runExample('openai-sdk.mjs', ['Hello'], { ...env, MODEL: 'no such model' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^INVALID_MODEL: /m);
  });

  it('ai-sdk-stream-text.mjs: streamText over @ai-sdk/openai-compatible', async () => {
    const run = await runExample('ai-sdk-stream-text.mjs', ['Hello from streamText'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello from streamText'));
    expect(run.stderr).toMatch(/\[stop: \d+ tokens from local\]/);
  });

  it('ai-sdk-chat-transport.mjs: DefaultChatTransport against /api/chat, then the stored conversation', async () => {
    const run = await runExample('ai-sdk-chat-transport.mjs', ['Hello from useChat'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(quoted('Hello from useChat'));
    expect(run.stderr).toMatch(/\[stop from local; chat [\w-]+ holds 2 messages\]/);
  });
});
