/**
 * The Workers entry's handling of its bindings, called as workerd calls it (`fetch(request, env,
 * ctx)`), one fresh module (one isolate) per case. `worker.test.ts` runs the same entry under
 * `wrangler dev`.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

type WorkerEntry = { fetch(request: Request, env: Record<string, unknown>, ctx: unknown): Response | Promise<Response> };

const ctx = { waitUntil: () => {}, passThroughOnException: () => {} };

async function freshWorker(): Promise<WorkerEntry> {
  vi.resetModules();
  return ((await import('../../src/worker.js')) as { default: WorkerEntry }).default;
}

function chat(headers: Record<string, string> = {}): Request {
  return new Request('http://worker.test/api/v2/ai/chat/stream', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': '203.0.113.9', ...headers },
    body: JSON.stringify({ message: 'hi' }),
  });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('Workers bindings', () => {
  it('[vars] written as TOML booleans and numbers apply, as quoted ones do', async () => {
    const signedInOnly = await freshWorker();
    const refused = await signedInOnly.fetch(chat(), { AUTH_REQUIRED: true }, ctx);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ code: 'UNAUTHORIZED' });

    const limited = await freshWorker();
    const first = await limited.fetch(chat(), { RATE_LIMIT_ANON: 1 }, ctx);
    expect(first.status).toBe(200);
    await first.text();
    const second = await limited.fetch(chat(), { RATE_LIMIT_ANON: 1 }, ctx);
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ code: 'RATE_LIMIT' });
  });

  it('an X-Forwarded-For from the client picks no budget of its own, even with TRUST_PROXY set: the address is CF-Connecting-IP', async () => {
    const warn = vi.spyOn(console, 'error').mockImplementation(() => {}); // the console logger writes warnings there
    const worker = await freshWorker();
    const env = { TRUST_PROXY: 'true', RATE_LIMIT_ANON: '1' };
    const first = await worker.fetch(chat({ 'x-forwarded-for': '1.1.1.1' }), env, ctx);
    expect(first.status).toBe(200);
    await first.text();
    const spoofed = await worker.fetch(chat({ 'x-forwarded-for': '2.2.2.2' }), env, ctx);
    expect(spoofed.status).toBe(429);
    await spoofed.text();
    expect(JSON.stringify(warn.mock.calls)).toContain('TRUST_PROXY does not apply on Workers');
  });

  it('invalid bindings answer every request with a coded 503 (no stack), named once in the log', async () => {
    const logged: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void logged.push(args.map(String).join(' ')));
    const worker = await freshWorker();
    const env = { RATE_LIMIT_USER: '-1', OPENAI_API_KEY: 'sk-secret-value' };
    for (const path of ['/healthz', '/api/v2/ai/chat/stream']) {
      const res = await worker.fetch(new Request(`http://worker.test${path}`), env, ctx);
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ error: 'The server is misconfigured', code: 'INTERNAL' });
      expect(text).not.toMatch(/RATE_LIMIT_USER|at |\.ts/);
    }
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('RATE_LIMIT_USER');
    expect(logged[0]).not.toContain('sk-secret-value');
  });

  it('the memory routes say memory is not available on Workers, not that MEMORY_ENABLED=false was set', async () => {
    const worker = await freshWorker();
    const env = { JWT_SECRET: 'w'.repeat(48) };
    const registered = await worker.fetch(
      new Request('http://worker.test/api/v2/auth/register', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': '203.0.113.10' },
        body: JSON.stringify({ email: 'worker-memory@example.com', password: 'correct horse battery' }),
      }),
      env,
      ctx,
    );
    expect(registered.status).toBe(201);
    const { token } = (await registered.json()) as { token: string };
    const res = await worker.fetch(new Request('http://worker.test/api/v2/memory', { headers: { authorization: `Bearer ${token}` } }), env, ctx);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: string; code: string };
    expect(body.code).toBe('NOT_FOUND');
    expect(body.error).toMatch(/not available on this deployment/);
    expect(body.error).not.toMatch(/MEMORY_ENABLED/);
  });
});
