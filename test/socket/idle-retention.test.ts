/**
 * What an idle Socket.IO connection keeps: not the HTTP request it was opened with (headers,
 * parser, buffers), on either transport, beyond a polling client's pending long-poll. Checked with weak references and a forced collection.
 */
import type { IncomingMessage } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { client, connected, socketGatewayForSuite, sleep } from './socket-harness.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collected(refs: WeakRef<object>[]): Promise<number> {
  for (let i = 0; i < 5; i++) {
    await sleep(20);
    gc();
  }
  return refs.filter((r) => r.deref() === undefined).length;
}

describe('idle Socket.IO connections', () => {
  const gw = socketGatewayForSuite();

  for (const transport of ['websocket', 'polling'] as const) {
    it(`do not keep the request they were opened with (${transport})`, async () => {
      const requests: WeakRef<IncomingMessage>[] = [];
      const keep = (req: IncomingMessage) => {
        if (req.url?.startsWith('/socket.io/')) requests.push(new WeakRef(req));
      };
      const http = gw().server.httpServer;
      http.on(transport === 'websocket' ? 'upgrade' : 'request', keep);
      const sockets = Array.from({ length: 5 }, () => client(gw().url, { transports: [transport] }));
      try {
        await Promise.all(sockets.map((s) => connected(s)));
        expect(requests.length).toBeGreaterThanOrEqual(5);
        // The connections are open and idle; their opening requests are garbage (a polling
        // client's pending long-poll is the one request it may hold).
        expect(sockets.every((s) => s.connected)).toBe(true);
        const held = transport === 'polling' ? sockets.length : 0;
        expect(await collected(requests)).toBeGreaterThanOrEqual(requests.length - held);
      } finally {
        http.off(transport === 'websocket' ? 'upgrade' : 'request', keep);
      }
    });
  }
});
