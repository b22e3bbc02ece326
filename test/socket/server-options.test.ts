import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { postChat } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';
import { client, connected, connectError, EventLog, socketGatewayForSuite, TRANSPORTS, type AiClient, type DefaultClient } from './socket-harness.js';

describe('gauges follow the real connections and streams', () => {
  // Paced so a stream is still running while the test looks at the gauges (~60 tokens, ~1 s).
  const gw = socketGatewayForSuite({ LOCAL_MODEL_TOKEN_DELAY_MS: '15' });

  it.each(TRANSPORTS)('connections, byNamespace and activeStreams over %s', async (transport) => {
    expect(gw().server.gauges).toMatchObject({ connections: 0, byNamespace: { '/': 0, '/ai': 0 }, activeStreams: 0 });
    const root = client<DefaultClient>(gw().url, { transports: [transport] });
    const ai = client<AiClient>(`${gw().url}/ai`, { transports: [transport] });
    const ai2 = client<AiClient>(`${gw().url}/ai`, { transports: [transport] });
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    await Promise.all([connected(root), connected(ai), connected(ai2)]);
    expect(gw().server.gauges.connections).toBe(3);
    expect(gw().server.gauges.byNamespace).toEqual({ '/': 1, '/ai': 2 });
    expect(gw().server.gauges.activeStreams).toBe(0);

    ai.emit('chat:start', { message: 'one' });
    await aiLog.next('chat:message');
    expect(gw().server.gauges.activeStreams).toBe(1);
    root.emit('ai:chat', { message: 'two' });
    await rootLog.next('ai:stream');
    expect(gw().server.gauges.activeStreams).toBe(2);
    // An HTTP stream counts too ("every protocol").
    const controller = new AbortController();
    const res = await postChat(gw().url, { message: 'three' }, {}, controller.signal);
    await res.body!.getReader().read();
    expect(gw().server.gauges.activeStreams).toBe(3);
    controller.abort();

    await aiLog.next('chat:end', 5000);
    await rootLog.next('ai:complete', 5000);
    await waitFor(() => gw().server.gauges.activeStreams === 0, 2000);

    ai2.close();
    await waitFor(() => gw().server.gauges.byNamespace['/ai'] === 1, 2000);
    expect(gw().server.gauges.connections).toBe(2);
    root.close();
    ai.close();
    await waitFor(() => gw().server.gauges.connections === 0, 2000);
    expect(gw().server.gauges.byNamespace).toEqual({ '/': 0, '/ai': 0 });
  });

  it.each(TRANSPORTS)('a client that leaves mid-stream takes its stream off the gauge (%s)', async (transport) => {
    const ai = client<AiClient>(`${gw().url}/ai`, { transports: [transport] });
    const log = new EventLog<AiServerToClientEvents>(ai);
    ai.emit('chat:start', { message: 'leaving soon' });
    await log.next('chat:message');
    expect(gw().server.gauges).toMatchObject({ connections: 1, activeStreams: 1 });
    ai.close();
    await waitFor(() => gw().server.gauges.activeStreams === 0 && gw().server.gauges.connections === 0, 2000);
  });
});

