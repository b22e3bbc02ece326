/**
 * Socket.IO `realtime-message` whose JSON carries a binary attachment (a Buffer anywhere in the
 * event) is refused (BAD_REQUEST) before it is measured or translated: serialised, a Buffer is an
 * array of numbers (~4x its size, ~70 ms for 1 MB), and an anonymous client would hold the event
 * loop for everyone at a fraction of the packet budget.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io } from 'socket.io-client';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';

describe('realtime-message with a binary attachment inside its JSON', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // No provider needed: the event is measured before anything else looks at it.
    gw = await startGateway({ RATE_LIMIT_ANON: '1000' });
  });
  afterAll(async () => {
    await gw.destroy();
  });

  it('is refused without serialising the attachment (the event loop is not held)', async () => {
    const socket = io(gw.url, { transports: ['websocket'], reconnection: false });
    const errors: Array<{ code: string; message: string }> = [];
    socket.on('realtime-error', (e: { code: string; message: string }) => void errors.push(e));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const blob = Buffer.alloc(900_000, 7); // under SOCKET_MAX_BUFFER_BYTES (1 MB)
    // Control: the same bytes as a JSON string (no attachment) cost little.
    const c = monitorEventLoopDelay({ resolution: 5 });
    c.enable();
    const text = 'a'.repeat(900_000);
    for (let i = 0; i < 10; i++) socket.emit('realtime-message', { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] } });
    await new Promise((r) => setTimeout(r, 1500));
    c.disable();
    console.log({ controlMaxLoopDelayMs: Math.round(c.max / 1e6) });
    expect(c.max / 1e6).toBeLessThan(100);
    errors.length = 0;
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const started = performance.now();
    // 10 events: 20 packets, far under the default 400 packets/s budget.
    for (let i = 0; i < 10; i++) socket.emit('realtime-message', { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_audio', audio: blob }] } });
    await waitFor(() => errors.length >= 10, 15_000);
    h.disable();
    const elapsed = performance.now() - started;
    socket.close();
    console.log({ elapsedMs: Math.round(elapsed), maxLoopDelayMs: Math.round(h.max / 1e6), first: errors[0] });
    // 10 MB of traffic on loopback: handled in well under a second when nothing serialises it.
    expect(h.max / 1e6).toBeLessThan(100);
  });

  it('one event with ten attachments (socket.io-parser allows ten) is refused without holding the loop', async () => {
    const socket = io(gw.url, { transports: ['websocket'], reconnection: false });
    const errors: Array<{ code: string; message: string }> = [];
    socket.on('realtime-error', (e: { code: string; message: string }) => void errors.push(e));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const parts = Array.from({ length: 10 }, () => ({ type: 'input_audio', audio: Buffer.alloc(900_000, 7) }));
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    socket.emit('realtime-message', { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: parts } });
    await waitFor(() => errors.length >= 1, 15_000);
    h.disable();
    socket.close();
    console.log({ oneEventMaxLoopDelayMs: Math.round(h.max / 1e6), error: errors[0] });
    expect(h.max / 1e6).toBeLessThan(100);
  });
});
