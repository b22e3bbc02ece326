import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';
import { register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

describe('one port serves Socket.IO websocket upgrades and node-ws routes', () => {
  let gw: TestGateway;
  let token: string;
  beforeAll(async () => {
    gw = await startGateway();
    // /v1/realtime is never anonymous.
    token = (await register(gw.url, 'upgrades@example.com')).token;
  });
  afterAll(() => gw.destroy());

  function connectSocketIo(nsp: string) {
    const socket = ioClient(`${gw.url}${nsp}`, { transports: ['websocket'], reconnection: false, forceNew: true });
    return new Promise<{ transport: string; close: () => void }>((resolve, reject) => {
      socket.on('connect', () => resolve({ transport: socket.io.engine.transport.name, close: () => socket.close() }));
      socket.on('connect_error', reject);
    });
  }

  function openRealtime() {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
    return new Promise<{ first: Record<string, unknown>; code: number }>((resolve, reject) => {
      let first: Record<string, unknown> = {};
      ws.on('message', (data) => (first = JSON.parse(String(data)) as Record<string, unknown>));
      ws.on('close', (code) => resolve({ first, code }));
      ws.on('error', reject);
    });
  }

  it('both upgrade kinds work on the same port, also interleaved', async () => {
    const [a, b, rt1, rt2, c] = await Promise.all([
      connectSocketIo('/'),
      connectSocketIo('/ai'),
      openRealtime(),
      openRealtime(),
      connectSocketIo('/'),
    ]);
    expect([a.transport, b.transport, c.transport]).toEqual(['websocket', 'websocket', 'websocket']);
    for (const rt of [rt1, rt2]) {
      expect(rt.first).toMatchObject({ type: 'error', error: { code: 'REALTIME_UNAVAILABLE' } });
      expect(rt.code).toBe(1013);
    }
    expect(gw.server.gauges.connections).toBe(3);
    a.close();
    b.close();
    c.close();
  });

  it('an upgrade to an unknown path is refused with a status, not left hanging', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/nowhere`);
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(404);
  });
});
