/**
 * What a streaming turn keeps while its reply streams: not the conversation it sent. A turn
 * loads its history, builds the model's context and sends it; none of that is needed once the
 * request is out, and a reply can stream for minutes. Measured as the heap that stays alive per
 * turn (after forced collections) while several turns in a long conversation wait for their
 * model's next token.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { waitFor } from '../helpers/wait.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const chunk = (delta: Record<string, string>, finish: string | null) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

/**
 * A minimal OpenAI stand-in that keeps nothing of what it is sent (the test measures this
 * process's heap): it counts the body's bytes, answers one token, and holds the stream open
 * until `release()` when the body asked for it ("hold" in the last message).
 */
function holdingStandin() {
  const held = new Set<() => void>();
  let smallestHeld = Number.POSITIVE_INFINITY;
  let heldSoFar = 0;
  const server = http.createServer((req, res) => {
    let hold = false;
    let tail = '';
    let bytes = 0;
    req.on('data', (d: Buffer) => {
      bytes += d.length;
      // Only the last bytes are looked at, copied out: nothing of the body is kept.
      hold ||= (tail + d.subarray(0, 16).toString('latin1')).includes('hold') || d.toString('latin1').includes('hold');
      tail = d.subarray(-16).toString('latin1');
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk({ role: 'assistant', content: 'one' }, null));
      const finish = () => res.end(`${chunk({}, 'stop')}data: [DONE]\n\n`);
      if (!hold) return finish();
      smallestHeld = Math.min(smallestHeld, bytes);
      heldSoFar++;
      held.add(finish);
    });
  });
  return {
    server,
    held: () => held.size,
    /** The smallest request body (bytes) of a held reply so far. */
    smallestHeld: () => smallestHeld,
    /** Replies held since the stand-in started. */
    heldSoFar: () => heldSoFar,
    release() {
      for (const end of held) end();
      held.clear();
    },
  };
}

/** POSTs a JSON body built by `body` (not kept after it is written); resolves with the response. */
function send(url: string, body: () => string, token?: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) } }, resolve);
    req.on('error', reject);
    req.end(body());
  });
}

async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  return getHeapStatistics().used_heap_size;
}

