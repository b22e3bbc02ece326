/**
 * The per-token events are encoded by the gateway itself (src/socket/token-emitter.ts): a real
 * client, on each transport and namespace, must receive exactly the frames `socket.emit` would
 * have sent, and the same decoded payloads.
 */
import { describe, expect, it } from 'vitest';
import type { Socket as ServerSocket } from 'socket.io';
import { tokenEmitter } from '../../src/socket/token-emitter.js';
import { waitFor } from '../helpers/wait.js';
import { client, connected, socketGatewayForSuite } from './socket-harness.js';

interface RawClient {
  id: string;
  io: { engine: { on(event: 'packet', fn: (p: { type: string; data?: unknown }) => void): void } };
  on(event: string, fn: (payload: unknown) => void): void;
  close(): void;
}

const TEXTS = ['Hello', ' wörld', '日本語のテキスト', '🙂 emoji', 'quote " backslash \\ slash /', 'line\nbreak\ttab', '\u2028\u2029', '</script>', '', 'x'.repeat(5000)];

describe('per-token Socket.IO events encoded by the gateway', () => {
  const gw = socketGatewayForSuite();

  const cases = [
    { nsp: '/', event: 'ai:stream', payload: (content: string) => ({ content, sessionId: 'conv-1' }) },
    { nsp: '/ai', event: 'chat:message', payload: (content: string) => ({ content, isComplete: false }) },
  ] as const;

  for (const transport of ['websocket', 'polling'] as const) {
    for (const c of cases) {
      it(`sends the frames socket.emit sends (${c.nsp} ${c.event}, ${transport})`, async () => {
        const sock = client<RawClient>(`${gw().url}${c.nsp === '/' ? '' : c.nsp}`, { transports: [transport] });
        await connected(sock as never);
        const frames: string[] = [];
        sock.io.engine.on('packet', (p) => {
          if (p.type === 'message' && typeof p.data === 'string' && p.data.includes(`"${c.event}"`)) frames.push(p.data);
        });
        const received: unknown[] = [];
        sock.on(c.event, (payload) => received.push(payload));
        const server = gw().server.io.of(c.nsp).sockets.get(sock.id) as ServerSocket | undefined;
        expect(server, 'the server-side socket').toBeDefined();

        const emit = tokenEmitter<object>(server!, c.event);
        for (const text of TEXTS) {
          server!.emit(c.event, c.payload(text));
          emit(c.payload(text));
        }
        await waitFor(() => frames.length === 2 * TEXTS.length && received.length === 2 * TEXTS.length, 3000, 5);
        for (let i = 0; i < TEXTS.length; i++) {
          expect(frames[2 * i + 1], `frame of ${JSON.stringify(TEXTS[i]!.slice(0, 20))}`).toBe(frames[2 * i]);
          expect(received[2 * i + 1]).toEqual(c.payload(TEXTS[i]!));
          expect(received[2 * i]).toEqual(c.payload(TEXTS[i]!));
        }
        // The namespace is in the frame only when it is not the main one.
        expect(frames[0]!.startsWith(c.nsp === '/' ? `2["${c.event}",` : `2${c.nsp},["${c.event}",`)).toBe(true);
      });
    }
  }

  it('drops an event for a connection that has closed, as socket.emit does, without throwing', async () => {
    const sock = client<RawClient>(gw().url, { transports: ['websocket'] });
    await connected(sock as never);
    const server = gw().server.io.of('/').sockets.get(sock.id) as ServerSocket;
    const emit = tokenEmitter<object>(server, 'ai:stream');
    sock.close();
    await waitFor(() => server.conn.readyState !== 'open', 3000, 5);
    expect(() => emit({ content: 'late', sessionId: 'conv-1' })).not.toThrow();
    expect(() => server.emit('ai:stream', { content: 'late', sessionId: 'conv-1' })).not.toThrow();
  });
});
