/**
 * Server CPU per per-token Socket.IO event: `socket.emit('ai:stream', payload)` against the
 * gateway's `tokenEmitter` (src/socket/token-emitter.ts, the same frames), to 50 WebSocket
 * clients (`socket.io-client`) in another process, rounds in alternating order.
 *
 *   npx tsx bench/socket-emit.ts [--clients 50] [--rounds 8] [--events 1000]
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { tokenEmitter } from '../src/socket/token-emitter.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/socket-emit.ts [--clients 50] [--rounds 8] [--events 1000]';

const { clients: CLIENTS, rounds: ROUNDS, events: EVENTS } = scriptArgs(USAGE, { clients: 50, rounds: 8, events: 1000 });

const http = createServer();
const io = new Server(http, { transports: ['websocket'] });
await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
const { port } = http.address() as AddressInfo;
const sockets: Socket[] = [];
io.on('connection', (s) => sockets.push(s));

// The clients count what they received and report it on stdout.
const clientCode = `
const { io } = require('socket.io-client');
let got = 0;
for (let i = 0; i < ${CLIENTS}; i++) io('http://127.0.0.1:${port}', { transports: ['websocket'] }).on('ai:stream', () => got++);
setInterval(() => process.stdout.write(got + '\\n'), 10);
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`;
const child = spawn(process.execPath, ['-e', clientCode], { stdio: ['pipe', 'pipe', 'inherit'] });
let received = 0;
child.stdout.on('data', (d: Buffer) => (received = Number(d.toString().trim().split('\n').pop())));
while (sockets.length < CLIENTS) await new Promise((r) => setTimeout(r, 10));

type Send = (s: Socket, text: string) => void;
const emitters = new Map<Socket, (p: { content: string; sessionId: string }) => void>();
const modes: Record<string, Send> = {
  'socket.emit': (s, content) => s.emit('ai:stream', { content, sessionId: 'conv-1' }),
  tokenEmitter: (s, content) => {
    let emit = emitters.get(s);
    if (!emit) emitters.set(s, (emit = tokenEmitter(s, 'ai:stream')));
    emit({ content, sessionId: 'conv-1' });
  },
};

async function round(send: Send): Promise<number> {
  const start = received;
  const before = process.cpuUsage();
  for (let e = 0; e < EVENTS; e++) {
    for (const s of sockets) send(s, ` token${e}`);
    await new Promise((r) => setImmediate(r));
  }
  const n = EVENTS * sockets.length;
  while (received - start < n) await new Promise((r) => setTimeout(r, 5));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

for (const send of Object.values(modes)) await round(send); // warm-up
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(modes).map((m) => [m, []]));
for (let r = 0; r < ROUNDS; r++) {
  // Alternating order (ABBA...): a drift of the machine falls on both.
  const order = r % 2 === 0 ? Object.entries(modes) : Object.entries(modes).reverse();
  for (const [name, send] of order) samples[name]!.push(await round(send));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`Server CPU per event (µs), ${CLIENTS} clients, median of ${ROUNDS} rounds of ${EVENTS} events each:`);
for (const [name, xs] of Object.entries(samples)) console.log(`  ${name.padEnd(12)} ${median(xs).toFixed(2).padStart(7)}   [${xs.map((x) => x.toFixed(1)).join(' ')}]`);
child.stdin.end();
await io.close();
process.exit(0);
