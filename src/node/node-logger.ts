import { pino } from 'pino';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';

/** Structured JSON logs; secrets are redacted by path wherever they could appear. */
export function createNodeLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({
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
  });
}
