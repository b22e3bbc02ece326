/**
 * A reply of more entries than a Redis turn log keeps (LOG_MAX_ENTRIES, 50,000: one per tick
 * that handed text over) is no longer kept for resuming, rather than kept with its beginning
 * trimmed: a resume would replay it with a hole and no sign of one.
 */
import { describe, expect, it } from 'vitest';
import { RedisCluster } from '../../src/cluster/redis-cluster.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { tempDataDir } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';
import { startRedisServer } from '../standins/redis-server.js';

describe('a Redis turn log past its entries', () => {
  it('is forgotten (a resume answers that the turn is not kept), not replayed without its beginning', async () => {
    const redis = await startRedisServer();
    const cluster = await RedisCluster.connect(loadConfig({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, DATA_DIR: tempDataDir() }), silentLogger);
    try {
      const streams = cluster.streams!;
      const log = streams.open('owner/long');
      log.append({ type: 'start', conversationId: 'long', conversationCreated: true, userMessageId: 'u', content: 'hi', model: 'local' });
      // One entry per tick, as from a provider that hands over one token per network read.
      for (let i = 0; i < 50_010; i++) {
        log.append({ type: 'delta', text: `t${i} ` });
        await new Promise((r) => setImmediate(r));
      }
      log.append({ type: 'end', conversationId: 'long', messageId: 'm', content: 'whole', finishReason: 'stop', usage: undefined, model: 'local' });
      await waitFor(async () => (await streams.extent('owner/long', log.turnId)) === undefined, 10_000);
      expect(await streams.latest('owner/long')).toBeUndefined();
      const replayed: number[] = [];
      for await (const { seq } of streams.follow('owner/long', log.turnId, 0, new AbortController().signal)) replayed.push(seq);
      expect(replayed).toEqual([]);

      // A reply within the bound is kept whole, from its first event.
      const short = streams.open('owner/short');
      short.append({ type: 'start', conversationId: 'short', conversationCreated: true, userMessageId: 'u', content: 'hi', model: 'local' });
      for (let i = 0; i < 100; i++) {
        short.append({ type: 'delta', text: `t${i} ` });
        await new Promise((r) => setImmediate(r));
      }
      short.append({ type: 'end', conversationId: 'short', messageId: 'm', content: 'whole', finishReason: 'stop', usage: undefined, model: 'local' });
      await waitFor(async () => (await streams.extent('owner/short', short.turnId))?.ended === true, 5_000);
      const seqs: number[] = [];
      for await (const { seq } of streams.follow('owner/short', short.turnId, 0, new AbortController().signal)) seqs.push(seq);
      expect(seqs).toEqual(Array.from({ length: 102 }, (_, i) => i + 1));
    } finally {
      await cluster.close();
      await redis.close();
    }
  }, 120_000);
});
