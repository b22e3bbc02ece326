/**
 * The official `openai` package running in a real browser page (Debian's Chromium) on another
 * origin than the gateway, as a front end that points its SDK at `/v1` does: the SDK's own
 * ES modules, served as they are from node_modules (no bundler), with `dangerouslyAllowBrowser`.
 * Its requests carry headers of its own (`X-Stainless-*`), so each is preceded by a CORS
 * preflight that must allow them; the streamed reply must be the one a Node client gets.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import OpenAI from 'openai';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register, type Account } from '../helpers/accounts.js';
import { chromiumExecutable, launchChromium } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const SDK_DIR = join(process.cwd(), 'node_modules', 'openai');
const PAGE = `<!doctype html><meta charset="utf-8"><title>openai in the browser</title><p>front end</p>
<script type="module">import OpenAI from '/openai/index.mjs'; window.OpenAI = OpenAI;</script>`;

/** The front end's own origin: a page, and the SDK's .mjs files under /openai/. */
async function startFrontEnd(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
      return;
    }
    const file = normalize(path.slice('/openai/'.length));
    if (!path.startsWith('/openai/') || file.startsWith('..') || !file.endsWith('.mjs')) {
      res.writeHead(404).end();
      return;
    }
    readFile(join(SDK_DIR, file)).then(
      (body) => res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  // `localhost`, the gateway `127.0.0.1`: two origins, so every request is a CORS request.
  return { url: `http://localhost:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('the openai SDK in a browser page on another origin', () => {
  let gw: TestGateway;
  let front: Awaited<ReturnType<typeof startFrontEnd>>;
  let browser: Browser;
  let alice: Account;

  beforeAll(async () => {
    chromiumExecutable();
    gw = await startGateway({ MEMORY_ENABLED: 'false' });
    front = await startFrontEnd();
    browser = await launchChromium();
    alice = await register(gw.url, 'browser-sdk@example.com');
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await front?.close();
    await gw?.destroy();
  });

  it('streams a chat completion, lists models and gets a coded error, each after a preflight that allows the SDK\'s headers', async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(front.url);
    await page.waitForFunction(() => 'OpenAI' in window, undefined, { timeout: 10_000 });

    const messages = [{ role: 'user' as const, content: 'Say something about browsers' }];
    const result = await page.evaluate(
      async ({ baseURL, apiKey, messages }) => {
        const SDK = (window as unknown as { OpenAI: typeof OpenAI }).OpenAI;
        const client = new SDK({ apiKey, baseURL, dangerouslyAllowBrowser: true, maxRetries: 0 });
        let streamed = '';
        const stream = await client.chat.completions.create({ model: 'local', stream: true, messages });
        for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
        const models = (await client.models.list()).data.map((m) => m.id);
        let error: { status: number | undefined; code: unknown } | undefined;
        try {
          await client.chat.completions.create({ model: 'not a model name!', messages });
        } catch (err) {
          const e = err as { status?: number; code?: unknown; error?: { code?: unknown } };
          error = { status: e.status, code: e.code ?? e.error?.code };
        }
        return { streamed, models, error };
      },
      { baseURL: `${gw.url}/v1`, apiKey: alice.token, messages },
    );

    // The same request from Node (no CORS) gives the same reply: the deterministic local model.
    const node = new OpenAI({ apiKey: alice.token, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const expected = (await node.chat.completions.create({ model: 'local', messages })).choices[0]?.message.content;
    expect(result.streamed.length).toBeGreaterThan(0);
    expect(result.streamed).toBe(expected);
    expect(result.models).toContain('local');
    expect(result.error).toEqual({ status: 400, code: 'INVALID_MODEL' });
    expect(pageErrors).toEqual([]);

    // Chromium sent a preflight for each of the two URLs (the SDK's X-Stainless-* headers are
    // not CORS-safelisted; the second request to a URL reuses the first's, Access-Control-Max-Age),
    // each answered 204: without the headers allowed the SDK gets only "Connection error."
    // (APIConnectionError), which is what this test saw before.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const preflights = Number(/gateway_http_requests_total\{method="OPTIONS",route="preflight",status="204"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    expect(preflights).toBeGreaterThanOrEqual(2);
    await page.close();
  }, 60_000);

  it('a preflight names headers that are not header names: the fixed list is answered, not the text', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { Origin: front.url, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-ok, bad header, y' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-headers')).toBe('Content-Type,Authorization,X-Request-Id,X-Conversation-Id');
    const tooMany = Array.from({ length: 100 }, (_, i) => `x-h${i}`).join(',');
    const many = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { Origin: front.url, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': tooMany },
    });
    expect(many.headers.get('access-control-allow-headers')).toBe('Content-Type,Authorization,X-Request-Id,X-Conversation-Id');
    // A refused origin gets no Access-Control-Allow-Origin, whatever headers it asks for: the browser stops there.
    const refused = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' },
    });
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
  });
});
