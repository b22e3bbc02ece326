/**
 * Anonymous clients own their conversations (PROTOCOLS.md section 0): by the signed
 * anonymous-session cookie the server hands out, else by IP. Before this, every anonymous
 * caller matched every anonymous conversation.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ANONYMOUS_COOKIE } from '../../src/auth/anonymous-sessions.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { contentOf } from '../helpers/sse.js';
import { EventLog, client, closeAllClients, connected, type AiClient, type DefaultClient } from '../socket/socket-harness.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A chat turn over SSE from a chosen loopback address, optionally carrying cookies. */
function sseFrom(url: string, localAddress: string, body: object, cookie?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request(
      `${url}/api/v2/ai/chat/stream`,
      {
        method: 'POST',
        localAddress,
        agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...(cookie ? { Cookie: cookie } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The `data:` of each SSE event (events carry an `id:` line first since streams became resumable). */
const events = (body: string) =>
  body
    .split('\n\n')
    .map((f) => f.split('\n').find((line) => line.startsWith('data: ')))
    .filter((line): line is string => line !== undefined)
    .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);

const anonymousCookie = (headers: http.IncomingHttpHeaders): string | undefined =>
  (headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!).find((c) => c.startsWith(`${ANONYMOUS_COOKIE}=`));

describe('anonymous clients own their conversations', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ RATE_LIMIT_ANON: '1000' });
  });
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
  });

  it('SSE: another IP using the same sessionId gets its own conversation, with no trace of the first', async () => {
    const first = await sseFrom(gw.url, '127.0.0.2', { message: 'SECRET launch code 4711', sessionId: 's1' });
    expect(events(first.body).at(-1)).toMatchObject({ done: true, sessionId: 's1' });
    const second = await sseFrom(gw.url, '127.0.0.3', { message: 'what did I say?', sessionId: 's1' });
    const text = contentOf(events(second.body));
    expect(text).toContain('This is the start of the conversation');
    expect(second.body).not.toContain('4711');
    // The first client still continues its own.
    const again = await sseFrom(gw.url, '127.0.0.2', { message: 'and now?', sessionId: 's1' });
    expect(contentOf(events(again.body))).toContain('2 earlier messages');
  });

  it('the first anonymous response sets a signed httpOnly cookie; clients carrying different cookies on one IP are isolated', async () => {
    const a = await sseFrom(gw.url, '127.0.0.4', { message: 'hello', sessionId: 'browser-first' });
    const cookieA = anonymousCookie(a.headers);
    expect(cookieA).toMatch(new RegExp(`^${ANONYMOUS_COOKIE}=[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$`));
    expect(a.headers['set-cookie']!.join(';')).toMatch(/HttpOnly/i);
    // With the cookie, the browser continues what it began before it had one.
    const a2 = await sseFrom(gw.url, '127.0.0.4', { message: 'SECRET with cookie', sessionId: 'browser-first' }, cookieA);
    expect(contentOf(events(a2.body))).toContain('2 earlier messages');
    // Carrying a valid cookie, no new one is handed out.
    expect(anonymousCookie(a2.headers)).toBeUndefined();
    await sseFrom(gw.url, '127.0.0.4', { message: 'SECRET only mine', sessionId: 'cookie-scoped' }, cookieA);

    const b = await sseFrom(gw.url, '127.0.0.4', { message: 'x', sessionId: 'b-own' });
    const cookieB = anonymousCookie(b.headers)!;
    expect(cookieB).not.toBe(cookieA);
    const peek = await sseFrom(gw.url, '127.0.0.4', { message: 'peek', sessionId: 'cookie-scoped' }, cookieB);
    expect(contentOf(events(peek.body))).toContain('This is the start of the conversation');
    expect(peek.body).not.toContain('SECRET');
  });

  it("a browser's first conversation, begun from its IP before it had the cookie, moves to the cookie with its next turn: others on the IP no longer reach it", async () => {
    const first = await sseFrom(gw.url, '127.0.0.9', { message: 'my first question', sessionId: 'nat-first' });
    const cookieA = anonymousCookie(first.headers)!;
    // Its next turn, with the cookie: the whole conversation is there (its first turn included).
    const second = await sseFrom(gw.url, '127.0.0.9', { message: 'SECRET after the cookie', sessionId: 'nat-first' }, cookieA);
    expect(contentOf(events(second.body))).toContain('2 earlier messages');
    const messagesOf = async (cookie?: string) => {
      const res = await fetch(`${gw.url}/api/chat/nat-first/messages`, { headers: cookie ? { Cookie: cookie } : {} });
      return { status: res.status, text: await res.text() };
    };
    const mine = await messagesOf(cookieA);
    expect(mine.status).toBe(200);
    expect(mine.text).toContain('my first question');
    expect(mine.text).toContain('SECRET after the cookie');
    // Someone else behind the same address: without a cookie, and with one of their own.
    const stranger = await sseFrom(gw.url, '127.0.0.9', { message: 'what was said?', sessionId: 'other' });
    const cookieB = anonymousCookie(stranger.headers)!;
    for (const cookie of [undefined, cookieB]) {
      const theirs = await messagesOf(cookie);
      expect(theirs.status).toBe(404);
      expect(theirs.text).not.toContain('SECRET');
    }
    const peek = await sseFrom(gw.url, '127.0.0.9', { message: 'continue it', sessionId: 'nat-first' });
    expect(contentOf(events(peek.body))).toContain('This is the start of the conversation');
    expect(peek.body).not.toContain('SECRET');
  });

  it('a forged or altered cookie counts as no cookie', async () => {
    const real = anonymousCookie((await sseFrom(gw.url, '127.0.0.5', { message: 'mine', sessionId: 'forged-target' })).headers)!;
    await sseFrom(gw.url, '127.0.0.5', { message: 'SECRET behind the cookie', sessionId: 'cookie-only' }, real);
    const [name, value] = real.split('=') as [string, string];
    const tampered = `${name}=${value.slice(0, 21)}${value[21] === 'A' ? 'B' : 'A'}${value.slice(22)}`;
    const res = await sseFrom(gw.url, '127.0.0.6', { message: 'let me in', sessionId: 'cookie-only' }, tampered);
    expect(res.body).not.toContain('SECRET');
    expect(contentOf(events(res.body))).toContain('This is the start of the conversation');
    // And it gets a fresh cookie of its own.
    expect(anonymousCookie(res.headers)).toBeDefined();
  });

  it('Socket.IO ai:chat and /ai chat:start: another IP using the same id gets its own conversation', async () => {
    const mine = client<DefaultClient>(gw.url, { transports: ['websocket'], localAddress: '127.0.0.7' } as object);
    const mineLog = new EventLog<DefaultServerToClientEvents>(mine);
    mine.emit('ai:chat', { message: 'SECRET over sockets', sessionId: 'my-session' });
    await mineLog.next('ai:complete');
    const theirs = client<DefaultClient>(gw.url, { transports: ['websocket'], localAddress: '127.0.0.8' } as object);
    const theirsLog = new EventLog<DefaultServerToClientEvents>(theirs);
    theirs.emit('ai:chat', { message: 'what did I say?', sessionId: 'my-session' });
    const complete = await theirsLog.next('ai:complete');
    expect(complete.response).toContain('This is the start of the conversation');
    expect(complete.response).not.toContain('SECRET');

    const ai1 = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'], localAddress: '127.0.0.7' } as object);
    const ai1Log = new EventLog<AiServerToClientEvents>(ai1);
    ai1.emit('chat:start', { message: 'SECRET on /ai', conversationId: 'ai-shared' });
    await ai1Log.next('chat:end');
    const ai2 = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'], localAddress: '127.0.0.8' } as object);
    const ai2Log = new EventLog<AiServerToClientEvents>(ai2);
    ai2.emit('chat:start', { message: 'what did I say?', conversationId: 'ai-shared' });
    expect(await ai2Log.next('chat:conversation')).toEqual({ conversationId: 'ai-shared' });
    await ai2Log.next('chat:end');
    const text = ai2Log.all('chat:message').map((m) => m.content).join('');
    expect(text).toContain('This is the start of the conversation');
    expect(text).not.toContain('SECRET');
  });

  it('a Socket.IO handshake without the cookie is answered with one; a connection that brings it is known by it', async () => {
    const handshake = await fetch(`${gw.url}/socket.io/?EIO=4&transport=polling`);
    await handshake.text();
    const cookie = handshake.headers.getSetCookie().map((c) => c.split(';')[0]!).find((c) => c.startsWith(`${ANONYMOUS_COOKIE}=`));
    expect(cookie).toBeDefined();
    expect(handshake.headers.getSetCookie().join(';')).toMatch(/HttpOnly/i);

    const withCookie = client<DefaultClient>(gw.url, { transports: ['websocket'], localAddress: '127.0.0.9', extraHeaders: { cookie: cookie! } } as object);
    const log = new EventLog<DefaultServerToClientEvents>(withCookie);
    await connected(withCookie);
    withCookie.emit('ai:chat', { message: 'SECRET by cookie', sessionId: 'sock-cookie' });
    await log.next('ai:complete');
    // Same IP, no cookie: not the same owner.
    const sameIp = client<DefaultClient>(gw.url, { transports: ['websocket'], localAddress: '127.0.0.9' } as object);
    const sameIpLog = new EventLog<DefaultServerToClientEvents>(sameIp);
    sameIp.emit('ai:chat', { message: 'peek', sessionId: 'sock-cookie' });
    expect((await sameIpLog.next('ai:complete')).response).not.toContain('SECRET');
    // The cookie, from SSE this time and another IP: the same owner.
    const viaSse = await sseFrom(gw.url, '127.0.0.10', { message: 'continue', sessionId: 'sock-cookie' }, cookie);
    expect(contentOf(events(viaSse.body))).toContain('2 earlier messages');
  });
});

