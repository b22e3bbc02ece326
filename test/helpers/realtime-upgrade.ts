import WebSocket from 'ws';

/**
 * The HTTP status a /v1/realtime upgrade is answered with (101 when it upgraded), with the
 * token where a client may put it: a header, the query string or a subprotocol. The socket is
 * closed at once either way.
 */
export function upgradeStatus(gw: { port: number }, options: { query?: string; headers?: Record<string, string>; protocols?: string[] }): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime${options.query ?? ''}`, options.protocols ?? [], { headers: options.headers ?? {} });
    const timer = setTimeout(() => reject(new Error('no answer to the upgrade within 5 s')), 5000);
    ws.on('error', () => {});
    ws.on('upgrade', (res) => {
      clearTimeout(timer);
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
  });
}
