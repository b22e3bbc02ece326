/**
 * /v1/realtime: a client that never reads and sends binary frames. Every refusal (bad JSON,
 * unknown type, a binary frame) is held back while the client's backlog is over its bound
 * (RealtimeSession.refuse), so the server does not buffer without bound for a client that does not read.
 */
import type { Duplex } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const KEY = 'sk-realtime-provider-SECRET-backlog';
const BOUND = 4 * 1024 * 1024; // DEFAULT_REALTIME_LIMITS.maxClientBacklogBytes
const FRAMES = 150_000; // ~230 bytes of answer each: ~34 MB

describe('a /v1/realtime client that does not read', () => {
  let standin: RealtimeStandin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: KEY });
    // 0: no per-connection message budget (a valid setting); with the default 400/s the same growth takes minutes, not seconds.
    gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET, SOCKET_MAX_EVENTS_PER_SECOND: '0' });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  async function openPaused(token: string) {
    const serverSockets: Duplex[] = [];
    const grab = (_req: IncomingMessage, socket: Duplex) => void serverSockets.push(socket);
    gw.server.httpServer.prependListener('upgrade', grab);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
    let created = false;
    ws.on('message', (d) => {
      if ((JSON.parse(d.toString()) as { type: string }).type === 'session.created') created = true;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    gw.server.httpServer.off('upgrade', grab);
    await waitFor(() => created, 3000);
    ws.pause(); // stops reading: the server's writes pile up
    return { ws, server: serverSockets[0]! };
  }

  async function flood(ws: WebSocket, frame: string | Buffer) {
    for (let i = 0; i < FRAMES; i++) ws.send(frame);
    await new Promise<void>((r) => ws.send('{"type":"input_audio_buffer.clear"}', () => r()));
    await new Promise((r) => setTimeout(r, 1500));
  }

  it('is not answered past the backlog bound, whatever it sends', async () => {
    const { token } = await register(gw.url, 'backlog@example.com');

    // Control: malformed JSON text frames go through the session's refuse(), which stops answering past the bound.
    const text = await openPaused(token);
    await flood(text.ws, 'not json');
    const textBacklog = (text.server as unknown as { writableLength: number }).writableLength;
    expect(textBacklog).toBeLessThan(BOUND + 64 * 1024);
    text.ws.terminate();
    await new Promise((r) => setTimeout(r, 300));

    // Binary frames: refused through the session too, within the bound.
    const binary = await openPaused(token);
    await flood(binary.ws, Buffer.from([1]));
    const binaryBacklog = (binary.server as unknown as { writableLength: number }).writableLength;
    binary.ws.terminate();
    expect(binaryBacklog).toBeLessThan(BOUND + 64 * 1024);
  });
});
