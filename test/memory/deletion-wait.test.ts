/**
 * A deletion waits only briefly for the memory batch being written on its node: that batch
 * holds other users' messages, and its embedding call may hang for as long as the provider's
 * timeouts and retries allow. Returning early must not leave the deleted memory written: the
 * batch, when its embedding finally completes, writes it and then takes it back. A real gateway,
 * the real openai client against the OpenAI stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELETION_WAIT_MS } from '../../src/memory/long-term-memory.js';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const HANG_MS = 5_000;
const MARKER = 'alice-secret';

describe('a deletion while the embedding provider hangs', () => {
  let standin: Standin;
  let gw: TestGateway;
  beforeAll(async () => {
    standin = await startOpenAIStandin({ apiKey: 'sk-x' });
    // Embeddings of Alice's secret take HANG_MS (within the provider's timeout: they do complete).
    standin.setScript((req) => (req.path.endsWith('/embeddings') && JSON.stringify(req.body).includes(MARKER) ? { tokens: ['x'], firstTokenDelayMs: HANG_MS } : { tokens: ['x'] }));
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      OPENAI_API_KEY: 'sk-x',
      OPENAI_BASE_URL: standin.url,
      DEFAULT_MODEL: 'local',
      EMBEDDING_PROVIDER: 'openai',
      EMBEDDING_DIMENSIONS: '64',
      PROVIDER_TIMEOUT_MS: '30000',
      MEMORY_RECALL_TIMEOUT_MS: '100',
      RATE_LIMIT_ANON: '1000',
    });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
  });

  it('returns without waiting for the hanging batch, and the deleted memory is not left written when the batch completes', async () => {
    const alice = await register(gw.url, 'alice-deletion-wait@example.com');
    const embeddingsOfSecret = () => standin.requests.filter((r) => r.path.endsWith('/embeddings') && JSON.stringify(r.body).includes(MARKER)).length;
    const events = await readSse(await postChat(gw.url, { message: `${MARKER}: my PIN is 4711`, sessionId: 'a1' }, bearer(alice)));
    expect(events.at(-1)).toMatchObject({ done: true });
    // The recall's call, then the writer's: the batch holding Alice's message is being embedded.
    await waitFor(() => embeddingsOfSecret() >= 2, 10_000);
    const asked = performance.now();

    const started = performance.now();
    const res = await fetch(`${gw.url}/api/v2/conversations/a1`, { method: 'DELETE', headers: bearer(alice) });
    const took = performance.now() - started;
    expect(res.status).toBe(200);
    // The bounded wait, once (the second pass does not wait for the same batch again), not the hang.
    expect(took).toBeLessThan(DELETION_WAIT_MS + 1_500);

    // The embedding completes, the batch is written, and what the deletion discarded is taken back
    // (idle() without a limit waits for the batch to settle).
    const memory = gw.server.services.memory!;
    await new Promise((r) => setTimeout(r, Math.max(0, HANG_MS - (performance.now() - asked)) + 200));
    await memory.idle();
    expect((await memory.list(alice.user.id, { limit: 100 })).items.map((m) => m.text)).toEqual([]);
    const listed = (await (await fetch(`${gw.url}/api/v2/memory`, { headers: bearer(alice) })).json()) as { memories: unknown[] };
    expect(listed.memories).toEqual([]);
  });
});
