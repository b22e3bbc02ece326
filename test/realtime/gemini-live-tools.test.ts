import { describe, expect, it } from 'vitest';
import { until } from '../standins/ws-standin-server.js';
import type { Harness } from './realtime-harness.js';
import { geminiLiveSuite } from './gemini-live-suite.js';

type Json = Record<string, unknown>;

const KEY = 'AIzaLiveToolsTestKey0123456789abcdefghij';
const WEATHER = { type: 'function', name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } };
const live = geminiLiveSuite(KEY);

/** A session whose first `session.update` is `session`; resolves once it is acknowledged. */
const opened = (session: Json, eventId = 'evt_setup') => live.open({ type: 'session.update', event_id: eventId, session: { type: 'realtime', ...session } });

const errorEvents = (h: Harness) => h.of('error').map((e) => e.error as Json);

describe('Gemini Live: session tools', () => {
  it('function tools are refused with a BAD_REQUEST error naming `tools`, not dropped in silence', async () => {
    const h = await opened({ tools: [WEATHER], tool_choice: 'auto' });
    const [error] = await until(() => h.of('error').length > 0 && errorEvents(h), 'error event');
    expect(error).toMatchObject({ type: 'invalid_request_error', code: 'BAD_REQUEST', param: 'tools', event_id: 'evt_setup', message: expect.stringMatching(/does not support tools/) });
    // The session goes on without them, and says so.
    expect(h.of('session.updated')[0]!.session).not.toHaveProperty('tools');
    expect(live.standin.connections.at(-1)!.setup).not.toHaveProperty('tools');
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
