/**
 * Names people give things (conversation titles, API key names) are stored as they can be
 * shown: no control, bidirectional-override or zero-width characters, well-formed Unicode. And a
 * page cursor the server did not give out is refused with BAD_REQUEST on every paged route,
 * instead of being answered with the first page as if none had been sent.
 */
import { describe, expect, it } from 'vitest';
import { bearer, register } from '../helpers/accounts.js';
import { gatewayForSuite } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';

describe('labels and page cursors', () => {
  const gw = gatewayForSuite({ RATE_LIMIT_USER: '1000' });

  it('a rename or an API key name keeps what can be shown; one with nothing to show is refused', async () => {
    const ada = await register(gw().url, 'labels@example.com');
    const json = { ...bearer(ada), 'Content-Type': 'application/json' };
    await readSse(await postChat(gw().url, { message: 'hello \u202eevil\u0000 there', sessionId: 'labels-1', maxTokens: 2 }, bearer(ada)));
    const listed = (await (await fetch(`${gw().url}/api/v2/conversations`, { headers: bearer(ada) })).json()) as { conversations: { id: string; title: string }[] };
    expect(listed.conversations.find((c) => c.id === 'labels-1')!.title).toBe('hello evil there');

    const rename = (title: string) => fetch(`${gw().url}/api/v2/conversations/labels-1`, { method: 'PATCH', headers: json, body: JSON.stringify({ title }) });
    const renamed = await rename('a\u0000b\u001b[31mred\u202eevil\nline2\r');
    expect(renamed.status).toBe(200);
    expect(((await renamed.json()) as { conversation: { title: string } }).conversation.title).toBe('ab[31mredevil line2');
    const blank = await rename('\u200b\u2060\u202e');
    expect(blank.status).toBe(400);
    expect(await blank.json()).toMatchObject({ code: 'BAD_REQUEST', error: expect.stringMatching(/title:? must not be empty/) });
    const surrogate = await rename('x\ud800y');
    expect(((await surrogate.json()) as { conversation: { title: string } }).conversation.title).toBe('x\ufffdy');

    const key = (name: string) => fetch(`${gw().url}/api/v2/keys`, { method: 'POST', headers: json, body: JSON.stringify({ name }) });
    const made = await key('CI\u0000 bot\u202e');
    expect(made.status).toBe(201);
    expect(((await made.json()) as { name: string }).name).toBe('CI bot');
    expect((await key('\u0000\u001b\u202e')).status).toBe(400);
  });

  it('a cursor the server did not give out is refused on every paged route; one it gave out works', async () => {
    const bob = await register(gw().url, 'cursors@example.com');
    for (let i = 0; i < 3; i++) await readSse(await postChat(gw().url, { message: `turn ${i}`, sessionId: `cursor-${i}`, maxTokens: 2 }, bearer(bob)));
    const get = (path: string) => fetch(`${gw().url}${path}`, { headers: bearer(bob) });
    for (const path of ['/api/v2/conversations?cursor=garbage', '/api/v2/conversations/cursor-0/messages?limit=1&cursor=garbage', '/api/v2/realtime/sessions?cursor=not-a-cursor', '/api/v2/memory?limit=1&cursor=garbage']) {
      const res = await get(path);
      expect(res.status, path).toBe(400);
      expect(await res.json(), path).toMatchObject({ code: 'BAD_REQUEST', error: expect.stringMatching(/cursor/) });
    }
    const first = (await (await get('/api/v2/conversations?limit=2')).json()) as { conversations: unknown[]; nextCursor: string };
    expect(first.conversations).toHaveLength(2);
    const next = await get(`/api/v2/conversations?limit=2&cursor=${encodeURIComponent(first.nextCursor)}`);
    expect(next.status).toBe(200);
    expect(((await next.json()) as { conversations: unknown[] }).conversations).toHaveLength(1);
    const messages = (await (await get('/api/v2/conversations/cursor-0/messages?limit=1')).json()) as { nextCursor: string };
    expect((await get(`/api/v2/conversations/cursor-0/messages?limit=1&cursor=${encodeURIComponent(messages.nextCursor)}`)).status).toBe(200);
  });
});
