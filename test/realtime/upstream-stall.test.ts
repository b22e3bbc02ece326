/**
 * A realtime response the provider starts and then leaves silent ends the session with
 * PROVIDER_ERROR after PROVIDER_IDLE_TIMEOUT_MS (as a chat reply that goes quiet does), instead of
 * holding the client, its session slot and the provider connection until REALTIME_MAX_SESSION_MS.
 * A response whose parts keep coming within that time is not cut.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { defaultRealtimeScript, startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const KEY = 'sk-realtime-provider-SECRET-stall';

describe('a realtime response that goes quiet upstream', () => {
  let standin: RealtimeStandin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startRealtimeStandin({ apiKey: KEY });
    gw = await startGateway({ REALTIME_PROVIDER: 'openai', REALTIME_API_KEY: KEY, REALTIME_URL: standin.url, JWT_SECRET: TEST_JWT_SECRET, PROVIDER_IDLE_TIMEOUT_MS: '600' });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  async function respond(delayMs: number): Promise<{ frames: Array<Record<string, unknown>>; closed: Promise<number>; account: { token: string } }> {
    standin.setScript({ ...defaultRealtimeScript(), delayMs });
    const account = await register(gw.url, `stall-${delayMs}@example.com`);
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/realtime`, { headers: { Authorization: `Bearer ${account.token}` } });
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    await waitFor(() => frames.some((f) => f.type === 'session.created'), 3000);
    ws.send(JSON.stringify({ type: 'response.create' }));
    return { frames, closed, account };
  }

  it('ends the session with PROVIDER_ERROR once nothing came for PROVIDER_IDLE_TIMEOUT_MS mid-response', async () => {
    const started = Date.now();
    const { frames, closed, account } = await respond(20_000);
    const code = await closed;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(code).toBe(1011);
    expect(frames.some((f) => f.type === 'response.created')).toBe(true);
    expect(frames.some((f) => f.type === 'response.done')).toBe(false);
    expect(frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'PROVIDER_ERROR' } });
    const reasons = await waitFor(async () => {
      const r = await fetch(`${gw.url}/api/v2/realtime/sessions`, { headers: { Authorization: `Bearer ${account.token}` } });
      const body = (await r.json()) as { sessions: Array<{ endReason: string }> };
      return body.sessions.length > 0 ? body.sessions.map((s) => s.endReason) : undefined;
    }, 3000);
    expect(reasons).toEqual(['upstream: PROVIDER_ERROR']);
  });

  it('leaves a response whose parts keep coming within it alone', async () => {
    const { frames } = await respond(300);
    await waitFor(() => frames.some((f) => f.type === 'response.done'), 5000);
    expect(frames.some((f) => f.type === 'error')).toBe(false);
  });
});
