/**
 * A Socket.IO realtime session cut because its credential was revoked (logout everywhere) tells
 * the client UNAUTHORIZED (realtime-error) and is recorded as "server: UNAUTHORIZED" before the
 * socket is disconnected, as on /v1/realtime.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io } from 'socket.io-client';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { login, register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const KEY = 'sk-realtime-provider-SECRET-revoke';

describe('a Socket.IO realtime session whose sign-in is revoked', () => {
  let standin: RealtimeStandin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: KEY });
    gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  it('is told UNAUTHORIZED and recorded as ended by the server, as on /v1/realtime', async () => {
    const account = await register(gw.url, 'revoke-sio@example.com');
    const socket = io(gw.url, { transports: ['websocket'], auth: { token: account.token }, reconnection: false });
    const json: Array<Record<string, unknown>> = [];
    const errors: Array<{ code: string }> = [];
    socket.on('realtime-response', (d: unknown) => {
      if (!Buffer.isBuffer(d)) json.push(d as Record<string, unknown>);
    });
    socket.on('realtime-error', (e: { code: string }) => void errors.push(e));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.emit('realtime-message', { type: 'session.update', session: { type: 'realtime' } });
    await waitFor(() => json.some((f) => f.type === 'session.updated'), 3000);
    const res = await fetch(`${gw.url}/api/v2/auth/logout-all`, { method: 'POST', headers: { Authorization: `Bearer ${account.token}` } });
    expect(res.status).toBe(200);
    await waitFor(() => !socket.connected, 3000);
    const fresh = await login(gw.url, 'revoke-sio@example.com');
    const records = await waitFor(async () => {
      const r = await fetch(`${gw.url}/api/v2/realtime/sessions`, { headers: { Authorization: `Bearer ${fresh.token}` } });
      const body = (await r.json()) as { sessions: Array<{ endReason: string }> };
      return body.sessions.length > 0 ? body.sessions : undefined;
    }, 3000);
    expect(records[0]!.endReason).toBe('server: UNAUTHORIZED');
    expect(errors).toContainEqual(expect.objectContaining({ code: 'UNAUTHORIZED' }));
  });
});
