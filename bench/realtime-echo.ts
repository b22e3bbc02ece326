/**
 * A Realtime GA endpoint for the benchmark that answers every `input_audio_buffer.append` at
 * once with a `response.output_audio.delta` carrying the same audio: the round trip of an
 * audio chunk then measures the path, not a model.
 *
 *   node --import tsx bench/realtime-echo.ts      prints {"url":"ws://127.0.0.1:PORT/v1/realtime"}
 *
 * Exits on SIGTERM or when its stdin closes.
 */
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/realtime', perMessageDeflate: false });
let n = 0;
const id = (prefix: string) => `${prefix}_${(++n).toString(36).padStart(12, '0')}`;

wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'session.created', event_id: id('event'), session: { id: id('sess'), object: 'realtime.session', type: 'realtime', model: 'gpt-realtime' } }));
  ws.on('message', (data) => {
    let event: { type?: unknown; audio?: unknown; event_id?: unknown };
    try {
      event = JSON.parse(data.toString()) as typeof event;
    } catch {
      return;
    }
    if (event.type === 'input_audio_buffer.append' && typeof event.audio === 'string') {
      ws.send(JSON.stringify({ type: 'response.output_audio.delta', event_id: id('event'), response_id: 'resp_bench', item_id: 'item_bench', output_index: 0, content_index: 0, delta: event.audio }));
    } else if (event.type === 'session.update') {
      ws.send(JSON.stringify({ type: 'session.updated', event_id: id('event'), session: { type: 'realtime' } }));
    }
  });
});

wss.on('listening', () => {
  const address = wss.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ url: `ws://127.0.0.1:${port}/v1/realtime` })}\n`);
});

const stop = () => {
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