describe('Socket.IO server options from the configuration', () => {
  describe('SOCKET_TRANSPORTS=websocket', () => {
    const gw = socketGatewayForSuite({ SOCKET_TRANSPORTS: 'websocket' });

    it.each(['/', '/ai'])('a polling-only client cannot connect to %s; a websocket client can', async (nsp) => {
      const url = nsp === '/' ? gw().url : `${gw().url}${nsp}`;
      const polling = client(url, { transports: ['polling'] });
      const err = await connectError(polling);
      expect(err.message).toMatch(/xhr poll error/);
      expect(polling.connected).toBe(false);

      const ws = client(url, { transports: ['websocket'] });
      await connected(ws);
      expect(ws.io.engine.transport.name).toBe('websocket');
    });

    it('the polling handshake is refused at the HTTP level', async () => {
      const res = await fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 0, message: 'Transport unknown' });
    });
  });

  describe('default transports: polling upgrades to websocket', () => {
    const gw = socketGatewayForSuite();

    it('a client with the default transports starts on polling and upgrades', async () => {
      const socket = client<AiClient>(`${gw().url}/ai`);
      await connected(socket);
      expect(['polling', 'websocket']).toContain(socket.io.engine.transport.name);
      await waitFor(() => socket.io.engine.transport.name === 'websocket', 2000);
      const log = new EventLog<AiServerToClientEvents>(socket);
      socket.emit('chat:start', { message: 'upgraded' });
      expect(await log.next('chat:end')).toMatchObject({ finishReason: 'stop' });
    });
  });

  describe('SOCKET_PER_MESSAGE_DEFLATE=true', () => {
    const gw = socketGatewayForSuite({ SOCKET_PER_MESSAGE_DEFLATE: 'true' });

    it.each(TRANSPORTS)('large messages round-trip compressed over %s', async (transport) => {
      const socket = client<DefaultClient>(gw().url, { transports: [transport] });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      const prompt = 'compress me '.repeat(300);
      socket.emit('ai-message', { prompt });
      const reply = await log.next('ai-message-response');
      expect(reply).toEqual({ response: expect.stringContaining('You said: "compress me compress me') });
    });

    it('the websocket upgrade negotiates permessage-deflate', async () => {
      const { default: WebSocket } = await import('ws');
      const ws = new WebSocket(`ws://127.0.0.1:${gw().port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: true });
      const extensions = await new Promise<string>((resolve, reject) => {
        ws.on('upgrade', (res) => resolve(String(res.headers['sec-websocket-extensions'] ?? '')));
        ws.on('error', reject);
      });
      ws.terminate();
      expect(extensions).toMatch(/permessage-deflate/);
    });
  });

  describe('the browser client', () => {
    const gw = socketGatewayForSuite();

    it.each(['socket.io.js', 'socket.io.min.js', 'socket.io.esm.min.js'])('GET /socket.io/%s answers the client bundle of the server\'s version', async (file) => {
      const res = await fetch(`${gw().url}/socket.io/${file}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/javascript; charset=utf-8');
      const { version } = (await import('socket.io/package.json', { with: { type: 'json' } })).default as { version: string };
      expect(res.headers.get('etag')).toBe(`"${version}"`);
      const body = await res.text();
      expect(body.length).toBeGreaterThan(10_000);
      expect(body).toContain(`Socket.IO v${version}`);
      // A browser that has it asks again with the ETag and gets a 304.
      const again = await fetch(`${gw().url}/socket.io/${file}`, { headers: { 'If-None-Match': `"${version}"` } });
      expect(again.status).toBe(304);
    });

    it('serving it leaves the handshake and the HTTP routes alone', async () => {
      const handshake = await fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`);
      expect(await handshake.text()).toMatch(/^0\{"sid":"/);
      const health = await fetch(`${gw().url}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok' });
    });
  });

  describe('namespaces', () => {
    const gw = socketGatewayForSuite();

    it.each(TRANSPORTS)('an unknown namespace is refused with "Invalid namespace" over %s and counts nowhere', async (transport) => {
      const socket = client(`${gw().url}/admin`, { transports: [transport] });
      expect((await connectError(socket)).message).toBe('Invalid namespace');
      expect(gw().server.gauges.byNamespace).toEqual({ '/': 0, '/ai': 0 });
    });
  });

  describe('CORS_ORIGIN', () => {
    const gw = socketGatewayForSuite({ CORS_ORIGIN: 'http://allowed.test, http://also-allowed.test' });

    const handshake = (origin?: string) =>
      fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`, { headers: origin ? { Origin: origin } : {} });

    it.each(['http://allowed.test', 'http://also-allowed.test'])('a polling handshake from %s gets the CORS headers with credentials', async (origin) => {
      const res = await handshake(origin);
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(res.headers.get('access-control-allow-credentials')).toBe('true');
      expect(await res.text()).toMatch(/^0\{"sid":"/);
    });

    it('another origin gets no CORS headers', async () => {
      const res = await handshake('http://evil.test');
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      await res.body?.cancel();
    });

    it('a preflight from an allowed origin is answered, another origin is not allowed', async () => {
      const preflight = (origin: string) =>
        fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`, {
          method: 'OPTIONS',
          headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
        });
      const ok = await preflight('http://allowed.test');
      expect(ok.status).toBeLessThan(300);
      expect(ok.headers.get('access-control-allow-origin')).toBe('http://allowed.test');
      expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
      const bad = await preflight('http://evil.test');
      expect(bad.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('a browser websocket (no CORS in browsers) from another origin is refused, from an allowed one accepted', async () => {
      // Browsers do not apply CORS to WebSockets, and seed 003 connects websocket-only; with the
      // seed 001 cookie, a page on another origin could otherwise act as the signed-in user.
      const evil = client(`${gw().url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'http://evil.test' } });
      const outcome = await connected(evil, 2000).then(
        () => 'connected',
        (err: Error) => `refused: ${err.message}`,
      );
      expect(outcome).toMatch(/^refused/);
      const ok = client(`${gw().url}/ai`, { transports: ['websocket'], extraHeaders: { origin: 'http://allowed.test' } });
      await connected(ok);
    });

    it('a client without an Origin (Node, native apps) still connects', async () => {
      const socket = client(gw().url, { transports: ['polling'] });
      await connected(socket);
      socket.close();
    });
  });

  describe('ping settings', () => {
    const gw = socketGatewayForSuite({ SOCKET_PING_INTERVAL_MS: '1500', SOCKET_PING_TIMEOUT_MS: '1200' });

    it('the handshake announces SOCKET_PING_INTERVAL_MS, SOCKET_PING_TIMEOUT_MS and SOCKET_MAX_BUFFER_BYTES', async () => {
      const res = await fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`);
      const open = JSON.parse((await res.text()).slice(1)) as Record<string, unknown>;
      expect(open).toMatchObject({ pingInterval: 1500, pingTimeout: 1200, maxPayload: 1_000_000, upgrades: ['websocket'] });
    });
  });
});

