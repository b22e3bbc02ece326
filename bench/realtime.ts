/**
 * Realtime relay cost: the round trip of a 20 ms audio chunk (960 bytes of PCM16 mono 24 kHz)
 * to an echoing Realtime GA endpoint (bench/realtime-echo.ts), straight to it ("direct") and
 * through the gateway, as a native WebSocket relay ("gateway /v1/realtime") and as seed 004's
 * Socket.IO events ("gateway socket.io": binary in, binary out). Modes alternate in rounds, so
 * machine noise hits them alike. Then the gateway's memory per open realtime session.
 *
 *   npx tsx bench/realtime.ts [--chunks 250] [--rounds 4] [--sessions 200]
 *
 * Results: stdout and bench/results/realtime.json.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { readProcStats, startGatewayProcess, startUrlProcess, runBench, stopAllChildren } from './processes.js';
import { percentile } from './stats.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/realtime.ts [--chunks 250] [--rounds 4] [--sessions 200]';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHUNK_BYTES = 960;
const PACE_MS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const { chunks: CHUNKS, rounds: ROUNDS, sessions: SESSIONS } = scriptArgs(USAGE, { chunks: 250, rounds: 4, sessions: 200 });

/** A chunk whose first 4 bytes are its sequence number, so its echo is recognised. */
function chunk(seq: number): Buffer {
  const b = Buffer.alloc(CHUNK_BYTES, seq % 251);
  b.writeUInt32LE(seq, 0);
  return b;
}

interface Transport {
  send(audio: Buffer): void;
  close(): void;
}

/** Sends CHUNKS chunks 20 ms apart and returns each one's round trip (ms). */
async function measure(open: (onAudio: (audio: Buffer) => void) => Promise<Transport>): Promise<number[]> {
  const sentAt = new Map<number, number>();
  const rtts: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const transport = await open((audio) => {
    const seq = audio.readUInt32LE(0);
    const t = sentAt.get(seq);
    if (t === undefined) return;
    rtts.push(performance.now() - t);
    sentAt.delete(seq);
    if (rtts.length === CHUNKS) done();
  });
  for (let i = 0; i < CHUNKS; i++) {
    sentAt.set(i, performance.now());
    transport.send(chunk(i));
    await sleep(PACE_MS);
  }
  await Promise.race([finished, sleep(5_000)]);
  transport.close();
  return rtts;
}

function gaSocket(url: string, protocols: string[] = []): (onAudio: (a: Buffer) => void) => Promise<Transport> {
  return (onAudio) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
      ws.on('message', (data) => {
        const event = JSON.parse(data.toString()) as { type?: string; delta?: string };
        if (event.type === 'response.output_audio.delta' && event.delta) onAudio(Buffer.from(event.delta, 'base64'));
        if (event.type === 'session.created') {
          resolve({
            send: (audio) => ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: audio.toString('base64') })),
            close: () => ws.close(),
          });
        }
      });
      ws.once('error', reject);
    });
}

function seed004(url: string): (onAudio: (a: Buffer) => void) => Promise<Transport> {
  return (onAudio) =>
    new Promise((resolve, reject) => {
      const socket: Socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true });
      socket.on('realtime-response', (data: unknown) => {
        if (Buffer.isBuffer(data)) onAudio(data);
        else if ((data as { type?: string }).type === 'session.created') resolve({ send: (audio) => socket.emit('realtime-audio', audio), close: () => socket.close() });
      });
      socket.on('realtime-error', (e: unknown) => reject(new Error(JSON.stringify(e))));
      socket.on('connect', () => socket.emit('realtime-message', { type: 'session.update', session: { type: 'realtime' } }));
    });
}

