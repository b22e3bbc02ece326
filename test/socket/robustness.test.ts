import { conversationOf } from '../helpers/conversations.js';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { register, type Account } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import {
  client,
  connected,
  disconnected,
  EventLog,
  socketGatewayForSuite,
  localEcho,
  sleep,
  TRANSPORTS,
  type AiClient,
  type DefaultClient,
  type LooseClient,
} from './socket-harness.js';

const MAX_CHARS = 1000;
const MAX_BUFFER = 20_000;
const HUGE = 'x'.repeat(MAX_CHARS * 5); // over MAX_MESSAGE_CHARS, under SOCKET_MAX_BUFFER_BYTES

/** Payloads no client should send; `undefined` is sent as an event with no argument at all. */
const GARBAGE: [string, unknown][] = [
  ['no argument', undefined],
  ['null', null],
  ['a string', 'hello'],
  ['a number', 42],
  ['an array', [{ message: 'hi' }]],
  ['a huge string', HUGE],
  ['binary', Buffer.from('{"message":"hi"}')],
];

function emitRaw(socket: LooseClient, event: string, payload: unknown): void {
  if (payload === undefined) socket.emit(event);
  else socket.emit(event, payload);
}

/** Every event answers garbage with the protocol's BAD_REQUEST, never silence, never a crash. */
describe('robustness against bad payloads', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, MAX_MESSAGE_CHARS: String(MAX_CHARS), SOCKET_MAX_BUFFER_BYTES: String(MAX_BUFFER) });
  let alice: Account;

  beforeAll(async () => {
    alice = await register(gw().url, 'alice-robust@example.com');
  });

  describe.each(TRANSPORTS)('over %s', (transport) => {
    async function rootClient() {
      const socket = client<DefaultClient>(gw().url, { transports: [transport], extraHeaders: { cookie: alice.cookie } });
      const log = new EventLog<DefaultServerToClientEvents>(socket);
      await connected(socket);
      return { socket, loose: socket as unknown as LooseClient, log };
    }
    async function aiClient() {
      const socket = client<AiClient>(`${gw().url}/ai`, { transports: [transport], auth: { token: alice.token } });
      const log = new EventLog<AiServerToClientEvents>(socket);
      await connected(socket);
      return { socket, loose: socket as unknown as LooseClient, log };
    }

    it('ai-message: each garbage payload answers ai-response BAD_REQUEST (the seed 001 path), then a valid turn works', async () => {
      const { socket, loose, log } = await rootClient();
      for (const [name, payload] of GARBAGE) {
        emitRaw(loose, 'ai-message', payload);
        const reply = await log.next('ai-response');
        expect({ name, reply }).toEqual({ name, reply: { error: 'chatId and content are required', code: 'BAD_REQUEST' } });
      }
      expect(socket.connected).toBe(true);
      expect(log.names.every((n) => n === 'ai-response')).toBe(true);
      socket.emit('ai-message', { chatId: `robust-${transport}`, content: 'valid at last' });
      expect(await log.next('ai-response')).toEqual({ chat: `robust-${transport}`, content: expect.stringContaining(localEcho('valid at last')) });
    });

    it('ai-message: bad fields answer on the right reply event with BAD_REQUEST', async () => {
      const { loose, log } = await rootClient();
      const cases: [unknown, 'ai-message-response' | 'ai-response', RegExp][] = [
        [{ prompt: HUGE }, 'ai-message-response', /at most 1000 characters/],
        [{ prompt: ['a'] }, 'ai-message-response', /prompt must be a string/],
        [{ prompt: { nested: true } }, 'ai-message-response', /prompt must be a string/],
        [{ chatId: 'ok-id', content: HUGE }, 'ai-response', /at most 1000 characters/],
        [{ chatId: 'ok-id', content: 42 }, 'ai-response', /content must be a string/],
        [{ chatId: ['ok-id'], content: 'hi' }, 'ai-response', /chatId/],
      ];
      for (const [payload, event, message] of cases) {
        loose.emit('ai-message', payload);
        expect(await log.next(event)).toEqual({ error: expect.stringMatching(message), code: 'BAD_REQUEST' });
      }
      expect(await conversationOf(gw(), 'ok-id')).toBeUndefined();
    });

    it('ai:chat: each garbage payload, and an over-long message, answers ai:error BAD_REQUEST, then a valid turn works', async () => {
      const { socket, loose, log } = await rootClient();
      for (const [name, payload] of [...GARBAGE, ['an over-long message', { message: HUGE }] as [string, unknown], ['a binary message', { message: Buffer.from('hi') }] as [string, unknown]]) {
        emitRaw(loose, 'ai:chat', payload);
        const reply = await log.next('ai:error');
        expect({ name, reply }).toEqual({ name, reply: { error: expect.any(String), code: 'BAD_REQUEST' } });
      }
      expect(log.all('ai:error').at(-2)?.error).toMatch(/at most 1000 characters/);
      expect(log.names.every((n) => n === 'ai:error')).toBe(true);
      expect(socket.connected).toBe(true);
      socket.emit('ai:chat', { message: 'valid at last' });
      expect(await log.next('ai:complete')).toMatchObject({ response: expect.stringContaining(localEcho('valid at last')) });
    });

    it('message: any payload is accepted without a reply; unknown events are ignored; the socket stays healthy', async () => {
      const { socket, loose, log } = await rootClient();
      for (const [, payload] of GARBAGE) emitRaw(loose, 'message', payload);
      loose.emit('no-such-event', { message: 'hi' });
      loose.emit('ai:complete', { response: 'forged' });
      await sleep(150);
      expect(log.events).toEqual([]);
      expect(socket.connected).toBe(true);
      socket.emit('ai-message', { prompt: 'are you ok?' });
      expect(await log.next('ai-message-response')).toEqual({ response: expect.stringContaining(localEcho('are you ok?')) });
    });

    it('chat:start: each garbage payload, and an over-long message, answers chat:error BAD_REQUEST, then a valid turn works', async () => {
      const { socket, loose, log } = await aiClient();
      for (const [name, payload] of [...GARBAGE, ['an over-long message', { message: HUGE }] as [string, unknown], ['a userId-only payload', { userId: 'u' }] as [string, unknown]]) {
        emitRaw(loose, 'chat:start', payload);
        const reply = await log.next('chat:error');
        expect({ name, reply }).toEqual({ name, reply: { message: expect.any(String), code: 'BAD_REQUEST' } });
      }
      expect(log.names.every((n) => n === 'chat:error')).toBe(true);
      expect(socket.connected).toBe(true);
      socket.emit('chat:start', { message: 'valid at last', conversationId: null });
      expect(await log.next('chat:end')).toMatchObject({ finishReason: 'stop', model: 'local' });
    });

    it('chat:stop with garbage arguments and unknown /ai events are ignored without a crash', async () => {
      const { socket, loose, log } = await aiClient();
      for (const [, payload] of GARBAGE) emitRaw(loose, 'chat:stop', payload);
      loose.emit('ai:chat', { message: 'wrong namespace' });
      await sleep(150);
      expect(log.events).toEqual([]);
      expect(socket.connected).toBe(true);
      socket.emit('chat:start', { message: 'still fine' });
      expect(await log.next('chat:end')).toMatchObject({ finishReason: 'stop' });
    });

    it('a payload over SOCKET_MAX_BUFFER_BYTES disconnects only that client; the server keeps serving the others', async () => {
      const bystander = await rootClient();
      const bystanderAi = await aiClient();
      const offender = await rootClient();
      const gone = disconnected(offender.socket);
      offender.loose.emit('ai:chat', { message: 'y'.repeat(MAX_BUFFER * 3) });
      expect(await gone).toMatch(/transport (close|error)/);
      expect(offender.log.events).toEqual([]);

      expect(bystander.socket.connected).toBe(true);
      expect(bystanderAi.socket.connected).toBe(true);
      bystander.socket.emit('ai:chat', { message: 'are we still up?' });
      expect(await bystander.log.next('ai:complete')).toMatchObject({ response: expect.stringContaining(localEcho('are we still up?')) });
      bystanderAi.socket.emit('chat:start', { message: 'and here?' });
      expect(await bystanderAi.log.next('chat:end')).toMatchObject({ finishReason: 'stop' });

      // New clients connect too, and the server let go of the offender.
      const fresh = await rootClient();
      fresh.socket.emit('ai-message', { prompt: 'new here' });
      expect(await fresh.log.next('ai-message-response')).toMatchObject({ response: expect.stringContaining(localEcho('new here')) });
      await waitFor(() => gw().server.gauges.byNamespace['/'] === 2, 3000);
      expect(gw().server.gauges.byNamespace['/ai']).toBe(1);
    });
  });
});
