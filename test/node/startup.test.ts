import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig, type Env } from '../../src/config.js';
import type { Logger } from '../../src/logger.js';
import { createNodeServer, type NodeServer } from '../../src/node/server.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { contentOf, postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { client, closeAllClients, connected, connectError, EventLog, type AiClient } from '../socket/socket-harness.js';
import { startGeminiStandin } from '../standins/gemini-standin.js';
import { startOpenAIStandin } from '../standins/openai-standin.js';
import { asRecord } from '../standins/standin-script.js';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';

// ---------------------------------------------------------------------------------------------
// The real entry (`src/node/main.ts`) as a child process, run from a scratch working directory
// so no developer `.env` can fill in variables a case leaves unset.
// ---------------------------------------------------------------------------------------------

const MAIN = resolve('src/node/main.ts');
const CLUSTER_MAIN = resolve('src/node/cluster-main.ts');
const TSX_LOADER = createRequire(import.meta.url).resolve('tsx');
const SECRET_KEY = 'sk-do-not-print';
const EX_UNAVAILABLE = 69;
const EX_CONFIG = 78;

interface Entry {
  child: ChildProcessByStdio<null, Readable, Readable>;
  stdout(): string;
  stderr(): string;
  /** Exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  /** The port from the "listening" log line (needs LOG_LEVEL info). */
  port(): Promise<number>;
}

const scratchDirs: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-startup-'));
  scratchDirs.push(dir);
  return dir;
}

/** Minimal environment: PATH, HOST, PORT, DATA_DIR, plus the case's variables. */
function spawnEntry(env: Record<string, string>, cwd = scratch(), entry = MAIN): Entry {
  // Files the entry creates must be private because it makes them so, not because of a strict umask.
  const previousUmask = process.umask(0o022);
  const child = spawn(process.execPath, ['--import', TSX_LOADER, entry], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', DATA_DIR: join(cwd, 'data'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.umask(previousUmask);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    port: () =>
      waitFor(() => {
        if (child.exitCode !== null) throw new Error(`the entry exited with ${child.exitCode}: ${err}`);
        const line = /^\{.*"msg":"listening".*\}$/m.exec(out)?.[0];
        return line ? (JSON.parse(line) as { port: number }).port : undefined;
      }, 20_000),
  };
}

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the entry until it exits on its own (it is killed after `limitMs`, which fails the exit-code assertion). */
async function runToExit(env: Record<string, string>, limitMs = 20_000, main = MAIN): Promise<Outcome> {
  const started = performance.now();
  const entry = spawnEntry(env, scratch(), main);
  const timer = setTimeout(() => entry.child.kill('SIGKILL'), limitMs);
  const code = await entry.exited;
  clearTimeout(timer);
  // Let the pipes deliver their last bytes.
  await new Promise((r) => setImmediate(r));
  return { code, stdout: entry.stdout(), stderr: entry.stderr(), ms: performance.now() - started };
}

/** What every start-up failure must look like: a message, no stack, no secret. */
function expectCleanFailure(outcome: Outcome, secrets: string[]) {
  expect(outcome.stderr.trim()).not.toBe('');
  expect(outcome.stderr).not.toMatch(/^ {4}at /m);
  for (const secret of secrets) {
    expect(outcome.stderr).not.toContain(secret);
    expect(outcome.stdout).not.toContain(secret);
  }
}

async function stopEntry(entry: Entry): Promise<void> {
  if (entry.child.exitCode === null && entry.child.signalCode === null) entry.child.kill('SIGTERM');
  await entry.exited;
}

/** A loopback port nobody listens on (free a moment ago). */
const closedPort = freePort;

afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// 1. Start-up errors
// ---------------------------------------------------------------------------------------------

