/**
 * `/openapi.json` is a valid OpenAPI 3.1 document covering every route the app serves, built
 * from the very zod schemas the routes validate with; `/docs` serves Swagger UI on it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { OpenAPIV3_1 } from 'openapi-types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

describe('OpenAPI', () => {
  let gw: TestGateway;
  let doc: OpenAPIV3_1.Document;

  beforeAll(async () => {
    gw = await startGateway();
    const res = await fetch(`${gw.url}/openapi.json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as OpenAPIV3_1.Document;
  });
  afterAll(() => gw.destroy());

  it('is a valid OpenAPI 3.1 document', async () => {
    expect(doc.openapi).toBe('3.1.0');
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
  });

  it('documents every route the app serves, with its method', () => {
    const served = gw.server.app.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z]+)/g, '{$1}').replace(/(.)\/$/, '$1')}`);
    expect(served.length).toBeGreaterThan(20);
    const documented = new Set(Object.entries(doc.paths ?? {}).flatMap(([path, item]) => Object.keys(item ?? {}).map((method) => `${method} ${path}`)));
    const missing = [...new Set(served)].filter((r) => !documented.has(r));
    expect(missing).toEqual([]);
  });

  it('every /v1 operation, the realtime upgrade included, needs a signed-in user (no anonymous security entry), as the routes do', () => {
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      if (!path.startsWith('/v1/')) continue;
      for (const [method, op] of Object.entries(item ?? {})) {
        const security = (op as OpenAPIV3_1.OperationObject).security ?? [];
        expect(security.length, `${method} ${path}`).toBeGreaterThan(0);
        expect(security.some((s) => Object.keys(s).length === 0), `${method} ${path}`).toBe(false);
      }
    }
  });

  it('request bodies come from the validating schemas (limits included)', async () => {
    const chat = doc.paths!['/api/v2/ai/chat/stream']!.post!.requestBody as OpenAPIV3_1.RequestBodyObject;
    const schema = chat.content['application/json']!.schema as OpenAPIV3_1.SchemaObject;
    expect(schema.required).toContain('message');
    expect((schema.properties!.message as OpenAPIV3_1.SchemaObject).maxLength).toBe(gw.server.services.config.chat.maxMessageChars);
    const completion = doc.paths!['/v1/chat/completions']!.post!.requestBody as OpenAPIV3_1.RequestBodyObject;
    expect((completion.content['application/json']!.schema as OpenAPIV3_1.SchemaObject).required).toEqual(expect.arrayContaining(['model', 'messages']));

    // What the document says is refused, the route refuses.
    const tooLong = 'x'.repeat(gw.server.services.config.chat.maxMessageChars + 1);
    const res = await fetch(`${gw.url}/api/v2/ai/chat/stream`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ message: tooLong }) });
    expect(res.status).toBe(400);
  });

  it('/docs serves Swagger UI pointed at /openapi.json: one exact release of its files, each run only if it is that file (SRI)', async () => {
    const res = await fetch(`${gw.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const csp = res.headers.get('content-security-policy') ?? '';
    // Scripts from this origin and the release's one file: not the rest of a CDN that serves every package.
    expect(csp).toContain("script-src 'self' https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js;");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*'unsafe-(inline|eval)'/);
    const html = await res.text();
    // No inline script: the page starts Swagger UI from a file of this origin.
    expect([...html.matchAll(/<script\b([^>]*)>/g)].every((m) => /\bsrc="/.test(m[1]!))).toBe(true);
    const init = await fetch(`${gw.url}/docs/init.js`);
    expect(init.headers.get('content-type')).toContain('text/javascript');
    expect(await init.text()).toContain("SwaggerUIBundle({ url: '/openapi.json'");
    // Its files run in this origin: one exact release of them, never "latest", each with the
    // hash of that release's file as npm has it (the installed swagger-ui-dist).
    const tags = [...html.matchAll(/<(?:script|link)\b[^>]*(?:src|href)="(https:[^"]+)"[^>]*>/g)];
    expect(tags.map((t) => t[1])).toEqual([
      'https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui.css',
      'https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js',
    ]);
    expect(JSON.parse(readFileSync('node_modules/swagger-ui-dist/package.json', 'utf8')).version).toBe('5.35.0');
    for (const [tag, url] of tags) {
      const file = readFileSync(`node_modules/swagger-ui-dist/${url!.split('/').pop()}`);
      expect(tag).toContain(`integrity="sha384-${createHash('sha384').update(file).digest('base64')}"`);
      expect(tag).toContain('crossorigin="anonymous"');
    }
  });
});
