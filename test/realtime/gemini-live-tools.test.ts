import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GeminiRealtimeProvider } from '../../src/realtime/gemini-realtime-provider.js';
import { defaultGeminiLiveScript, startGeminiLiveStandin, type GeminiLiveStandin } from '../standins/gemini-live-standin.js';
import { until } from '../standins/ws-standin-server.js';
import { Harness } from './realtime-harness.js';

type Json = Record<string, unknown>;

const KEY = 'AIzaLiveToolsTestKey0123456789abcdefghij';
const WEATHER = { type: 'function', name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } };
let standin: GeminiLiveStandin;
const harnesses: Harness[] = [];

/** A session whose first `session.update` is `session`; resolves once it is acknowledged. */
async function opened(session: Json, eventId = 'evt_setup'): Promise<Harness> {
  const h = new Harness(new GeminiRealtimeProvider({ apiKey: KEY, baseUrl: standin.url, model: 'gemini-2.5-flash-native-audio-preview-09-2025' }));
  harnesses.push(h);
  h.session.handleClientEvent({ type: 'session.update', event_id: eventId, session: { type: 'realtime', ...session } });
  await h.nth('session.updated', 0);
  return h;
}

const errorEvents = (h: Harness) => h.of('error').map((e) => e.error as Json);

beforeAll(async () => {
  standin = await startGeminiLiveStandin({ apiKey: KEY });
});
afterAll(async () => standin.close());
afterEach(() => {
  for (const h of harnesses.splice(0)) h.session.close();
  standin.setScript(defaultGeminiLiveScript());
});

describe('Gemini Live: session tools', () => {
  it('function tools are refused with a BAD_REQUEST error naming `tools`, not dropped in silence', async () => {
    const h = await opened({ tools: [WEATHER], tool_choice: 'auto' });
    const [error] = await until(() => h.of('error').length > 0 && errorEvents(h), 'error event');
    expect(error).toMatchObject({ type: 'invalid_request_error', code: 'BAD_REQUEST', param: 'tools', event_id: 'evt_setup', message: expect.stringMatching(/does not support tools/) });
    // The session goes on without them, and says so.
    expect(h.of('session.updated')[0]!.session).not.toHaveProperty('tools');
    expect(standin.connections.at(-1)!.setup).not.toHaveProperty('tools');
    expect(h.session.state).toBe('open');
  });

  it('a later session.update with tools is refused the same way', async () => {
    const h = await opened({ instructions: 'Be brief.' });
    h.session.handleClientEvent({ type: 'session.update', event_id: 'evt_tools', session: { type: 'realtime', instructions: 'Be brief.', tools: [WEATHER] } });
    await h.nth('session.updated', 1);
    const [error] = await until(() => h.of('error').length > 0 && errorEvents(h), 'error event');
    expect(error).toMatchObject({ code: 'BAD_REQUEST', param: 'tools', event_id: 'evt_tools' });
  });

  it('a tool_choice that needs tools, with none, is refused naming `tool_choice`', async () => {
    const h = await opened({ tool_choice: 'required' });
    const [error] = await until(() => h.of('error').length > 0 && errorEvents(h), 'error event');
    expect(error).toMatchObject({ code: 'BAD_REQUEST', param: 'tool_choice', message: expect.stringMatching(/tool_choice/) });
  });

  it('no tools (an empty list, tool_choice "auto" or "none") is fine', async () => {
    const h1 = await opened({ tools: [], tool_choice: 'auto' });
    const h2 = await opened({ tools: [], tool_choice: 'none' });
    await new Promise((r) => setTimeout(r, 200));
    expect(h1.of('error')).toEqual([]);
    expect(h2.of('error')).toEqual([]);
  });
});