describe('SOCKET_MAX_CONNECTIONS_PER_IP bounds what one client address holds', () => {
  const gw = socketGatewayForSuite({ SOCKET_MAX_CONNECTIONS_PER_IP: '3', TRUST_PROXY: 'true' });

  it.each(TRANSPORTS)('the fourth connection from one address is refused with the reason, the others stay, and a freed place is taken again (%s)', async (transport) => {
    // Addresses of their own per transport: the other run's connections may still be closing.
    const from = (ip: string) => ({ transports: [transport], extraHeaders: { 'x-forwarded-for': `${ip}${transport === 'polling' ? '0' : ''}` } });
    const held = [client<AiClient>(`${gw().url}/ai`, from('203.0.113.7')), client<DefaultClient>(gw().url, from('203.0.113.7')), client<AiClient>(`${gw().url}/ai`, from('203.0.113.7'))];
    await Promise.all(held.map((s) => connected(s)));
    const refused = client<AiClient>(`${gw().url}/ai`, from('203.0.113.7'));
    await connectError(refused);
    // Another address is not affected.
    const other = client<AiClient>(`${gw().url}/ai`, from('203.0.113.8'));
    await connected(other);
    // The held connections still work.
    const log = new EventLog<AiServerToClientEvents>(held[0] as AiClient);
    (held[0] as AiClient).emit('chat:start', { message: 'still here?' });
    await log.next('chat:end', 5000);
    // One leaves: its place is free again, once its transport has closed (its namespace may let
    // go of it a moment before, as the client's disconnect packet arrives ahead of the close).
    held[2]!.close();
    await waitFor(() => gw().server.gauges.byNamespace['/ai'] === 2, 2000);
    const again = await waitFor(async () => {
      const next = client<AiClient>(`${gw().url}/ai`, from('203.0.113.7'));
      return connected(next).then(
        () => next,
        () => (next.close(), undefined),
      );
    }, 2000);
    expect(again.connected).toBe(true);
  });

  it.each(TRANSPORTS)('a burst of eight handshakes from one address opens exactly three (%s)', async (transport) => {
    const ip = transport === 'polling' ? '192.0.2.10' : '192.0.2.11';
    const burst = Array.from({ length: 8 }, () => client<AiClient>(`${gw().url}/ai`, { transports: [transport], extraHeaders: { 'x-forwarded-for': ip } }));
    const outcomes = await Promise.all(burst.map((s) => connected(s).then(() => 'open', () => 'refused')));
    // One that passed the check while others completed is closed as it opens: wait for those closes.
    await new Promise((r) => setTimeout(r, 300));
    expect(outcomes.filter((o) => o === 'open').length).toBeGreaterThanOrEqual(3);
    expect(burst.filter((s) => s.connected).length).toBe(3);
  });

  it('an IPv6 client is its /56: a fourth connection from another address of that network is refused, another network still connects', async () => {
    const from = (ip: string) => ({ transports: ['websocket' as const], extraHeaders: { 'x-forwarded-for': ip } });
    const held = ['2001:db8:5:1::1', '2001:db8:5:2::2', '2001:db8:5:3::3'].map((ip) => client<AiClient>(`${gw().url}/ai`, from(ip)));
    await Promise.all(held.map((s) => connected(s)));
    await connectError(client<AiClient>(`${gw().url}/ai`, from('2001:db8:5:ff::4')));
    await connected(client<AiClient>(`${gw().url}/ai`, from('2001:db8:5:100::1')));
  });

  it('a refused polling handshake says why, with a 403', async () => {
    const open = Array.from({ length: 3 }, () => client<AiClient>(`${gw().url}/ai`, { transports: ['websocket'], extraHeaders: { 'x-forwarded-for': '198.51.100.1' } }));
    await Promise.all(open.map((s) => connected(s)));
    const res = await fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`, { headers: { 'x-forwarded-for': '198.51.100.1' } });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ code: 4, message: 'RATE_LIMIT: too many open connections from this address (SOCKET_MAX_CONNECTIONS_PER_IP)' });
    const elsewhere = await fetch(`${gw().url}/socket.io/?EIO=4&transport=polling`, { headers: { 'x-forwarded-for': '198.51.100.2' } });
    expect(elsewhere.status).toBe(200);
    await elsewhere.text();
  });
});

describe('SOCKET_MAX_EVENTS_PER_SECOND cuts off a client that floods events', () => {
  // 50 a second sustained, 100 at once.
  const gw = socketGatewayForSuite({ SOCKET_MAX_EVENTS_PER_SECOND: '50' });

  it.each(TRANSPORTS)('a flood is disconnected while a client beside it keeps streaming (%s)', async (transport) => {
    const flooder = client<DefaultClient>(gw().url, { transports: [transport] });
    const neighbour = client<AiClient>(`${gw().url}/ai`, { transports: [transport] });
    await Promise.all([connected(flooder), connected(neighbour)]);
    const gone = new Promise<string>((resolve) => flooder.on('disconnect', resolve));
    let answered = 0;
    flooder.on('ai:error', () => answered++);
    for (let i = 0; i < 1000; i++) flooder.emit('ai:chat', { bad: i } as never);
    expect(await gone).toBe('transport close');
    // The burst it was allowed was answered, the rest never ran.
    expect(answered).toBeLessThanOrEqual(100);
    const log = new EventLog<AiServerToClientEvents>(neighbour);
    neighbour.emit('chat:start', { message: 'are you still there?' });
    await log.next('chat:end', 5000);
    expect(neighbour.connected).toBe(true);
  });

  it('a flood of connections to a namespace that does not exist (each answered with an error) closes the connection too', async () => {
    const ws = new WebSocket(`${gw().url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    let answers = 0;
    ws.on('message', (d: Buffer) => {
      if (d.toString().startsWith('44/nope,')) answers++;
    });
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    for (let i = 0; i < 2000; i++) ws.send('40/nope,');
    await closed;
    // The open packet, then the burst it was allowed; none of the rest was read.
    expect(answers).toBeLessThanOrEqual(100);
    expect((await fetch(`${gw().url}/healthz`)).status).toBe(200);
  });

  it('a client within the budget (40 events a second for 2 s, after a burst of 90) gets every answer and stays', async () => {
    const steady = client<DefaultClient>(gw().url, { transports: ['websocket'] });
    await connected(steady);
    let answered = 0;
    steady.on('ai:error', (e) => {
      expect(e.code).toBe('BAD_REQUEST');
      answered++;
    });
    for (let i = 0; i < 90; i++) steady.emit('ai:chat', { bad: i } as never);
    for (let i = 0; i < 80; i++) {
      await new Promise((r) => setTimeout(r, 25));
      steady.emit('ai:chat', { bad: i } as never);
    }
    await waitFor(() => answered === 170, 5000);
    expect(steady.connected).toBe(true);
  });
});
