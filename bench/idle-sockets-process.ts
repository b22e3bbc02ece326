/**
 * Opens `count` idle Socket.IO connections (the real `socket.io-client`, websocket transport,
 * anonymous, default namespace) to a gateway and holds them, in its own process: the bench
 * client's memory and file descriptors stay out of the parent's way.
 *
 *   node --import tsx bench/idle-sockets-process.ts <url> <count> [addresses=4] [inFlight=200]
 *
 * Connections come from 127.0.0.1 ... 127.0.0.<addresses> in turn (each source address has its
 * own ephemeral ports). stdout, one JSON line each:
 *   {"progress":{"connected":N,"failed":M}}   every 1,000 settled attempts
 *   {"done":{"connected":N,"failed":M,"errors":{...},"ms":T}}   once every attempt settled
 *   {"status":{"open":N,"dropped":M}}   answer to the stdin command `status`
 * Closes every connection and exits when its stdin closes, or on SIGTERM / SIGINT.
 */
import { io, type Socket } from 'socket.io-client';

const [url, countArg, addressesArg, inFlightArg] = process.argv.slice(2);
const count = Number(countArg);
const addresses = Number(addressesArg ?? 4);
const inFlight = Number(inFlightArg ?? 200);
if (!url || !Number.isInteger(count) || count < 1 || !Number.isInteger(addresses) || addresses < 1 || addresses > 254 || !(inFlight >= 1)) {
  console.error('idle-sockets-process: usage: idle-sockets-process.ts <url> <count> [addresses] [inFlight]');
  process.exit(2);
}

const sockets: Socket[] = [];
const errors: Record<string, number> = {};
let connected = 0;
let failed = 0;
let dropped = 0;
const print = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

function open(i: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = io(url!, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 30_000,
      localAddress: `127.0.0.${1 + (i % addresses)}`,
    } as Parameters<typeof io>[1]);
    sockets.push(socket);
    const settle = (ok: boolean, reason?: string) => {
      if (ok) connected++;
      else {
        failed++;
        const key = reason ?? 'unknown';
        errors[key] = (errors[key] ?? 0) + 1;
      }
      if ((connected + failed) % 1000 === 0) print({ progress: { connected, failed } });
      resolve();
    };
    socket.once('connect', () => {
      settle(true);
      socket.once('disconnect', () => dropped++);
    });
    socket.once('connect_error', (err: Error) => settle(false, err.message));
  });
}

let stopping = false;
let next = 0;
const stop = () => {
  if (stopping) return;
  stopping = true;
  next = count; // no further attempts
  for (const s of sockets) s.close();
  setTimeout(() => process.exit(0), 200);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  if (chunk.split('\n').some((l) => l.trim() === 'status')) print({ status: { open: connected - dropped, dropped } });
});
process.stdin.on('end', stop);
process.stdin.on('error', stop);

const started = performance.now();
await Promise.all(
  Array.from({ length: Math.min(inFlight, count) }, async () => {
    while (next < count) await open(next++);
  }),
);
if (!stopping) print({ done: { connected, failed, errors, ms: Math.round(performance.now() - started) } });
