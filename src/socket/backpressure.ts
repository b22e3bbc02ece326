/** The engine.io internals read here: the packets waiting for the transport, and the WebSocket's own buffer. */
interface EngineConnection {
  writeBuffer?: { data?: unknown }[];
  transport?: { socket?: { bufferedAmount?: number } };
}

const CHECK_INTERVAL_MS = 20;

/**
 * Bytes a Socket.IO connection has accepted but not yet handed to the network: packets
 * engine.io holds while its transport is busy, plus what the WebSocket has queued. A client
 * that stops reading makes this grow, because `emit` never blocks.
 */
export function outgoingBytes(socket: { conn: unknown }): number {
  const conn = socket.conn as EngineConnection;
  let bytes = conn.transport?.socket?.bufferedAmount ?? 0;
  for (const packet of conn.writeBuffer ?? []) {
    const data = packet.data;
    bytes += typeof data === 'string' ? data.length : data instanceof Uint8Array ? data.byteLength : 16;
  }
  return bytes;
}

/**
 * Resolves once the connection's backlog is below half of `maxBytes` (the pipeline stops
 * pulling from the model meanwhile, and gives up after SLOW_CLIENT_TIMEOUT_MS), or at once
 * when `signal` aborts (a disconnect or stop ends the turn anyway): true. False when
 * `timeoutMs` (if given) passed first, the client still not reading.
 */
export function waitForRoom(socket: { conn: unknown; connected?: boolean }, options: { maxBytes: number; signal: AbortSignal; timeoutMs?: number }): Promise<boolean> {
  const lowWater = options.maxBytes / 2;
  const deadline = options.timeoutMs === undefined ? Infinity : performance.now() + options.timeoutMs;
  return new Promise<boolean>((resolve) => {
    const check = () => {
      // A socket that is gone (its turn continuing: STREAM_ON_DISCONNECT=continue) has nothing left to drain.
      const waiting = !options.signal.aborted && socket.connected !== false && outgoingBytes(socket) > lowWater;
      if (waiting && performance.now() < deadline) return;
      clearInterval(timer);
      resolve(!waiting);
    };
    const timer = setInterval(check, CHECK_INTERVAL_MS);
  });
}