describe('a streaming turn', () => {
  const standin = holdingStandin();
  let gw: TestGateway;
  let token: string;
  beforeAll(async () => {
    await new Promise<void>((r) => standin.server.listen(0, '127.0.0.1', r));
    const port = (standin.server.address() as AddressInfo).port;
    gw = await startGateway({ OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, PROVIDER_MAX_RETRIES: '0', MAX_MESSAGE_CHARS: '400000', MAX_BODY_BYTES: '2000000', MODEL_CONTEXT_TOKENS: '2000000', HISTORY_LIMIT: '200', RATE_LIMIT_ANON: '1000', RATE_LIMIT_USER: '1000', LOCAL_MODEL_CONTEXT_TOKENS: '2000000', LOCAL_MODEL_TOKEN_DELAY_MS: '1000', DEFAULT_MODEL: 'gpt-4o-mini' });
    // /v1 always needs a token.
    token = (await register(gw.url, 'retention@example.com')).token;
  });
  afterAll(async () => {
    standin.release();
    await gw.destroy();
    await new Promise<void>((r) => standin.server.close(() => r()));
  });

  /** A conversation of four 250,000-character messages (1 MB), all of which the next turns send. */
  let sessionId: string | undefined;
  beforeAll(async () => {
    const words = Array.from({ length: 60_000 }, (_, i) => `w${(i * 7919) % 10_007}`).join(' ');
    for (let m = 0; m < 4; m++) {
      const res = await postChat(gw.url, { message: `${m} ${words}`.slice(0, 250_000), model: 'gpt-4o-mini', ...(sessionId ? { sessionId } : {}) });
      expect(res.status, await res.clone().text()).toBe(200);
      const events = await readSse(res);
      expect(events.at(-1)).toMatchObject({ done: true });
      sessionId = events.at(-1)!.sessionId as string;
    }
  });

  const turns = 8;
  /**
   * Retained heap per turn while `turns` replies of `model` in the long conversation wait for
   * their model's next token; `end` then ends them. Two rounds: the first also compiles the
   * code of the path (heap that stays), so the second is the one judged.
   */
  async function retainedPerTurn(model: string, end: (controllers: AbortController[]) => void): Promise<{ warm: number; measured: number }> {
    const round = async (): Promise<number> => {
      const before = await heapAfterGc();
      const controllers = Array.from({ length: turns }, () => new AbortController());
      const responses = await Promise.all(controllers.map((c, i) => postChat(gw.url, { message: `hold ${i}`, model, sessionId }, {}, c.signal)));
      // Each reply has begun: its first token is out and its model is still answering.
      const readers = responses.map((r) => r.body!.getReader());
      const firsts = await Promise.all(readers.map((r) => r.read()));
      for (const [i, first] of firsts.entries()) {
        expect(responses[i]!.status).toBe(200);
        expect(new TextDecoder().decode(first.value)).toContain('"content"');
      }
      const during = await heapAfterGc();
      end(controllers);
      await Promise.all(
        readers.map(async (r) => {
          try {
            while (!(await r.read()).done);
          } catch {
            // aborted
          }
        }),
      );
      return (during - before) / turns;
    };
    const warm = await round();
    return { warm, measured: await round() };
  }
  const kb = (r: { warm: number; measured: number }) => `retained per streaming turn: ${(r.warm / 1024).toFixed(1)} KB, then ${(r.measured / 1024).toFixed(1)} KB`;

  it('does not keep the conversation it sent while its reply streams (OpenAI)', async () => {
    const r = await retainedPerTurn('gpt-4o-mini', () => standin.release());
    // Each turn loaded and sent the whole 1 MB conversation; what it keeps while it streams must be far less.
    expect(standin.smallestHeld()).toBeGreaterThan(1_000_000);
    expect(r.measured, kb(r)).toBeLessThan(256 * 1024);
  }, 60_000);

  /**
   * The OpenAI-compatible route without a named conversation: the client sends the whole
   * history in each request (here 1 MB in four messages), streamed or not.
   */
  async function statelessRetainedPerTurn(stream: boolean): Promise<{ warm: number; measured: number }> {
    const words = Array.from({ length: 60_000 }, (_, i) => `w${(i * 7919) % 10_007}`).join(' ');
    const round = async (): Promise<number> => {
      const before = await heapAfterGc();
      const from = standin.heldSoFar();
      // Sent with node:http and not kept here, so that this process's client holds no copy of what it sent.
      const responses = Array.from({ length: turns }, (_, i) =>
        send(`${gw.url}/v1/chat/completions`, () =>
          JSON.stringify({
            model: 'gpt-4o-mini',
            stream,
            messages: [0, 1, 2, 3]
              .flatMap((m) => [
                { role: 'user', content: `${m} ${words}`.slice(0, 250_000) },
                { role: 'assistant', content: 'one' },
              ])
              .concat({ role: 'user', content: `hold ${i}` }),
          }),
          token,
        ),
      );
      /** Each response read to its end (started at once, so no event is missed). */
      const ends: Promise<unknown>[] = [];
      const readToEnd = (res: http.IncomingMessage) => {
        ends.push(new Promise((resolve) => res.once('end', resolve)));
        res.resume();
      };
      if (stream) {
        // Each reply has its first chunk out.
        for (const res of await Promise.all(responses)) {
          expect(res.statusCode).toBe(200);
          const first = await new Promise<string>((resolve) => res.once('data', (d: Buffer) => resolve(d.toString())));
          expect(first).toContain('chat.completion.chunk');
          readToEnd(res);
        }
      }
      // Each request is with the model, which holds its reply.
      await waitFor(() => standin.heldSoFar() - from === turns, 10_000, 10);
      const during = await heapAfterGc();
      standin.release();
      if (!stream) {
        for (const res of await Promise.all(responses)) {
          expect(res.statusCode).toBe(200);
          readToEnd(res);
        }
      }
      await Promise.all(ends);
      return (during - before) / turns;
    };
    const warm = await round();
    return { warm, measured: await round() };
  }

  it('nor on the OpenAI-compatible route, where the client sends the whole history (streamed)', async () => {
    const r = await statelessRetainedPerTurn(true);
    expect(standin.smallestHeld()).toBeGreaterThan(1_000_000);
    expect(r.measured, kb(r)).toBeLessThan(256 * 1024);
  }, 60_000);

  it('nor on the OpenAI-compatible route when the reply is not streamed', async () => {
    const r = await statelessRetainedPerTurn(false);
    expect(r.measured, kb(r)).toBeLessThan(256 * 1024);
  }, 60_000);

  it('nor with the embedded local model', async () => {
    // Its tokens come a second apart (LOCAL_MODEL_TOKEN_DELAY_MS): the replies are stopped once measured.
    const r = await retainedPerTurn('local', (controllers) => controllers.forEach((c) => c.abort()));
    expect(r.measured, kb(r)).toBeLessThan(256 * 1024);
  }, 60_000);
});