describe('one origin rule for every upgrade', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ CORS_ORIGIN: 'http://app.example' });
  });
  afterAll(() => gw.destroy());

  const upgrade = (origin: string | undefined) =>
    new Promise<{ status: number } | { opened: true }>((resolve) => {
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/realtime`, { headers: { ...(origin ? { origin } : {}), cookie: 'token=whatever' } });
      ws.on('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode ?? 0 });
        ws.terminate();
      });
      ws.on('open', () => {
        resolve({ opened: true });
        ws.close();
      });
      ws.on('error', () => undefined);
    });

  it('/v1/realtime refuses a cross-origin upgrade (which would carry the victim\'s cookie), like Socket.IO does', async () => {
    expect(await upgrade('http://evil.example')).toEqual({ status: 403 });
    const socketIo = client(gw.url, { transports: ['websocket'], extraHeaders: { origin: 'http://evil.example' } });
    await expect(connected(socketIo)).rejects.toThrow();
  });

  it('an allowed origin, and a non-browser client with no Origin, reach the route', async () => {
    // The cookie carries a bad token: the route itself answers (401) once the origin is allowed.
    expect(await upgrade('http://app.example')).toEqual({ status: 401 });
    expect(await upgrade(undefined)).toEqual({ status: 401 });
  });
});
