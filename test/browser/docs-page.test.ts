/**
 * /docs in a real browser (Debian's Chromium through playwright-core): Swagger UI's files come
 * from a loopback copy of the swagger-ui-dist release (the installed devDependency, served with
 * CORS as jsDelivr serves it; DOCS_ASSETS_URL points the gateway at it). With the right files
 * Swagger UI renders the gateway's document under the page's Content-Security-Policy, nothing
 * refused; with a file changed by one byte the browser refuses to run it (SRI), so a CDN or
 * mirror that serves anything else cannot run code in the gateway's origin.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { chromiumExecutable, launchChromium } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const DIST = 'node_modules/swagger-ui-dist';

/** A static file server for the two files, as a CDN serves them (CORS for `crossorigin`). */
async function startAssetServer(tamper: boolean): Promise<{ url: string; served: string[]; close(): Promise<void> }> {
  const served: string[] = [];
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '').split('?')[0]!;
    // Anything else a CDN serves on the same origin (another package, a GitHub file).
    if (url.startsWith('/gh/attacker/')) {
      res.writeHead(200, { 'Content-Type': 'text/javascript', 'Access-Control-Allow-Origin': '*' }).end('window.evil = true;');
      return;
    }
    const name = url.split('/').pop()!;
    const type = name.endsWith('.css') ? 'text/css' : name.endsWith('.js') ? 'text/javascript' : undefined;
    if (!type || !['swagger-ui.css', 'swagger-ui-bundle.js'].includes(name)) {
      res.writeHead(404).end();
      return;
    }
    served.push(name);
    let body = readFileSync(`${DIST}/${name}`);
    if (tamper && name.endsWith('.js')) body = Buffer.concat([body, Buffer.from('\nwindow.tampered = true;\n')]);
    res.writeHead(200, { 'Content-Type': type, 'Access-Control-Allow-Origin': '*', 'Content-Length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/npm/swagger-ui-dist@5.35.0`, served, close: () => new Promise((r) => server.close(() => r())) };
}

describe('/docs in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    chromiumExecutable();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function open(tamper: boolean) {
    const assets = await startAssetServer(tamper);
    const gw: TestGateway = await startGateway({ DOCS_ASSETS_URL: assets.url });
    const page = await browser.newPage();
    const console: string[] = [];
    page.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
    await page.goto(`${gw.url}/docs`);
    return {
      page,
      console,
      assets,
      close: async () => {
        await page.close();
        await gw.destroy();
        await assets.close();
      },
    };
  }

  it('renders the gateway’s document from the release’s files, under its policy, nothing refused', async () => {
    const { page, console, assets, close } = await open(false);
    try {
      await page.waitForSelector('.swagger-ui .info .title', { timeout: 20_000 });
      expect(await page.textContent('.swagger-ui .info .title')).toContain('AI chat gateway');
      // The operations are listed (the document was fetched from this origin).
      await page.waitForSelector('.opblock-summary-path[data-path="/api/v2/ai/chat/stream"]', { timeout: 10_000 });
      expect(assets.served.sort()).toEqual(['swagger-ui-bundle.js', 'swagger-ui.css']);
      expect(console.filter((line) => /Content Security Policy|Refused|integrity/i.test(line))).toEqual([]);
      expect(console.filter((line) => line.startsWith('pageerror'))).toEqual([]);
    } finally {
      await close();
    }
  });

  it('runs no other script of the assets’ origin: the policy names the release’s file, not the whole CDN', async () => {
    const { page, console, assets, close } = await open(false);
    try {
      await page.waitForSelector('.swagger-ui .info .title', { timeout: 20_000 });
      const origin = new URL(assets.url).origin;
      await page.addScriptTag({ url: `${origin}/gh/attacker/x@1/evil.js` }).catch(() => undefined);
      expect(await page.evaluate(() => (window as unknown as { evil?: boolean }).evil)).toBeUndefined();
      expect(console.some((line) => /Content Security Policy/i.test(line))).toBe(true);
    } finally {
      await close();
    }
  });

  it('refuses to run a file that is not the release’s (one byte added): no Swagger UI, nothing of it ran', async () => {
    const { page, console, assets, close } = await open(true);
    try {
      await page.waitForLoadState('load');
      await new Promise((r) => setTimeout(r, 500));
      expect(assets.served).toContain('swagger-ui-bundle.js');
      expect(await page.evaluate(() => (window as unknown as { tampered?: boolean }).tampered)).toBeUndefined();
      expect(await page.$('.swagger-ui .info')).toBeNull();
      expect(console.some((line) => /integrity/i.test(line))).toBe(true);
    } finally {
      await close();
    }
  });
});
