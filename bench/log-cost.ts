/**
 * What logging a chat turn costs at the default level (`info`): the two lines a turn writes
 * (`chat turn ended` through the turn's bound logger, `request` through the request's), with
 * the gateway's Node logger (secrets hidden by src/log-redaction.ts), against the same pino
 * without any redaction (the floor) and with pino's own wildcard `redact` paths for the same
 * fields (what the gateway used before). Lines go to /dev/null; modes alternate.
 *
 *   npx tsx bench/log-cost.ts [--turns 200000] [--rounds 4]
 */
import { pino } from 'pino';
import { withBindings, type Logger } from '../src/logger.js';
import { createNodeLogger } from '../src/node/node-logger.js';
import { scriptArgs } from './script-args.js';

const USAGE = 'Usage: npx tsx bench/log-cost.ts [--turns 200000] [--rounds 4]';

const { turns: TURNS, rounds: ROUNDS } = scriptArgs(USAGE, { turns: 200_000, rounds: 4 });

const dest = pino.destination({ dest: '/dev/null', sync: true });
const base = { level: 'info', base: { service: 'ai-chat-gateway' }, serializers: { err: pino.stdSerializers.err } };
const PINO_PATHS = ['headers.authorization', 'headers.cookie', '*.headers.authorization', '*.headers.cookie', 'token', '*.token', 'password', '*.password', 'apiKey', '*.apiKey'];
const modes: Record<string, Logger> = {
  gateway: createNodeLogger({ logLevel: 'info', logPretty: false }, false, dest),
  'no redaction': pino(base, dest),
  'pino redact paths': pino({ ...base, redact: { paths: PINO_PATHS, censor: '[redacted]' } }, dest),
};

function turns(logger: Logger, n: number): number {
  const bound = withBindings(logger, { conversationId: 'conv-1', model: 'gpt-4o-mini', provider: 'openai' });
  const request = withBindings(logger, { reqId: '982cea87-184c-4e6a-a198-f87e405102fa' });
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    bound.info({ finishReason: 'stop', outputChars: 243, usage: { inputTokens: 19, outputTokens: 58 }, ms: 3 }, 'chat turn ended');
    request.info({ method: 'POST', path: '/api/v2/ai/chat/stream', status: 200, ms: 1.29 }, 'request');
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

for (const logger of Object.values(modes)) turns(logger, 20_000); // warm-up
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(modes).map((m) => [m, []]));
for (let r = 0; r < ROUNDS; r++) for (const [name, logger] of Object.entries(modes)) samples[name]!.push(turns(logger, TURNS));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`CPU per chat turn for its two info lines (µs), median of ${ROUNDS} rounds of ${TURNS}:`);
for (const [name, xs] of Object.entries(samples)) console.log(`  ${name.padEnd(18)} ${median(xs).toFixed(2).padStart(7)}   [${xs.map((x) => x.toFixed(1)).join(' ')}]`);
