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
      held.add(finish);
    });
  });
  return {
    server,
    held: () => held.size,
    /** The smallest request body (bytes) of a held reply so far. */
    smallestHeld: () => smallestHeld,
    release() {
      for (const end of held) end();
      held.clear();
    },
  };
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
  beforeAll(async () => {
    await new Promise<void>((r) => standin.server.listen(0, '127.0.0.1', r));
    const port = (standin.server.address() as AddressInfo).port;
    gw = await startGateway({ OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, PROVIDER_MAX_RETRIES: '0', MAX_MESSAGE_CHARS: '400000', MAX_BODY_BYTES: '1000000', MODEL_CONTEXT_TOKENS: '2000000', HISTORY_LIMIT: '200', DEFAULT_MODEL: 'gpt-4o-mini' });
  });
  afterAll(async () => {
    standin.release();
    await gw.destroy();
    await new Promise<void>((r) => standin.server.close(() => r()));
  });

  it('does not keep the conversation it sent while its reply streams', async () => {
    // A long conversation: four 250,000-character messages (1 MB) in its history, all of it sent.
    const words = Array.from({ length: 60_000 }, (_, i) => `w${(i * 7919) % 10_007}`).join(' ');
    let sessionId: string | undefined;
    for (let m = 0; m < 4; m++) {
      const res = await postChat(gw.url, { message: `${m} ${words}`.slice(0, 250_000), model: 'gpt-4o-mini', ...(sessionId ? { sessionId } : {}) });
      expect(res.status, await res.clone().text()).toBe(200);
      const events = await readSse(res);
      expect(events.at(-1)).toMatchObject({ done: true });
      sessionId = events.at(-1)!.sessionId as string;
    }

    const turns = 8;
    // Retained heap per turn while `turns` replies wait for their model's next token.
    const round = async (): Promise<number> => {
      const before = await heapAfterGc();
      const responses = await Promise.all(Array.from({ length: turns }, (_, i) => postChat(gw.url, { message: `hold ${i}`, model: 'gpt-4o-mini', sessionId })));
      // Each reply has begun: its first token is out and its model is still answering.
      const readers = responses.map((r) => r.body!.getReader());
      await Promise.all(readers.map((r) => r.read()));
      await waitFor(() => standin.held() === turns, 5_000, 10);
      const during = await heapAfterGc();
      standin.release();
      await Promise.all(
        readers.map(async (r) => {
          while (!(await r.read()).done);
        }),
      );
      return (during - before) / turns;
    };
    // The first round also compiles the code of the path (heap that stays): measured, not judged.
    const warm = await round();
    const perTurn = await round();
    // Each turn loaded and sent the whole 1 MB conversation; what it keeps while it streams must be far less.
    expect(standin.smallestHeld()).toBeGreaterThan(1_000_000);
    console.log(`retained per streaming turn: ${(warm / 1024).toFixed(1)} KB, then ${(perTurn / 1024).toFixed(1)} KB`);
    expect(perTurn, `retained per streaming turn: ${(warm / 1024).toFixed(1)} KB, then ${(perTurn / 1024).toFixed(1)} KB`).toBeLessThan(256 * 1024);
  }, 60_000);
});
