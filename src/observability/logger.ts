import { pino, type DestinationStream, type Logger } from 'pino';

import type { LogLevel } from '../config/config.ts';

export type { Logger };

/**
 * Defence in depth: Mayfly never passes secrets or tokens to a log call, and these paths are censored should
 * one slip through.
 */
const REDACT = [
  'client_secret',
  'client_assertion',
  'token',
  'access_token',
  'dpop',
  'authorization',
  '*.client_secret',
  '*.client_assertion',
  '*.token',
  '*.access_token',
  '*.dpop',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.dpop',
];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'mayfly' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
