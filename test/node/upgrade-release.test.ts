/**
 * /v1/realtime upgrades that pass authentication but that `ws` would refuse (a malformed
 * Sec-WebSocket-Key / Version, a duplicate subprotocol, HEAD) or whose client left during the
 * async authentication must not stay referenced by @hono/node-ws's private waiter map: each one
 * would grow server memory for good.
 */
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;

const KEY = 'sk-realtime-provider-SECRET-leak';
const GOOD_KEY = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

function rawUpgrade(port: number, headers: string, options: { method?: string; hangUp?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    // hangUp: the client that leaves while the server is still authenticating it.
    s.write(`${options.method ?? 'GET'} /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${headers}\r\n`, () => {
      if (options.hangUp) s.destroy();
    });
    setTimeout(() => s.destroy(), 2000);
  });
}

async function collected(refs: WeakRef<object>[]): Promise<number> {
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return refs.filter((r) => r.deref() === undefined).length;
}

describe('/v1/realtime upgrades refused by ws after auth', () => {
  let standin: RealtimeStandin;
  let gw: TestGateway;
  let token: string;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: KEY });
    gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET });
    token = (await register(gw.url, 'leak@example.com')).token;
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  function tracked() {
    const refs: WeakRef<object>[] = [];
    const track = (req: IncomingMessage) => void refs.push(new WeakRef(req));
    gw.server.httpServer.prependListener('upgrade', track);
    return { refs, stop: () => gw.server.httpServer.off('upgrade', track) };
  }

  it('are released once answered, like an upgrade refused with 401', async () => {
    const { refs, stop } = tracked();

    // Control: refused by auth (no token): node-ws answers and forgets the request.
    const control: string[] = [];
    for (let i = 0; i < 20; i++) control.push(await rawUpgrade(gw.port, `${GOOD_KEY}Sec-WebSocket-Version: 13\r\n`));
    expect(control.every((r) => r.startsWith('HTTP/1.1 401'))).toBe(true);
    const controlRefs = refs.splice(0);
    expect(await collected(controlRefs)).toBe(controlRefs.length);

    // Authenticated, but a bad version: refused with 400 and never upgraded.
    const answers: string[] = [];
    for (let i = 0; i < 20; i++) answers.push(await rawUpgrade(gw.port, `Authorization: Bearer ${token}\r\n${GOOD_KEY}Sec-WebSocket-Version: 12\r\n`));
    expect(answers.every((r) => r.startsWith('HTTP/1.1 400'))).toBe(true);
    stop();
    // Every request (and its Hono context) is garbage now.
    expect(await collected(refs)).toBe(refs.length);
  });

  it('every handshake ws would refuse is answered 400 with a code, before authentication', async () => {
    const { refs, stop } = tracked();
    const auth = `Authorization: Bearer ${token}\r\n`;
    const cases: Array<[string, { method?: string }?]> = [
      [`${auth}Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n`],
      [`${auth}Sec-WebSocket-Version: 13\r\n`],
      [`${auth}${GOOD_KEY}\r\n`],
      [`${auth}${GOOD_KEY}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: realtime, realtime\r\n`],
      [`${auth}${GOOD_KEY}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a b\r\n`],
      // Without a token: the handshake is refused before authentication runs.
      [`${GOOD_KEY}Sec-WebSocket-Version: 7\r\n`],
      [`${auth}${GOOD_KEY}Sec-WebSocket-Version: 13\r\n`, { method: 'HEAD' }],
    ];
    for (const [headers, options] of cases) {
      const answer = await rawUpgrade(gw.port, headers, options);
      expect(answer.startsWith('HTTP/1.1 400'), headers).toBe(true);
      expect(answer).toContain('"code":"BAD_REQUEST"');
    }
    stop();
    expect(await collected(refs)).toBe(refs.length);
  });

  it('an authenticated upgrade whose client left during authentication is released too', async () => {
    const { refs, stop } = tracked();
    await Promise.all(Array.from({ length: 20 }, () => rawUpgrade(gw.port, `Authorization: Bearer ${token}\r\n${GOOD_KEY}Sec-WebSocket-Version: 13\r\n`, { hangUp: true })));
    await new Promise((r) => setTimeout(r, 300));
    stop();
    expect(refs.length).toBe(20);
    expect(await collected(refs)).toBe(refs.length);
    // And a valid upgrade still works.
    const ok = await rawUpgrade(gw.port, `Authorization: Bearer ${token}\r\n${GOOD_KEY}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: realtime, openai-beta.realtime-v1\r\n`);
    expect(ok.startsWith('HTTP/1.1 101')).toBe(true);
  });
});
