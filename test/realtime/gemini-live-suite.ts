import { afterAll, afterEach, beforeAll } from 'vitest';
import { GeminiRealtimeProvider } from '../../src/realtime/gemini-realtime-provider.js';
import { defaultGeminiLiveScript, startGeminiLiveStandin, type GeminiLiveStandin } from '../standins/gemini-live-standin.js';
import { Harness } from './realtime-harness.js';
import { SEED_004_SESSION_CREATE } from './seed-004.js';

/**
 * A Gemini Live stand-in for one test file (started before its tests, closed after them), and
 * sessions opened against it through the real provider: each closed, and the stand-in's script
 * reset, after every test. Call at the top level of the file.
 */
export function geminiLiveSuite(apiKey: string): { readonly standin: GeminiLiveStandin; open(first?: Record<string, unknown>): Promise<Harness> } {
  let standin: GeminiLiveStandin | undefined;
  const harnesses: Harness[] = [];
  beforeAll(async () => {
    standin = await startGeminiLiveStandin({ apiKey });
  });
  afterAll(async () => standin?.close());
  afterEach(() => {
    for (const h of harnesses.splice(0)) h.session.close();
    standin?.setScript(defaultGeminiLiveScript());
  });
  return {
    get standin() {
      if (!standin) throw new Error('the Gemini Live stand-in starts before the tests');
      return standin;
    },
    /** A session whose first client event is `first` (seed 004's `session.update`); resolves once it is acknowledged. */
    async open(first = SEED_004_SESSION_CREATE) {
      const h = new Harness(new GeminiRealtimeProvider({ apiKey, baseUrl: this.standin.url, model: 'gemini-2.5-flash-native-audio-preview-09-2025' }));
      harnesses.push(h);
      h.session.handleClientEvent(first);
      await h.nth('session.updated', 0);
      return h;
    },
  };
}
