/**
 * A realtime session does not outlive the token it was opened with: the credential is checked
 * when the session opens, and the session ends (UNAUTHORIZED, recorded as the server's end) at
 * the token's `exp` plus the clock skew, as every other entry point (chat events, /ai's user room) does.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const KEY = 'sk-realtime-provider-SECRET-expiry';

/** The account's own token, re-signed to expire in `seconds`. */
async function shortLived(token: string, seconds: number): Promise<string> {
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  return new SignJWT({ ...claims, exp: Math.floor(Date.now() / 1000) + seconds }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TEST_JWT_SECRET));
}

/** How the account's recorded realtime sessions ended (read with its long-lived token). */
async function endReasons(token: string): Promise<string[]> {
  return waitFor(async () => {
    const r = await fetch(`${gw.url}/api/v2/realtime/sessions`, { headers: { Authorization: `Bearer ${token}` } });
    const body = (await r.json()) as { sessions: Array<{ endReason: string }> };
    return body.sessions.length > 0 ? body.sessions.map((s) => s.endReason) : undefined;
  }, 3000);
}

let gw: TestGateway;

/**
 * Opens /v1/realtime with `credential`, waits past its expiry (3.5 s; `check` runs then), asks
 * for a response if the socket is still open, and returns every frame received 1 s later.
 */
async function askAfterExpiry(credential: string, check?: () => Promise<void>): Promise<Array<Record<string, unknown>>> {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, { headers: { Authorization: `Bearer ${credential}` } });
  const frames: Array<Record<string, unknown>> = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
  await waitFor(() => frames.some((f) => f.type === 'session.created'), 3000);
  await new Promise((r) => setTimeout(r, 3500));
  await check?.();
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } }));
    ws.send(JSON.stringify({ type: 'response.create' }));
  }
  await new Promise((r) => setTimeout(r, 1000));
  ws.terminate();
  return frames;
}

describe('a realtime session whose token expires while it is open', () => {
  let standin: RealtimeStandin;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: KEY });
    gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET, JWT_CLOCK_SKEW_SECONDS: '0' });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  it('/v1/realtime: is told UNAUTHORIZED and closed, instead of running on the server key', async () => {
    const account = await register(gw.url, 'expiry-ws@example.com');
    const token = await shortLived(account.token, 2);
    const frames = await askAfterExpiry(token, async () => {
      // The token is now past its exp (no clock skew allowed).
      const rejected = await fetch(`${gw.url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
      expect(rejected.status).toBe(401);
    });
    expect(frames.some((f) => f.type === 'response.done')).toBe(false);
    expect(frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect(await endReasons(account.token)).toEqual(['server: UNAUTHORIZED']);
  });

  it('Socket.IO realtime-*: is told UNAUTHORIZED and the upstream closed', async () => {
    const account = await register(gw.url, 'expiry-sio@example.com');
    const token = await shortLived(account.token, 2);
    const socket = io(gw.url, { transports: ['websocket'], auth: { token }, reconnection: false });
    const json: Array<Record<string, unknown>> = [];
    const errors: Array<{ code: string }> = [];
    socket.on('realtime-response', (d: unknown) => {
      if (!Buffer.isBuffer(d)) json.push(d as Record<string, unknown>);
    });
    socket.on('realtime-error', (e: { code: string }) => void errors.push(e));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.emit('realtime-message', { type: 'session.update', session: { type: 'realtime' } });
    await waitFor(() => json.some((f) => f.type === 'session.updated'), 3000);
    await new Promise((r) => setTimeout(r, 3500));
    socket.emit('realtime-message', { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
    socket.emit('realtime-message', { type: 'response.create' });
    await new Promise((r) => setTimeout(r, 1000));
    const responded = json.some((f) => f.type === 'response.done');
    socket.close();
    expect(responded).toBe(false);
    expect(errors).toContainEqual(expect.objectContaining({ code: 'UNAUTHORIZED' }));
    expect(await endReasons(account.token)).toEqual(['server: UNAUTHORIZED']);
  });

  it('/v1/realtime opened with a gateway API key: ends with UNAUTHORIZED when the key expires', async () => {
    const account = await register(gw.url, 'expiry-key-ws@example.com');
    // A key that expires 2 s from now (the route takes whole days; the service takes any span).
    const { secret } = await gw.server.services.apiKeys.create(
      { userId: account.user.id, ip: '127.0.0.1', anonymousId: null, sessionId: null },
      { name: 'short-lived', models: null, rateLimitPerMinute: null, expiresInDays: 2 / 86_400 },
    );
    const frames = await askAfterExpiry(secret);
    expect(frames.some((f) => f.type === 'response.done')).toBe(false);
    expect(frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect(await endReasons(account.token)).toEqual(['server: UNAUTHORIZED']);
  });
});
