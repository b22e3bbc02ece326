import { pino, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';

/**
 * Structured JSON logs; secrets are redacted by path wherever they could appear. With
 * LOG_PRETTY=true (or, when it is unset, on a terminal) the same entries are written as one
 * readable line each, redacted the same way: pino redacts before the line is formatted.
 */
export function createNodeLogger(config: Pick<Config, 'logLevel' | 'logPretty'>, stdoutIsTTY = process.stdout.isTTY === true): Logger {
  const options: LoggerOptions = {
    level: config.logLevel,
    base: { service: 'ai-chat-gateway' },
    redact: {
      paths: [
        'headers.authorization',
        'headers.cookie',
        '*.headers.authorization',
        '*.headers.cookie',
        'token',
        '*.token',
        'password',
        '*.password',
        'apiKey',
        '*.apiKey',
      ],
      censor: '[redacted]',
    },
    serializers: { err: pino.stdSerializers.err },
  };
  if (!(config.logPretty ?? stdoutIsTTY)) return pino(options);
  // Synchronous, in this thread: a line is on the terminal before the process can exit.
  return pino(options, pretty({ sync: true, colorize: stdoutIsTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' }));
}