// One process at a time: side by side they compete for the CPU and the timing bound means less.
describe('start-up errors name the variable and the fix', () => {
  it('DEFAULT_MODEL=gpt-4o with no provider key: exit 78, says to set OPENAI_API_KEY', async () => {
    const outcome = await runToExit({ DEFAULT_MODEL: 'gpt-4o' });
    expect(outcome.code, outcome.stderr).toBe(EX_CONFIG);
    expect(outcome.stderr).toMatch(/DEFAULT_MODEL=gpt-4o/);
    expect(outcome.stderr).toMatch(/set OPENAI_API_KEY/);
    expectCleanFailure(outcome, []);
  });

  it('a variable set empty in the environment is unset: the .env file fills it in (here DEFAULT_MODEL=gpt-4o: exit 78)', async () => {
    const cwd = scratch();
    writeFileSync(join(cwd, '.env'), 'DEFAULT_MODEL=gpt-4o\n');
    const entry = spawnEntry({ DEFAULT_MODEL: '', LOG_LEVEL: ' ' }, cwd);
    const timer = setTimeout(() => entry.child.kill('SIGKILL'), 20_000);
    const code = await entry.exited;
    clearTimeout(timer);
    expect(code, entry.stderr()).toBe(EX_CONFIG);
    expect(entry.stderr()).toMatch(/DEFAULT_MODEL=gpt-4o/);
  });

  it('DEFAULT_MODEL=gemini-2.5-pro with only OPENAI_API_KEY: exit 78, says to set GEMINI_API_KEY, key never printed', async () => {
    const outcome = await runToExit({ DEFAULT_MODEL: 'gemini-2.5-pro', OPENAI_API_KEY: SECRET_KEY });
    expect(outcome.code, outcome.stderr).toBe(EX_CONFIG);
    expect(outcome.stderr).toMatch(/DEFAULT_MODEL=gemini-2\.5-pro/);
    expect(outcome.stderr).toMatch(/set GEMINI_API_KEY/);
    expect(outcome.stderr).not.toMatch(/OPENAI_API_KEY/);
    expectCleanFailure(outcome, [SECRET_KEY]);
  });

  it('OPENAI_BASE_URL without a scheme: exit 78, says it must be an http(s) URL', async () => {
    const outcome = await runToExit({ OPENAI_BASE_URL: 'localhost:11434/v1', OPENAI_API_KEY: SECRET_KEY });
    expect(outcome.code, outcome.stderr).toBe(EX_CONFIG);
    expect(outcome.stderr).toMatch(/OPENAI_BASE_URL: must be an http:\/\/ or https:\/\/ URL/);
    expectCleanFailure(outcome, [SECRET_KEY]);
  });

  it('MONGODB_URI unreachable: exit 69 within the connect timeout, names MONGODB_URI and what to check, no credentials', async () => {
    const port = await closedPort();
    const outcome = await runToExit({
      MONGODB_URI: `mongodb://user:pa55word@127.0.0.1:${port}/?authSource=admin`,
      MONGODB_CONNECT_TIMEOUT_MS: '1000',
      OPENAI_API_KEY: SECRET_KEY,
    });
    expect(outcome.code, outcome.stderr).toBe(EX_UNAVAILABLE);
    // Process start under tsx is most of it (3-12 s on a loaded 2-core machine); the driver's own default would wait 30 s.
    expect(outcome.ms).toBeLessThan(20_000);
    expect(outcome.stderr).toMatch(/^Cannot start: MONGODB_URI: could not connect to 127\.0\.0\.1:\d+ within 1000 ms/m);
    expect(outcome.stderr).toMatch(/Check the URI and that MongoDB is running and reachable/);
    expect(outcome.stderr).toMatch(/unset MONGODB_URI/);
    expectCleanFailure(outcome, [SECRET_KEY, 'pa55word', 'user:']);
  });

  it('MONGODB_URI the driver cannot parse (unescaped character in the password): exit 69, names MONGODB_URI, no credentials', async () => {
    const outcome = await runToExit({ MONGODB_URI: 'mongodb://user:pa55/word@127.0.0.1:27017/', MONGODB_CONNECT_TIMEOUT_MS: '1000' });
    expect(outcome.code, outcome.stderr).toBe(EX_UNAVAILABLE);
    expect(outcome.stderr).toMatch(/^Cannot start: MONGODB_URI: /m);
    expectCleanFailure(outcome, ['pa55', 'word@', 'user:']);
  });

  describe('with the port taken', () => {
    let squatter: NetServer;
    let port: number;
    beforeAll(async () => {
      squatter = createServer();
      await new Promise<void>((done) => squatter.listen(0, '127.0.0.1', done));
      port = (squatter.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((done) => squatter.close(() => done())));

    it('PORT in use: exit 69, names PORT, says to free it or choose another', async () => {
      const outcome = await runToExit({ PORT: String(port), OPENAI_API_KEY: SECRET_KEY });
      expect(outcome.code, outcome.stderr).toBe(EX_UNAVAILABLE);
      expect(outcome.stderr).toMatch(new RegExp(`^Cannot start: PORT: 127\\.0\\.0\\.1:${port} is already in use`, 'm'));
      expect(outcome.stderr).toMatch(/stop the process using it or set PORT to a free port/);
      expectCleanFailure(outcome, [SECRET_KEY]);
    });

    it('start:cluster with PORT in use: the same exit 69 and message, and its workers end with it', async () => {
      const outcome = await runToExit({ PORT: String(port), OPENAI_API_KEY: SECRET_KEY, CLUSTER_WORKERS: '2', MEMORY_ENABLED: 'false' }, 40_000, CLUSTER_MAIN);
      expect(outcome.code, outcome.stderr).toBe(EX_UNAVAILABLE);
      expect(outcome.stderr).toMatch(new RegExp(`^Cannot start: PORT: 127\\.0\\.0\\.1:${port} is already in use`, 'm'));
      expectCleanFailure(outcome, [SECRET_KEY]);
    });
  });

  it('HOST that does not resolve: exit 69, names HOST', async () => {
    const outcome = await runToExit({ HOST: 'gateway.invalid', OPENAI_API_KEY: SECRET_KEY });
    expect(outcome.code, outcome.stderr).toBe(EX_UNAVAILABLE);
    expect(outcome.stderr).toMatch(/^Cannot start: HOST: gateway\.invalid does not resolve to an address/m);
    expectCleanFailure(outcome, [SECRET_KEY]);
  });

  it('OPENAI_BASE_URL at a closed port and no DEFAULT_MODEL: exit 78, names OPENAI_BASE_URL and DEFAULT_MODEL', async () => {
    const port = await closedPort();
    const outcome = await runToExit({ OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_API_KEY: SECRET_KEY });
    expect(outcome.code, outcome.stderr).toBe(EX_CONFIG);
    expect(outcome.stderr).toMatch(new RegExp(`OPENAI_BASE_URL: could not list the models at http://127\\.0\\.0\\.1:${port}/v1/models \\(ECONNREFUSED\\)`));
    expect(outcome.stderr).toMatch(/set DEFAULT_MODEL=openai:<model>/);
    expectCleanFailure(outcome, [SECRET_KEY]);
  });

  it('OPENAI_BASE_URL with credentials (a proxy with basic auth) that cannot be asked: exit 78, names OPENAI_BASE_URL, the password is never printed', async () => {
    // MONGODB_URI failures hide the URI's credentials; the model lookup must too.
    const port = await closedPort();
    const outcome = await runToExit({ OPENAI_BASE_URL: `http://proxyuser:pr0xy-pa55@127.0.0.1:${port}/v1`, OPENAI_API_KEY: SECRET_KEY });
    expect(outcome.code, outcome.stderr).toBe(EX_CONFIG);
    expect(outcome.stderr).toMatch(/OPENAI_BASE_URL: /);
    expect(outcome.stderr).toMatch(/DEFAULT_MODEL/);
    expectCleanFailure(outcome, [SECRET_KEY, 'pr0xy-pa55']);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The default model follows the configured providers
// ---------------------------------------------------------------------------------------------

const STANDIN_KEY = 'sk-standin-startup-key';
const STANDIN_TOKENS = ['Served', ' by', ' the', ' default'];

describe('the default model follows the configured providers', () => {
  it('OPENAI_BASE_URL and no DEFAULT_MODEL: the first model the server lists is the default (real entry: log line, /readyz, a turn with no model)', async () => {
    const standin = await startOpenAIStandin({ apiKey: STANDIN_KEY, models: ['llama3.2:1b', 'gpt-4o-mini', 'qwen2.5'] });
    standin.setScript(() => ({ tokens: [...STANDIN_TOKENS] }));
    const entry = spawnEntry({ OPENAI_API_KEY: STANDIN_KEY, OPENAI_BASE_URL: standin.url, LOG_LEVEL: 'info', PROVIDER_MAX_RETRIES: '0' });
    try {
      const base = `http://127.0.0.1:${await entry.port()}`;
      // The lookup asked the compatible server with the key.
      const listing = standin.requests.find((r) => r.method === 'GET' && r.path === '/v1/models');
      expect(listing?.headers.authorization).toBe(`Bearer ${STANDIN_KEY}`);
      expect(entry.stdout()).toContain('no DEFAULT_MODEL set, so requests without a model use openai:llama3.2:1b');

      const ready = (await (await fetch(`${base}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ defaultModel: 'openai:llama3.2:1b', providers: expect.arrayContaining(['openai']) });

      const events = await readSse(await postChat(base, { message: 'which model are you?' }));
      expect(contentOf(events)).toBe(STANDIN_TOKENS.join(''));
      expect(events.at(-1)).toMatchObject({ done: true });
      const completions = standin.requests.filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions');
      expect(completions).toHaveLength(1);
      expect(asRecord(completions[0]!.body)?.model).toBe('llama3.2:1b');
      expect(entry.stdout() + entry.stderr()).not.toContain(STANDIN_KEY);
    } finally {
      await stopEntry(entry);
      await standin.close();
    }
  });

  it('GEMINI_API_KEY and no DEFAULT_MODEL: a turn with no model reaches Gemini as gemini-2.5-flash', async () => {
    const standin = await startGeminiStandin({ apiKey: STANDIN_KEY });
    standin.setScript(() => ({ tokens: [...STANDIN_TOKENS] }));
    const gw = await startGateway({ GEMINI_API_KEY: STANDIN_KEY, GEMINI_BASE_URL: standin.url, PROVIDER_MAX_RETRIES: '0' });
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ defaultModel: 'gemini-2.5-flash', providers: expect.arrayContaining(['gemini']) });
      const events = await readSse(await postChat(gw.url, { message: 'which model are you?' }));
      expect(contentOf(events)).toBe(STANDIN_TOKENS.join(''));
      const generate = standin.requests.filter((r) => r.method === 'POST' && /:streamGenerateContent$/.test(r.path));
      expect(generate).toHaveLength(1);
      expect(generate[0]!.path).toMatch(/\/models\/gemini-2\.5-flash:streamGenerateContent$/);
    } finally {
      await gw.destroy();
      await standin.close();
    }
  });

  it('OPENAI_API_KEY alone (no base URL): the default is gpt-4o-mini, and start-up asks no server', async () => {
    const gw = await startGateway({ OPENAI_API_KEY: SECRET_KEY });
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ defaultModel: 'gpt-4o-mini', providers: expect.arrayContaining(['openai']) });
    } finally {
      await gw.destroy();
    }
  });

  it('no provider at all: the default is local', async () => {
    const gw = await startGateway({});
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toMatchObject({ status: 'ready', defaultModel: 'local', providers: ['local'] });
    } finally {
      await gw.destroy();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Zero-config serves any model name with the local model
// ---------------------------------------------------------------------------------------------

describe('zero-config', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({});
  });
  afterEach(closeAllClients);
  afterAll(() => gw.destroy());

  it('seed 003 asking for gpt-4 on /ai gets the local model, which says it answers in place of "gpt-4"', async () => {
    const socket = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(socket);
    await connected(socket);
    socket.emit('chat:start', { message: 'Explain quantum computing', model: 'gpt-4' });
    const outcome = await log.first(['chat:end', 'chat:error'], 10_000);
    expect(outcome.name, JSON.stringify(outcome.payload)).toBe('chat:end');
    expect(outcome.payload).toMatchObject({ model: 'local', finishReason: 'stop' });
    const text = log.all('chat:message').map((m) => m.content).join('');
    expect(text).toContain('offline development model answering in place of "gpt-4"');
    expect(text).toContain('You said: "Explain quantum computing".');
  });
});

// ---------------------------------------------------------------------------------------------
// 4. DATA_DIR is private
// ---------------------------------------------------------------------------------------------

const modeOf = (p: string) => statSync(p).mode & 0o777;

describe('DATA_DIR is private', () => {
  it('a fresh DATA_DIR is 0700; gateway.sqlite, its -wal/-shm and jwt-secret are 0600 (real entry, umask 022)', async () => {
    const cwd = scratch();
    const dataDir = join(cwd, 'fresh', 'data');
    const entry = spawnEntry({ DATA_DIR: dataDir, LOG_LEVEL: 'info' }, cwd);
    try {
      const base = `http://127.0.0.1:${await entry.port()}`;
      const events = await readSse(await postChat(base, { message: 'write something to the database' }));
      expect(events.at(-1)).toMatchObject({ done: true });
      expect(modeOf(dataDir).toString(8)).toBe('700');
      for (const file of ['gateway.sqlite', 'gateway.sqlite-wal', 'gateway.sqlite-shm', 'jwt-secret']) {
        const path = join(dataDir, file);
        expect(existsSync(path), file).toBe(true);
        expect(`${file} ${modeOf(path).toString(8)}`).toBe(`${file} 600`);
      }
      // Nothing was readable by others to begin with, so there is nothing to warn about.
      expect(entry.stdout()).not.toContain('DATA_DIR was readable by others');
    } finally {
      await stopEntry(entry);
    }
  });

  it('a pre-existing 0755 DATA_DIR (with 0644 files) is made 0700 at start, with a warning', async () => {
    const cwd = scratch();
    const dataDir = join(cwd, 'data');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    writeFileSync(join(dataDir, 'jwt-secret'), 'an-old-generated-secret-that-is-long-enough-0123456789\n');
    chmodSync(join(dataDir, 'jwt-secret'), 0o644);
    writeFileSync(join(dataDir, 'gateway.sqlite'), ''); // an empty file is an empty SQLite database
    chmodSync(join(dataDir, 'gateway.sqlite'), 0o644);
    expect(modeOf(dataDir).toString(8)).toBe('755');

    const entry = spawnEntry({ DATA_DIR: dataDir, LOG_LEVEL: 'info' }, cwd);
    try {
      await entry.port();
      expect(modeOf(dataDir).toString(8)).toBe('700');
      expect(modeOf(join(dataDir, 'jwt-secret')).toString(8)).toBe('600');
      expect(modeOf(join(dataDir, 'gateway.sqlite')).toString(8)).toBe('600');
      const warning = entry
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((r) => typeof r.msg === 'string' && r.msg.startsWith('DATA_DIR was readable by others'));
      expect(warning).toMatchObject({ level: 40, dir: dataDir, msg: expect.stringContaining('0700') });
    } finally {
      await stopEntry(entry);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 5. CORS: one origin rule, and refusals are logged
// ---------------------------------------------------------------------------------------------

interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function capturingLogger(records: LogRecord[], bindings: Record<string, unknown> = {}): Logger {
  const at = (level: LogRecord['level']) => (obj: object, msg?: string) => void records.push({ level, obj: { ...bindings, ...obj }, msg });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (more) => capturingLogger(records, { ...bindings, ...more }) };
}

interface CapturingGateway {
  url: string;
  port: number;
  server: NodeServer;
  records: LogRecord[];
  destroy(): Promise<void>;
}

async function startCapturing(env: Env): Promise<CapturingGateway> {
  const dataDir = tempDataDir();
  const records: LogRecord[] = [];
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'debug', SHUTDOWN_GRACE_MS: '500', ...env, DATA_DIR: dataDir });
  const server = await createNodeServer(config, { logger: capturingLogger(records) });
  const { port } = await server.listen();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    records,
    destroy: async () => {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const refusals = (records: LogRecord[], origin?: string) =>
  records.filter((r) => r.level === 'warn' && typeof r.msg === 'string' && r.msg.includes('CORS_ORIGIN') && (origin === undefined || r.obj.origin === origin));

async function originHeaders(url: string, origin: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), Origin: origin } });
  await res.arrayBuffer();
  return { status: res.status, allowOrigin: res.headers.get('access-control-allow-origin'), credentials: res.headers.get('access-control-allow-credentials') };
}

/**
 * Opens /v1/realtime with an Origin and no token: 403 when the origin is refused (before any
 * route runs), 401 when it is allowed and the route itself asks for a token.
 */
function realtimeUpgrade(port: number, origin: string): Promise<number> {
  return new Promise((done, fail) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`, { origin });
    ws.on('unexpected-response', (_req, res) => {
      done(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('upgrade', () => {
      done(101);
      ws.terminate();
    });
    ws.on('error', (err) => fail(err));
  });
}

describe('CORS with CORS_ORIGIN unset: loopback origins on any port', () => {
  let gw: CapturingGateway;
  beforeAll(async () => {
    gw = await startCapturing({});
  });
  afterEach(closeAllClients);
  afterAll(() => gw.destroy());

  it('localhost, 127.0.0.1 and [::1] origins on any port are echoed with credentials, also on a preflight', async () => {
    const from = gw.records.length; // this test's lines: others here log refusals of their own origins
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:8080', 'http://[::1]:9000']) {
      expect(await originHeaders(`${gw.url}/healthz`, origin), origin).toEqual({ status: 200, allowOrigin: origin, credentials: 'true' });
      const preflight = await originHeaders(`${gw.url}/api/v2/ai/chat/stream`, origin, {
        method: 'OPTIONS',
        headers: { 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
      });
      expect(preflight, origin).toEqual({ status: 204, allowOrigin: origin, credentials: 'true' });
    }
    expect(refusals(gw.records.slice(from))).toEqual([]);
  });

  it('http://evil.example is not echoed; the refusal is logged once (per minute) naming CORS_ORIGIN and the origin', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await originHeaders(`${gw.url}/healthz`, 'http://evil.example');
      expect(res.allowOrigin).toBeNull();
    }
    const preflight = await originHeaders(`${gw.url}/api/v2/ai/chat/stream`, 'http://evil.example', {
      method: 'OPTIONS',
      headers: { 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.allowOrigin).toBeNull();
    const logged = refusals(gw.records, 'http://evil.example');
    expect(logged).toHaveLength(1);
    expect(logged[0]!.msg).toMatch(/add it to CORS_ORIGIN/);
    expect(logged[0]!.obj).toMatchObject({ origin: 'http://evil.example', allowed: expect.stringContaining('CORS_ORIGIN unset') });
    // Another refused origin gets its own record.
    await originHeaders(`${gw.url}/healthz`, 'https://other.example');
    expect(refusals(gw.records, 'https://other.example')).toHaveLength(1);
  });

  it('look-alike origins are not loopback: localhost.evil.example, 127.0.0.1.evil.example, a userinfo trick, a non-http scheme', async () => {
    for (const origin of ['http://localhost.evil.example', 'http://127.0.0.1.evil.example:8080', 'http://localhost@evil.example', 'file://localhost', 'null']) {
      expect((await originHeaders(`${gw.url}/healthz`, origin)).allowOrigin, origin).toBeNull();
    }
  });

  it('a request with no Origin (curl, a server) is served and is not logged as a refused browser origin', async () => {
    const res = await fetch(`${gw.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    // Only requests that carry an Origin can be refused ones (Socket.IO and the upgrades already treat "no Origin" so).
    expect(refusals(gw.records, '')).toEqual([]);
  });

  it('a Socket.IO websocket handshake from a refused origin is refused (and logged); a loopback origin connects', async () => {
    const refused = client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'http://socket-evil.example' } });
    await connectError(refused);
    expect(refused.connected).toBe(false);
    expect(refusals(gw.records, 'http://socket-evil.example')).toHaveLength(1);

    const polling = client(`${gw.url}/`, { transports: ['polling'], extraHeaders: { origin: 'http://socket-evil.example' } });
    await connectError(polling);
    // Not listed here, so refused; the CORS_ORIGIN=https://app.example gateway below lets it in.
    await connectError(client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'https://app.example' } }));

    const allowed = client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'http://localhost:5173' } });
    await connected(allowed);
  });

  it('the /v1/realtime upgrade follows the same rule', async () => {
    expect(await realtimeUpgrade(gw.port, 'http://evil.example')).toBe(403);
    expect(await realtimeUpgrade(gw.port, 'http://localhost:5173')).toBe(401);
  });
});