const summary = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: +percentile(s, 50).toFixed(2), p99: +percentile(s, 99).toFixed(2) };
};

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-realtime-'));
  try {
    const echo = await startUrlProcess(ROOT, 'realtime-echo', 'bench/realtime-echo.ts');
    const gateway = await startGatewayProcess(ROOT, 'http://127.0.0.1:9/v1', dataDir, [], {
      DEFAULT_MODEL: 'local',
      REALTIME_PROVIDER: 'openai',
      REALTIME_API_KEY: 'bench-key',
      REALTIME_URL: echo.url,
      REALTIME_MAX_SESSIONS_PER_CLIENT: '1000',
      JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
    });
    // /v1/realtime needs a token: a user of this run's own.
    const registered = await fetch(`${gateway.url}/api/v2/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: 'bench-realtime@example.com', password: 'bench realtime password' }),
    });
    if (registered.status !== 201) throw new Error(`could not register the bench user: HTTP ${registered.status}`);
    const { token } = (await registered.json()) as { token: string };
    const wsUrl = `${gateway.url.replace('http', 'ws')}/v1/realtime?token=${encodeURIComponent(token)}`;
    const modes: [string, (onAudio: (a: Buffer) => void) => Promise<Transport>][] = [
      ['direct', gaSocket(`${echo.url}?model=gpt-realtime`)],
      ['gateway /v1/realtime', gaSocket(wsUrl)],
      ['gateway socket.io', seed004(gateway.url)],
    ];
    // Warm-up: one short pass per mode.
    for (const [, open] of modes) await measure(open).catch(() => []);
    const rtts = new Map<string, number[]>(modes.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < modes.length; k++) {
        const [name, open] = modes[(round + k) % modes.length]!;
        rtts.get(name)!.push(...(await measure(open)));
      }
    }
    const results: Record<string, unknown> = {};
    const direct = summary(rtts.get('direct')!);
    console.log(`Round trip of a 20 ms audio chunk (${CHUNK_BYTES} bytes), ${ROUNDS} rounds x ${CHUNKS} chunks per mode:`);
    console.log(`${'mode'.padEnd(24)}${'n'.padStart(6)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'+p50'.padStart(10)}${'+p99'.padStart(10)}`);
    for (const [name] of modes) {
      const s = summary(rtts.get(name)!);
      results[name] = { ...s, addedP50: +(s.p50 - direct.p50).toFixed(2), addedP99: +(s.p99 - direct.p99).toFixed(2) };
      console.log(`${name.padEnd(24)}${String(s.n).padStart(6)}${s.p50.toFixed(2).padStart(10)}${s.p99.toFixed(2).padStart(10)}${(s.p50 - direct.p50).toFixed(2).padStart(10)}${(s.p99 - direct.p99).toFixed(2).padStart(10)}`);
    }

    // Memory per open session: SESSIONS Socket.IO clients, each with its upstream open.
    await sleep(1000);
    const before = readProcStats(gateway.child.pid)!.rssMb;
    const sockets: Socket[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const socket = io(gateway.url, { transports: ['websocket'], reconnection: false, forceNew: true });
      sockets.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.on('realtime-response', (d: unknown) => (d as { type?: string }).type === 'session.created' && resolve());
        socket.on('realtime-error', (e: unknown) => reject(new Error(JSON.stringify(e))));
        socket.on('connect', () => socket.emit('realtime-message', { type: 'session.update', session: { type: 'realtime' } }));
      });
    }
    await sleep(1000);
    const after = readProcStats(gateway.child.pid)!.rssMb;
    const perSessionKb = ((after - before) * 1024) / SESSIONS;
    results.memory = { sessions: SESSIONS, rssBeforeMb: +before.toFixed(1), rssAfterMb: +after.toFixed(1), perSessionKb: +perSessionKb.toFixed(1) };
    console.log(`\nMemory: ${SESSIONS} open realtime sessions (Socket.IO client + upstream WebSocket each): RSS ${before.toFixed(1)} -> ${after.toFixed(1)} MB, ${perSessionKb.toFixed(1)} KB per session`);
    for (const s of sockets) s.close();
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/realtime.json'), `${JSON.stringify({ at: new Date().toISOString(), chunkBytes: CHUNK_BYTES, paceMs: PACE_MS, rounds: ROUNDS, chunks: CHUNKS, ...results }, null, 2)}\n`);
  } finally {
    await stopAllChildren();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

runBench(main);
