/**
 * Shared machinery for the WebSocket stand-ins (OpenAI Realtime, Gemini Live): a `node:http`
 * server on 127.0.0.1 (ephemeral port) whose upgrades go to the provider file, which decides
 * to refuse (a real HTTP error response), hang (no answer at all) or accept (`ws`).
 */
import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';

export interface UpgradeRequest {
  /** Path exactly as sent (Gemini's SDK sends a double slash), without the query string. */
  path: string;
  query: Record<string, string>;
  headers: IncomingMessage['headers'];
}

export interface UpgradeControl {
  /** Answers the upgrade with an HTTP error and closes the connection. */
  refuse(status: number, body: unknown): void;
  /** Leaves the upgrade unanswered; the socket is destroyed when the stand-in closes. */
  hang(): void;
  /** Completes the WebSocket handshake. */
  accept(onSocket: (ws: WebSocket) => void): void;
}

export interface WsStandinServer {
  readonly origin: string;
  close(): Promise<void>;
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests' };

export async function startWsStandinServer(onUpgrade: (req: UpgradeRequest, control: UpgradeControl) => void): Promise<WsStandinServer> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 32 * 1024 * 1024 });
  const sockets = new Set<Duplex>();
  const server = http.createServer((_req, res) => {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'not found' } }));
  });
  server.on('connection', (s: Socket) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    onUpgrade(
      { path: rawPath, query, headers: req.headers },
      {
        refuse(status, body) {
          const text = JSON.stringify(body);
          socket.end(
            `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
              `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
          );
        },
        hang() {
          /* nothing: the client waits until its own timeout */
        },
        accept(onSocket) {
          wss.handleUpgrade(req, socket, head, onSocket);
        },
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `127.0.0.1:${port}`,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls until `check` is truthy; rejects with `what` after `timeoutMs`. */
export async function until<T>(check: () => T | undefined | false | null, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`stand-in: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Known, distinct audio bytes: chunk `i` of `n` bytes, a deterministic pattern per chunk. */
export function knownAudio(chunks: number, bytes: number, seed = 0): Buffer[] {
  return Array.from({ length: chunks }, (_, i) => {
    const b = Buffer.alloc(bytes);
    for (let j = 0; j < bytes; j++) b[j] = (seed * 131 + i * 31 + j * 7 + ((j * j) >> 3)) & 0xff;
    return b;
  });
}
