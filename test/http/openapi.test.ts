/**
 * `/openapi.json` is a valid OpenAPI 3.1 document covering every route the app serves, built
 * from the very zod schemas the routes validate with; `/docs` serves Swagger UI on it.
 */
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

  it('/docs serves Swagger UI pointed at /openapi.json', async () => {
    const res = await fetch(`${gw.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const html = await res.text();
    expect(html).toContain('SwaggerUIBundle');
    expect(html).toContain('/openapi.json');
    // Its scripts run in this origin: one exact release of them, never "latest".
    const sources = [...html.matchAll(/(?:src|href)="(https:[^"]+)"/g)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(source).toMatch(/\/swagger-ui-dist@5\.35\.0\//);
  });
});
