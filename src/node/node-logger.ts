import { pino, type DestinationStream, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config.js';
import { redactLogFields, redactLogEntry, redactSecrets } from '../log-redaction.js';
import type { Logger } from '../logger.js';

/**
 * Structured JSON logs; secrets are hidden wherever they could appear (`redactLogEntry`: a
 * token, password or API key, credentials in headers, in an entry or in any object directly in
 * it, an error included). With LOG_PRETTY=true (or, when it is unset, on a terminal) the same
 * entries are written as one readable line each, hidden the same way: that happens before the
 * line is formatted. `destination`: where the lines go instead of stdout.
 */
export function createNodeLogger(
  config: Pick<Config, 'logLevel' | 'logPretty'>,
  stdoutIsTTY = process.stdout.isTTY === true,
  destination?: DestinationStream,
): Logger {
  const options: LoggerOptions = {
    level: config.logLevel,
    base: { service: 'ai-chat-gateway' },
    // Each entry, as it is written (a child logger's bindings: see childWithoutSecrets).
    formatters: { log: (entry) => redactLogEntry(entry, 'err') },
    // The error becomes a plain object first (its message, stack, cause and own fields), then its secrets are hidden.
    serializers: { err: (err: Error) => withoutKeys(redactLogFields(pino.stdSerializers.err(err))) },
  };
  if (!(config.logPretty ?? stdoutIsTTY)) return childWithoutSecrets(destination ? pino(options, destination) : pino(options));
  // Synchronous, in this thread: a line is on the terminal before the process can exit.
  const prettyOptions = { sync: true, colorize: stdoutIsTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' };
  return childWithoutSecrets(pino(options, pretty(destination ? { ...prettyOptions, destination } : prettyOptions)));
}

/**
 * An error's message and stack with anything shaped like a key masked: they carry the messages
 * of its causes, and a provider's error text may echo the key it was sent ("Incorrect API key
 * provided: sk-…"; OpenAI masks most of it, a compatible server or a proxy may not).
 */
function withoutKeys<T extends { message?: unknown; stack?: unknown }>(err: T): T {
  const message = typeof err.message === 'string' ? redactSecrets(err.message) : err.message;
  const stack = typeof err.stack === 'string' ? redactSecrets(err.stack) : err.stack;
  return message === err.message && stack === err.stack ? err : { ...err, message, stack };
}

/**
 * A child logger's bindings are written into every line it logs, serialized once when it is
 * made, and pino's `formatters.bindings` is not applied to children: their secrets are hidden
 * here, on the way in. (A child is made from its parent with `Object.create`, so every
 * descendant finds this `child`.)
 */
function childWithoutSecrets(root: pino.Logger): pino.Logger {
  type Child = (this: pino.Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => pino.Logger;
  const child = (Object.getPrototypeOf(root) as { child: Child }).child;
  Object.defineProperty(root, 'child', {
    value(this: pino.Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) {
      return child.call(this, redactLogEntry(bindings), options);
    },
    writable: true,
    configurable: true,
  });
  return root;
}
