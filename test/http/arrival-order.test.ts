import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * A burst of chat requests on the HTTP routes is taken in arrival order, TURN_STARTS_PER_TICK
 * a pass: a request's checks (its token, here) run in its own pass, with its turn start, so
 * the first requests start before the last are even checked.
 */
describe('chat routes take a burst in arrival order', () => {
  const PER_PASS = 2;
  const BURST = 8;
  let gw: TestGateway;
  let token: string;
  /** What the server did, in order: `check` (authentication) and `start` (the user message written as its turn starts). */
  const events: string[] = [];

  beforeAll(async () => {
    gw = await startGateway({ TURN_STARTS_PER_TICK: String(PER_PASS), RATE_LIMIT_ANON: '1000', RATE_LIMIT_USER: '1000', LOCAL_MODEL_TOKEN_DELAY_MS: '0' });
    // /v1 always needs a token. One request first, so its verification is cached: the burst's
    // checks then run within their pass, as an anonymous one's do (a first verification waits
    // on WebCrypto, and such a start waits for a pass of its own again).
    token = (await register(gw.url, 'arrival-order@example.com')).token;
    await (await fetch(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${token}` } })).text();
    const { auth, store } = gw.server.services;
    const authenticate = auth.authenticate.bind(auth);
    auth.authenticate = (...args) => {
      events.push('check');
      return authenticate(...args);
    };
    const appendMessage = store.appendMessage.bind(store);
    store.appendMessage = (message) => {
      if (message.role === 'user') events.push('start');
      return appendMessage(message);
    };
  });
  afterAll(() => gw.destroy());

  /** Connections the server has accepted first, then every request written in one tick: the server reads them in one pass. */
  async function burst(path: string, body: (i: number) => unknown, headers = ''): Promise<string[]> {
    const accepted = waitForConnections(BURST);
    const sockets = await Promise.all(
      Array.from({ length: BURST }, () => new Promise<Socket>((resolve, reject) => {
        const socket = connect(gw.port, '127.0.0.1', () => resolve(socket));
        socket.once('error', reject);
      })),
    );
    await accepted;
    events.length = 0;
    const replies = sockets.map((socket) => new Promise<string>((resolve, reject) => {
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (text += d));
      socket.once('end', () => resolve(text));
      socket.once('error', reject);
    }));
    sockets.forEach((socket, i) => {
      const json = JSON.stringify(body(i));
      socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n${headers}Connection: close\r\n\r\n${json}`);
    });
    return Promise.all(replies);
  }

  function waitForConnections(n: number): Promise<void> {
    return new Promise((resolve) => {
      let seen = 0;
      const server = gw.server.httpServer;
      const onConnection = () => {
        if (++seen < n) return;
        server.off('connection', onConnection);
        // The accepts ran in this pass; the requests are written after it.
        setImmediate(resolve);
      };
      server.on('connection', onConnection);
    });
  }

  /** The most requests checked but not yet started at any moment: all of a burst without the arrival gate. */
  const mostCheckedNotStarted = () => {
    let open = 0;
    let most = 0;
    for (const e of events) most = Math.max(most, (open += e === 'check' ? 1 : -1));
    return most;
  };

  it('seed 002 SSE: at most TURN_STARTS_PER_TICK requests are checked and not yet started at any moment', async () => {
    const replies = await burst('/api/v2/ai/chat/stream', (i) => ({ message: `burst ${i}` }));
    for (const reply of replies) {
      expect(reply).toMatch(/^HTTP\/1\.1 200 /);
      expect(reply).toContain('"done":true');
    }
    expect(events.filter((e) => e === 'start')).toHaveLength(BURST);
    expect(events.filter((e) => e === 'check')).toHaveLength(BURST);
    expect(mostCheckedNotStarted()).toBeLessThanOrEqual(PER_PASS);
  });

  it('OpenAI-compatible and AI SDK routes: the same', async () => {
    const openai = await burst('/v1/chat/completions', (i) => ({ model: 'local', stream: true, messages: [{ role: 'user', content: `burst ${i}` }], metadata: { conversation_id: `arrival-${i}` } }), `Authorization: Bearer ${token}\r\n`);
    for (const reply of openai) expect(reply).toMatch(/^HTTP\/1\.1 200 [\s\S]*data: \[DONE\]/);
    expect(events.filter((e) => e === 'start')).toHaveLength(BURST);
    expect(mostCheckedNotStarted()).toBeLessThanOrEqual(PER_PASS);

    const aiSdk = await burst('/api/chat', (i) => ({ id: `ui-${i}`, messages: [{ id: `m${i}`, role: 'user', parts: [{ type: 'text', text: `burst ${i}` }] }] }));
    for (const reply of aiSdk) expect(reply).toMatch(/^HTTP\/1\.1 200 [\s\S]*"type":"finish"/);
    expect(events.filter((e) => e === 'start')).toHaveLength(BURST);
    expect(mostCheckedNotStarted()).toBeLessThanOrEqual(PER_PASS);
  });
});
