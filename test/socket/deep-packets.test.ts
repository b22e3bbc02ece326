/**
 * Socket.IO packets nested deeper than JSON.stringify can go (a few kilobytes of brackets; the
 * parser reads them fine) must never reach a listener's throw: Socket.IO runs listeners from
 * process.nextTick, where a throw ends the process, every user's streams with it. A real gateway
 * process, raw Engine.IO frames over WebSocket (socket.io-client would refuse to encode them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/wait.js';

const DEPTH = 5_000;
const deep = '['.repeat(DEPTH) + ']'.repeat(DEPTH);

/** An Engine.IO WebSocket connected to `namespace`: send raw Socket.IO packets, read what comes back. */
async function rawSocket(gw: GatewayProcess, namespace: '/' | '/ai') {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  const frames: string[] = [];
  ws.on('message', (data) => {
    const text = data.toString();
    if (text === '2') ws.send('3');
    frames.push(text);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const prefix = namespace === '/' ? '' : `${namespace},`;
  ws.send(`40${prefix}`);
  await waitFor(() => frames.some((f) => f.startsWith(`40${prefix}{`)), 3000);
  const events = () =>
    frames
      .filter((f) => f.startsWith(`42${prefix}`))
      .map((f) => JSON.parse(f.slice(2 + prefix.length)) as [string, Record<string, unknown>]);
  return { ws, events, emit: (event: string, payloadJson: string) => ws.send(`42${prefix}["${event}",${payloadJson}]`) };
}

describe('Socket.IO events nested too deeply to serialise', () => {
  let gw: GatewayProcess;
  beforeAll(async () => {
    // No realtime provider: the session refuses what it cannot read before it would connect anywhere.
    gw = await spawnGateway({ REALTIME_PROVIDER: 'off' });
  });
  afterAll(() => gw.destroy());

  it('a realtime-message is answered with realtime-error BAD_REQUEST, and the process and the connection live on', async () => {
    const s = await rawSocket(gw, '/');
    s.emit('realtime-message', `{"type":"conversation.item.create","event_id":"evt_deep","item":${deep}}`);
    await waitFor(() => s.events().some(([name]) => name === 'realtime-error'), 3000);
    expect(s.events().find(([name]) => name === 'realtime-error')?.[1]).toEqual({ code: 'BAD_REQUEST', message: 'Realtime event could not be read: nested too deeply' });
    gw.assertAlive();
    // The same connection still chats.
    s.emit('ai:chat', '{"message":"still there?"}');
    await waitFor(() => s.events().some(([name]) => name === 'ai:complete'), 5000);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    s.ws.close();
  });

  it('deep payloads on every chat event are refused or ignored, never fatal', async () => {
    const root = await rawSocket(gw, '/');
    const ai = await rawSocket(gw, '/ai');
    for (const event of ['message', 'ai-message', 'ai:chat', 'ai:resume', 'realtime-audio']) root.emit(event, deep);
    root.emit('ai-message', `{"chatId":"c1","content":${deep}}`);
    root.emit('ai:chat', `{"message":"hi","sessionId":${deep}}`);
    for (const event of ['chat:start', 'chat:stop', 'chat:resume']) ai.emit(event, deep);
    ai.emit('chat:start', `{"message":"hi","model":${deep}}`);
    await waitFor(() => root.events().filter(([name]) => name === 'ai:error').length >= 3 && ai.events().some(([name]) => name === 'chat:error'), 5000);
    gw.assertAlive();
    for (const [, payload] of [...root.events(), ...ai.events()]) expect(JSON.stringify(payload)).not.toMatch(/at \w+ \(|RangeError|stack/);
    ai.emit('chat:start', '{"message":"after all that"}');
    await waitFor(() => ai.events().some(([name]) => name === 'chat:end'), 5000);
    root.ws.close();
    ai.ws.close();
  });
});
