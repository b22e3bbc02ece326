/**
 * Socket.IO, namespace `/ai`: one streamed reply (`chat:start` → `chat:conversation`,
 * `chat:user-message`, `chat:message`…, `chat:end`), typed with the event maps the gateway
 * package exports. Ctrl-C while it streams sends `chat:stop`: the partial reply is kept.
 *
 * Run, with a gateway on GATEWAY_URL (default http://localhost:3000, `npm start`):
 *   npx tsx examples/socketio-chat.ts "Tell me about Socket.IO"
 *   CONVERSATION_ID=trip-plans npx tsx examples/socketio-chat.ts "And the day after?"
 * GATEWAY_TOKEN: a token or gateway API key to use; unset, the example registers a throwaway
 * account. Outside this repository: `npm install socket.io-client tsx` and the gateway as a
 * git dependency (for the types only; or drop the type parameters).
 */
import type { AiClientToServerEvents, AiServerToClientEvents } from 'ai-chat-gateway';
import { io, type Socket } from 'socket.io-client';

const gatewayUrl = (process.env.GATEWAY_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const message = process.argv.slice(2).join(' ') || 'Hello from the Socket.IO example';

/** A token for this run: GATEWAY_TOKEN, or a new account's. */
async function signIn(): Promise<string> {
  if (process.env.GATEWAY_TOKEN) return process.env.GATEWAY_TOKEN;
  const res = await fetch(`${gatewayUrl}/api/v2/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: `example-${crypto.randomUUID()}@example.com`, password: crypto.randomUUID() }),
  });
  if (!res.ok) throw new Error(`register: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

const socket: Socket<AiServerToClientEvents, AiClientToServerEvents> = io(`${gatewayUrl}/ai`, {
  auth: { token: await signIn() },
  transports: ['websocket'],
  reconnection: false,
});

try {
  await new Promise<void>((resolve, reject) => {
    socket.on('connect_error', (err) => reject(new Error(`cannot connect to ${gatewayUrl}/ai: ${err.message}`)));
    socket.on('chat:conversation', ({ conversationId }) => console.error(`[new conversation ${conversationId}]`));
    socket.on('chat:message', ({ content }) => process.stdout.write(content));
    socket.on('chat:end', (end) => {
      process.stdout.write('\n');
      console.error(`[${end.finishReason}: ${end.totalTokens} tokens from ${end.model}, conversation ${end.conversationId}]`);
      resolve();
    });
    socket.on('chat:stopped', ({ conversationId }) => {
      process.stdout.write('\n');
      console.error(`[stopped; the partial reply is stored in ${conversationId}]`);
      resolve();
    });
    socket.on('chat:error', ({ code, message: why }) => reject(new Error(`${code}: ${why}`)));
    process.once('SIGINT', () => socket.emit('chat:stop'));
    socket.emit('chat:start', { message, conversationId: process.env.CONVERSATION_ID ?? null });
  });
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
} finally {
  socket.close();
}
