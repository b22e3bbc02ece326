import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { gatewayForSuite } from '../helpers/gateway.js';

/** Raw bytes to the server; the whole answer as text (the server keeps or closes the connection). */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => (out += d.toString()));
    socket.write(request);
    const done = () => {
      socket.destroy();
      resolve(out);
    };
    socket.on('close', done);
    setTimeout(done, 1_000);
  });
}

/**
 * docs/errors.md: "431, 400, 408 before any route runs ... the body is the same
 * {error, code: "BAD_REQUEST"}"; PROTOCOLS.md 0: "Errors carry a stable code".
 * Requests Node parses as HTTP but @hono/node-server cannot turn into a URL (a Host header that is
 * not a host, a backslash in the path, `OPTIONS *`) get that body too (node-server's own answer is
 * an empty 400).
 */
describe('400s answered by @hono/node-server before the app', () => {
  const gw = gatewayForSuite();
  const cases: Record<string, string> = {
    'a Host header that is not a host': 'GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n',
    'a backslash in the path': 'GET /api\\v2/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    'an asterisk-form OPTIONS': 'OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
  };
  for (const [name, request] of Object.entries(cases)) {
    it(`${name}: 400 with the coded JSON body`, async () => {
      const answer = await raw(gw().port, request);
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      const body = answer.split('\r\n\r\n').slice(1).join('\r\n\r\n');
      expect(body).toContain('"code":"BAD_REQUEST"');
    });
  }
});
