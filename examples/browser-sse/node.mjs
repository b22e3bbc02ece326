/**
 * Runs the browser page's code (sse-chat.js, unchanged) in Node, which has the same fetch and
 * web streams: one streamed reply, then a second turn in the same conversation.
 *
 * Run, with a gateway on GATEWAY_URL (default http://localhost:3000, `npm start`):
 *   node examples/browser-sse/node.mjs "Hello there"
 * Anonymous unless GATEWAY_TOKEN is set (Node keeps no cookies, so the gateway tells anonymous
 * callers apart by address). No dependencies.
 */
import { streamChat } from './sse-chat.js';

const gatewayUrl = process.env.GATEWAY_URL ?? 'http://localhost:3000';
const message = process.argv.slice(2).join(' ') || 'Hello from the browser SSE example';
const token = process.env.GATEWAY_TOKEN;

try {
  const first = await streamChat({ gatewayUrl, message, token, onText: (text) => process.stdout.write(text) });
  process.stdout.write('\n');
  console.error(`[${first.finishReason}, session ${first.sessionId}]`);
  // The same sessionId continues the conversation: the gateway sends the model the history.
  const second = await streamChat({ gatewayUrl, message: 'And once more', sessionId: first.sessionId, token, onText: (text) => process.stdout.write(text) });
  process.stdout.write('\n');
  console.error(`[${second.finishReason}, ${second.usage?.outputTokens} tokens]`);
} catch (err) {
  console.error(`${err.code ?? 'ERROR'}: ${err.message}`);
  process.exitCode = 1;
}
