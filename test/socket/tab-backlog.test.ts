/**
 * The copies of a signed-in user's turns that the user's other tabs receive are bounded like a
 * turn's own socket: a tab whose outgoing buffer is over SOCKET_MAX_BACKLOG_BYTES is left out of
 * the copies, and one that stays over it for SLOW_CLIENT_TIMEOUT_MS is cut (chat:error
 * BAD_REQUEST, then disconnected). Before, a tab that never read made the server buffer every
 * token of every turn of its user.
 */
import { describe, expect, it } from 'vitest';
import type { AiServerToClientEvents } from '../../src/protocol/socket-events.js';
import { outgoingBytes } from '../../src/socket/backpressure.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { client, connected, EventLog, socketGatewayForSuite, sleep, type AiClient } from './socket-harness.js';
import type { TestGateway } from '../helpers/gateway.js';

const BACKLOG = 65_536;

/** A raw Engine.IO polling client on /ai that reads its connect answer, then never polls again; its id. */
async function stalledTab(url: string, token: string): Promise<string> {
  const base = `${url}/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(base)).text();
  const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
  await fetch(`${base}&sid=${sid}`, { method: 'POST', body: `40/ai,${JSON.stringify({ token })}`, headers: { 'Content-Type': 'text/plain;charset=UTF-8' } });
  expect(await (await fetch(`${base}&sid=${sid}`)).text()).toContain('40/ai,{"sid"');
  return sid;
}

/** Tabs A1..An: ordinary clients that read everything, running `turns` long turns each. */
async function busyTabs(url: string, token: string, n: number, turns: number): Promise<void> {
  const tabs = await Promise.all(
    Array.from({ length: n }, async () => {
      const a = client<AiClient>(`${url}/ai`, { auth: { token }, transports: ['websocket'] });
      const log = new EventLog<AiServerToClientEvents>(a);
      await connected(a);
      return { a, log };
    }),
  );
  const message = Array.from({ length: 1500 }, (_, i) => `word${i}`).join(' ');
  await Promise.all(
    tabs.map(async ({ a, log }) => {
      for (let i = 0; i < turns; i++) {
        a.emit('chat:start', { message, conversationId: null });
        await log.next('chat:end', 20_000);
      }
    }),
  );
}

const onServer = (gw: TestGateway, sid: string) => [...gw.server.io.of('/ai').sockets.values()].find((s) => (s.conn as unknown as { id: string }).id === sid);

describe('a signed-in user\u2019s tab that stops reading', () => {
  const gw = socketGatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, SOCKET_MAX_BACKLOG_BYTES: String(BACKLOG), RATE_LIMIT_USER: '1000' });

  it('does not make the server buffer the other tabs\u2019 turns without bound', async () => {
    const { url } = gw();
    const alice = await register(url, 'tab-backlog@example.com');
    const sid = await stalledTab(url, alice.token);
    expect(onServer(gw(), sid)).toBeDefined();

    await busyTabs(url, alice.token, 8, 5);
    await sleep(100);

    const tab = onServer(gw(), sid);
    const buffered = tab && tab.connected ? outgoingBytes(tab) : 0;
    // Bounded like a live turn's own socket: either the tab is cut, or its backlog stays near the bound.
    expect(buffered).toBeLessThanOrEqual(2 * BACKLOG);
  });
});

describe('a tab that stays over the bound', () => {
  const gw = socketGatewayForSuite({
    JWT_SECRET: TEST_JWT_SECRET,
    SOCKET_MAX_BACKLOG_BYTES: String(BACKLOG),
    SLOW_CLIENT_TIMEOUT_MS: '400',
    RATE_LIMIT_USER: '1000',
  });

  it('is cut after SLOW_CLIENT_TIMEOUT_MS, copies from other nodes included, while the tabs that read keep working', async () => {
    const { url } = gw();
    const alice = await register(url, 'tab-cut@example.com');
    const sid = await stalledTab(url, alice.token);
    const reader = client<AiClient>(`${url}/ai`, { auth: { token: alice.token }, transports: ['websocket'] });
    const log = new EventLog<AiServerToClientEvents>(reader);
    await connected(reader);

    // Copies of a turn running on another node arrive through the adapter: nothing on this node asks about the tabs' buffers.
    const content = 'x'.repeat(10_000);
    for (let i = 0; i < 12; i++) gw().server.io.of('/ai').to(`user:${alice.user.id}`).emit('chat:message', { content, isComplete: false, conversationId: 'elsewhere' });
    const tab = onServer(gw(), sid);
    expect(tab && outgoingBytes(tab)).toBeGreaterThan(BACKLOG);
    await sleep(1_500);
    expect(onServer(gw(), sid)).toBeUndefined();

    // The tab that reads was never cut.
    expect(log.all('chat:message')).toHaveLength(12);
    reader.emit('chat:start', { message: 'still here', conversationId: null });
    expect((await log.next('chat:end')).finishReason).toBe('stop');
  });
});
