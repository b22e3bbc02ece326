import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TurnAbort } from '../../src/chat/turn-abort.js';
import { GeminiProvider } from '../../src/models/gemini-model.js';
import type { ModelMessage, ModelStreamPart } from '../../src/models/language-model.js';
import type { ProviderTransport } from '../../src/models/openai-model.js';
import { silentLogger } from '../../src/logger.js';
import { createNodeFetch } from '../../src/node/node-fetch.js';
import { modelParts } from '../helpers/turns.js';
import { startGeminiStandin, type Standin } from '../standins/gemini-standin.js';

const KEY = 'gemini-test-key';
const TIMEOUT_MS = 500;
const messages: ModelMessage[] = [{ role: 'user', content: 'Hi' }];

function provider(baseUrl: string, transport: ProviderTransport | undefined, maxRetries = 0): GeminiProvider {
  return new GeminiProvider({ apiKey: KEY, baseUrl, maxRetries, timeoutMs: TIMEOUT_MS, contextTokens: 128_000, logger: silentLogger, transport });
}

async function collect(p: GeminiProvider, signal = new AbortController().signal) {
  const started = Date.now();
  const parts: ModelStreamPart[] = [];
  let error: unknown;
  try {
    await modelParts(p.model('gemini-2.0-flash'), { messages, signal }, (part) => parts.push(part));
  } catch (err) {
    error = err;
  }
  const text = parts.flatMap((part) => (part.type === 'text-delta' ? [part.text] : [])).join('');
  return { text, finish: parts.find((part) => part.type === 'finish'), error, ms: Date.now() - started };
}

/** A server that takes requests and never answers them: it counts them, and the ones the client gave up on. */
async function silentServer() {
  const seen = { requests: 0, closed: 0 };
  const server = http.createServer((req) => {
    seen.requests++;
    req.socket.once('close', () => seen.closed++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { url, seen, close };
}

const transports: { name: string; transport: () => ProviderTransport | undefined }[] = [
  { name: 'global fetch', transport: () => undefined },
  { name: 'node fetch', transport: () => createNodeFetch() },
];

for (const { name, transport } of transports) {
  describe(`Gemini: PROVIDER_TIMEOUT_MS bounds the response head only, over ${name}`, () => {
    let standin: Standin;
    beforeAll(async () => {
      standin = await startGeminiStandin({ apiKey: KEY });
    });
    afterAll(() => standin.close());

    it('a reply that streams for three times the timeout, never idle for long, arrives whole', async () => {
      const tokens = Array.from({ length: 15 }, (_, i) => `t${i} `);
      standin.setScript(() => ({ tokens, delayMs: 100 }));
      const { text, finish, error, ms } = await collect(provider(standin.url, transport()));
      expect(error).toBeUndefined();
      expect(text).toBe(tokens.join(''));
      expect(finish).toMatchObject({ finishReason: 'stop' });
      expect(ms).toBeGreaterThan(3 * TIMEOUT_MS);
    });

    it('a provider that sends no response head within the timeout is a PROVIDER_ERROR, and the request is closed', async () => {
      const silent = await silentServer();
      try {
        const { error, ms } = await collect(provider(silent.url, transport()));
        expect(error).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/could not be reached/) });
        expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
        expect(ms).toBeLessThan(TIMEOUT_MS + 1500);
        await expect.poll(() => silent.seen.closed).toBe(1);
      } finally {
        await silent.close();
      }
    });

    it('an abort while the head is awaited ends the request at once with the abort reason', async () => {
      const silent = await silentServer();
      try {
        const controller = new AbortController();
        const reason = new TurnAbort('stop');
        setTimeout(() => controller.abort(reason), 50);
        const { error, ms } = await collect(provider(silent.url, transport()), controller.signal);
        expect(error).toBe(reason);
        expect(ms).toBeLessThan(TIMEOUT_MS);
        await expect.poll(() => silent.seen.closed).toBe(1);
      } finally {
        await silent.close();
      }
    });
  });
}

describe('Gemini: a head timeout is retried as before', () => {
  it('each attempt has its own head timeout; the last one failing is a PROVIDER_ERROR', { timeout: 10_000 }, async () => {
    const silent = await silentServer();
    try {
      const { error, ms } = await collect(provider(silent.url, createNodeFetch(), 1));
      expect(error).toMatchObject({ code: 'PROVIDER_ERROR', message: expect.stringMatching(/could not be reached/) });
      expect(silent.seen.requests).toBe(2);
      // Two timeouts and the SDK's backoff between them (1-2 s).
      expect(ms).toBeGreaterThanOrEqual(2 * TIMEOUT_MS + 1000 - 20);
      await expect.poll(() => silent.seen.closed).toBe(2);
    } finally {
      await silent.close();
    }
  });
});
