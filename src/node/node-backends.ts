import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { createRateLimiter } from '../ratelimit/create-rate-limiter.js';
import type { Backends } from '../services.js';
import type { ConversationStore } from '../stores/conversation-store.js';
import { MongoConversationStore } from '../stores/mongo-conversation-store.js';
import { SqliteConversationStore } from '../stores/sqlite-conversation-store.js';

/** The one wiring module for Node: configuration picks each port's adapter. */
export async function createNodeBackends(config: Config, logger: Logger): Promise<Backends> {
  const store: ConversationStore = config.mongo
    ? await MongoConversationStore.connect(config.mongo.uri, config.mongo.db)
    : new SqliteConversationStore(join(config.dataDir, 'gateway.sqlite'));
  const limiter = createRateLimiter(config, logger);
  const jwtSecret = config.auth.jwtSecret ? new TextEncoder().encode(config.auth.jwtSecret) : persistedSecret(config.dataDir, logger);
  logger.info({ store: store.kind, rateLimiter: limiter.kind, authRequired: config.auth.required }, 'backends ready');
  return { logger, store, limiter, jwtSecret };
}

/**
 * With no JWT_SECRET, a strong one is generated on first start and kept in the data
 * directory (owner-only), so tokens survive restarts. Several nodes need a shared JWT_SECRET.
 */
function persistedSecret(dataDir: string, logger: Logger): Uint8Array {
  const file = join(dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString('base64url');
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    logger.warn({ file }, 'JWT_SECRET is not set: generated one and stored it in the data directory; set JWT_SECRET to share tokens across nodes');
  } else {
    logger.warn({ file }, 'JWT_SECRET is not set: using the generated secret from the data directory');
  }
  chmodSync(file, 0o600);
  return new TextEncoder().encode(readFileSync(file, 'utf8').trim());
}
