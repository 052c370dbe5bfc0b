import { Writable } from 'node:stream';

import { pino, type DestinationStream, type Logger } from 'pino';

import type { LogFormat, LogLevel } from '../config/config.ts';
import { currentRequestId } from './request-context.ts';

export type { Logger };

/** Names under which a secret or a token would travel. */
const SECRET_FIELDS = ['client_secret', 'client_assertion', 'token', 'access_token', 'dpop', 'authorization'];

/**
 * Defence in depth: Mayfly never passes secrets or tokens to a log call, and these paths are censored should
 * one slip through.
 */
const REDACT = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'req.headers.authorization',
  'req.headers.dpop',
];

/**
 * The same defence for records that are flat by type (every member a scalar or a list of strings), such as one
 * access attempt: nothing nests there, so only the top level is searched. Each wildcard path costs about 2 µs a
 * line, and these lines are written for every request.
 */
export function flatRecordLogger(log: Logger, bindings: Record<string, string>): Logger {
  return log.child(bindings, { redact: { paths: SECRET_FIELDS, censor: CENSOR } });
}

const CENSOR = '[redacted]';

/**
 * JSON lines on stdout by default (what log pipelines read); `pretty` prints one readable line per event for a
 * person at a terminal. Every line written while a request is handled carries its `req_id`.
 */
export function createLogger(
  level: LogLevel,
  destination?: DestinationStream,
  format: LogFormat = 'json',
): Logger {
  return pino(
    {
      level,
      base: { service: 'mayfly' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: CENSOR },
      formatters: { level: (label) => ({ level: label }) },
      mixin: () => {
        const id = currentRequestId();
        return id === undefined ? {} : { req_id: id };
      },
    },
    destination ?? (format === 'pretty' ? prettyLines(process.stdout) : undefined),
  );
}

const HIDDEN = new Set(['level', 'time', 'msg', 'service', 'component', 'req_id', 'pid', 'hostname']);

/** `12:00:01.234 INFO  [audit] token success  client_id=… req_id=…`: the JSON line, made for reading. */
export function prettyLines(out: NodeJS.WritableStream): DestinationStream {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          out.write(`${line}\n`);
          continue;
        }
        const time = typeof event.time === 'string' ? event.time.slice(11, 23) : '';
        const level = (typeof event.level === 'string' ? event.level : '').toUpperCase().padEnd(5);
        const component = typeof event.component === 'string' ? ` [${event.component}]` : '';
        const fields = Object.entries(event)
          .filter(([key]) => !HIDDEN.has(key))
          .map(([key, value]) => `${key}=${readable(value)}`);
        if (typeof event.req_id === 'string') fields.push(`req_id=${readable(event.req_id)}`);
        out.write(
          `${time} ${level}${component} ${readable(typeof event.msg === 'string' ? event.msg : '')}  ${fields.join(' ')}`.trimEnd() +
            '\n',
        );
      }
      done();
    },
  });
}

/** Plain text as is; anything else, and text with control characters (a forged line break, an escape), as JSON. */
function readable(value: unknown): string {
  // eslint-disable-next-line no-control-regex
  return typeof value === 'string' && !/[\u0000-\u001f\u007f]/.test(value) ? value : JSON.stringify(value);
}