describe('CORS with CORS_ORIGIN=https://app.example', () => {
  let gw: CapturingGateway;
  beforeAll(async () => {
    gw = await startCapturing({ CORS_ORIGIN: 'https://app.example' });
  });
  afterEach(closeAllClients);
  afterAll(() => gw.destroy());

  it('the listed origin is allowed; loopback origins are refused and logged with the configured list', async () => {
    expect(await originHeaders(`${gw.url}/healthz`, 'https://app.example')).toEqual({ status: 200, allowOrigin: 'https://app.example', credentials: 'true' });
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:8080', 'http://[::1]:9000', 'http://app.example', 'https://app.example:8443']) {
      expect((await originHeaders(`${gw.url}/healthz`, origin)).allowOrigin, origin).toBeNull();
    }
    expect(refusals(gw.records, 'http://localhost:5173')).toHaveLength(1);
    expect(refusals(gw.records, 'http://localhost:5173')[0]!.obj).toMatchObject({ allowed: ['https://app.example'] });
  });

  it("the gateway's own origin (same as Host) is always allowed, on HTTP, Socket.IO and /v1/realtime", async () => {
    const own = `http://127.0.0.1:${gw.port}`;
    expect(await originHeaders(`${gw.url}/healthz`, own)).toEqual({ status: 200, allowOrigin: own, credentials: 'true' });
    await connected(client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: own } }));
    expect(await realtimeUpgrade(gw.port, own)).toBe(401);
    // Only the exact host:port is "own": the same host on another port is a different origin.
    expect((await originHeaders(`${gw.url}/healthz`, `http://127.0.0.1:${gw.port + 1}`)).allowOrigin).toBeNull();
    expect(refusals(gw.records, own)).toEqual([]);
  });

  it('Socket.IO: the listed origin connects over websocket, a loopback origin is refused', async () => {
    await connected(client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'https://app.example' } }));
    await connectError(client(`${gw.url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'http://localhost:5173' } }));
    await connectError(client(`${gw.url}/`, { transports: ['websocket'], extraHeaders: { origin: 'http://evil.example' } }));
    expect(await realtimeUpgrade(gw.port, 'http://localhost:5173')).toBe(403);
    expect(await realtimeUpgrade(gw.port, 'https://app.example')).toBe(401);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. Secure headers
// ---------------------------------------------------------------------------------------------

describe('secure headers', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({});
  });
  afterAll(() => gw.destroy());

  function expectSecureHeaders(res: Response, what: string) {
    expect(res.headers.get('x-content-type-options'), what).toBe('nosniff');
    expect(res.headers.get('x-frame-options'), what).toMatch(/^(DENY|SAMEORIGIN)$/);
    expect(res.headers.get('referrer-policy'), what).toBeTruthy();
    expect(res.headers.get('cross-origin-opener-policy'), what).toBe('same-origin');
  }

  it('on JSON routes, errors and 404s', async () => {
    const cases: [string, Promise<Response>][] = [
      ['healthz', fetch(`${gw.url}/healthz`)],
      ['readyz', fetch(`${gw.url}/readyz`)],
      ['404', fetch(`${gw.url}/nowhere`)],
      ['400', postChat(gw.url, '{not json')],
      ['401', fetch(`${gw.url}/api/v2/auth/me`, { headers: { Authorization: 'Bearer nope' } })],
    ];
    for (const [what, pending] of cases) {
      const res = await pending;
      await res.arrayBuffer();
      expectSecureHeaders(res, what);
    }
  });

  it('on HEAD requests too, with the request id and CORS of the GET (ok, 401 and 404)', async () => {
    const origin = 'http://localhost:5173';
    for (const path of ['/healthz', '/api/v2/conversations', '/nowhere']) {
      const [head, get] = await Promise.all(['HEAD', 'GET'].map((method) => fetch(`${gw.url}${path}`, { method, headers: { Origin: origin } })));
      await get!.arrayBuffer();
      expect(head!.status, path).toBe(get!.status);
      expect(await head!.text(), path).toBe('');
      expectSecureHeaders(head!, `HEAD ${path}`);
      expect(head!.headers.get('x-request-id'), path).toMatch(/^[\w-]{8,}$/);
      expect(head!.headers.get('access-control-allow-origin'), path).toBe(origin);
      expect(head!.headers.get('content-type'), path).toBe(get!.headers.get('content-type'));
    }
  });

  it('on the SSE chat response', async () => {
    const res = await postChat(gw.url, { message: 'hello' });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expectSecureHeaders(res, 'sse');
    expect(contentOf(await readSse(res))).toContain('You said: "hello".');
  });
});
