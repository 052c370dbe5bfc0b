import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

import fc from 'fast-check';
import { exportJWK, type JWK } from 'jose';
import { sql } from 'kysely';

import type { Db } from '../../src/db/connect.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';

/**
 * Shared pieces of the fuzz suites: the generators of broken and valid request parts, a keep-alive HTTP client
 * that sends exactly what it is given, the database fingerprint that tells whether a refused request changed
 * anything, and the run settings (seed, runs, time limit) with the report of a failure.
 *
 * Generated values are descriptions ("the secret of client basic, with one character flipped"), never secrets:
 * fast-check prints a counterexample as generated, and no secret or token value may appear in test output. The
 * suites turn a description into a request at the last moment.
 */

/**
 * Rate limits and authentication-failure backoff would throttle thousands of requests from one address within a
 * minute; every fuzzed server lifts them (settings unknown to a server are ignored). Blocking must come after
 * slowing, hence the larger block threshold.
 */
export const FUZZ_SERVER_ENV: Record<string, string> = {
  MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '1000000',
  MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS: '1000000',
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: '1000000',
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_ADDRESS: '1000000',
  MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000000',
  MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '2000000',
};

// ---------------------------------------------------------------------------------------------------------------
// Run settings and reporting

export interface FuzzSettings {
  seed: number;
  numRuns: number;
  timeLimitMs: number;
  /** fast-check's counterexample path, to replay one failure (FUZZ_PATH). */
  path: string | undefined;
}

function readInteger(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new Error(`${name}: expected an integer, got ${raw}`);
  return value;
}

/**
 * FUZZ_SEED (default: random, always printed), FUZZ_RUNS (default 4000), FUZZ_TIME_LIMIT_MS (default 48 s of
 * requests, plus a few seconds of set-up: whichever ends first ends the run),
 * FUZZ_PATH (replay one counterexample).
 */
export function fuzzSettings(name: string): FuzzSettings {
  const settings: FuzzSettings = {
    seed: readInteger('FUZZ_SEED') ?? randomBytes(4).readInt32BE(0),
    numRuns: readInteger('FUZZ_RUNS') ?? 4_000,
    timeLimitMs: readInteger('FUZZ_TIME_LIMIT_MS') ?? 48_000,
    path: process.env.FUZZ_PATH || undefined,
  };
  console.info(
    `[fuzz:${name}] seed=${settings.seed} runs<=${settings.numRuns} time<=${settings.timeLimitMs}ms ` +
      `(reproduce with FUZZ_SEED=${settings.seed})`,
  );
  return settings;
}

/** Requests a run must reach within its time limit (FUZZ_MIN_REQUESTS, default 1000: a loaded CI machine still reaches it). */
export function minimumRequests(): number {
  return readInteger('FUZZ_MIN_REQUESTS') ?? 1_000;
}

export interface FuzzOutcome {
  numRuns: number;
  interrupted: boolean;
  seed: number;
}

/** A broken property, classed so that one defect met a thousand times is reported once. */
export interface Violation {
  /** What kind of failure on what kind of request, e.g. `5xx POST /admin/v1/resources`. */
  key: string;
  /** The request and the answer, secrets redacted (made only when the example is kept). */
  describe(): string;
}

interface ViolationClass {
  count: number;
  size: number;
  /** The shortest example seen (by its description's length), as a reproduction. */
  example: string;
  message: string;
  run: number;
}

/** The generated value as JSON, strings past 160 characters shortened (the full value replays with the seed). */
function describeExample(value: unknown): string {
  return JSON.stringify(value, (_key, member: unknown) => {
    if (typeof member === 'string' && member.length > 160) {
      return `${member.slice(0, 80)}…(${member.length} characters)`;
    }
    if (member instanceof Uint8Array) return `<${member.length} bytes>`;
    return member;
  });
}

/**
 * Runs an async property under the settings. A run does not stop at the first broken property: one defect that
 * most requests meet would hide every other, so each kind of violation is collected with its shortest example,
 * and the test fails at the end with all of them. The examples are descriptions (no secrets): the request they
 * describe, sent to a server set up as the suite sets it up, reproduces the failure; FUZZ_SEED replays the whole
 * run. FUZZ_STOP_ON_FIRST=1 throws at the first violation instead, so that fast-check shrinks it.
 */
export async function runFuzz<T>(
  name: string,
  settings: FuzzSettings,
  arbitrary: fc.Arbitrary<T>,
  predicate: (value: T) => Promise<Violation | undefined>,
): Promise<FuzzOutcome> {
  const stopOnFirst = process.env.FUZZ_STOP_ON_FIRST === '1';
  const violations = new Map<string, ViolationClass>();
  let run = 0;
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (value) => {
      run += 1;
      const violation = await predicate(value);
      if (!violation) return;
      if (stopOnFirst) throw new Error(violation.describe());
      const size = fc.stringify(value).length;
      const known = violations.get(violation.key);
      if (!known) {
        violations.set(violation.key, {
          count: 1,
          size,
          example: describeExample(value),
          message: violation.describe(),
          run,
        });
      } else {
        known.count += 1;
        if (size < known.size) {
          Object.assign(known, { size, example: describeExample(value), message: violation.describe(), run });
        }
      }
    }),
    {
      seed: settings.seed,
      numRuns: settings.numRuns,
      plugins: [fc.interruptAfterTimeLimit(settings.timeLimitMs)],
      ...(settings.path === undefined ? {} : { path: settings.path, endOnFailure: true }),
    },
  );
  console.info(
    `[fuzz:${name}] ${details.numRuns} runs${details.interrupted ? ' (stopped by the time limit)' : ''}, ` +
      `seed=${details.seed}, ${violations.size} kind(s) of violation`,
  );
  if (details.failed) {
    const report = await fc.asyncDefaultReportMessage(details);
    const cause =
      details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(
      `[fuzz:${name}] ${cause}\nreplay with FUZZ_SEED=${details.seed}` +
        (details.counterexamplePath ? ` FUZZ_PATH=${details.counterexamplePath}` : '') +
        `\n${report}`,
    );
  }
  if (violations.size) {
    const lines = [...violations].map(
      ([key, v]) =>
        `- ${key} — ${v.count}×; shortest example (run ${v.run}):\n    ${v.message}\n    request: ${v.example}`,
    );
    throw new Error(
      `[fuzz:${name}] ${violations.size} kind(s) of violation in ${details.numRuns} runs ` +
        `(FUZZ_SEED=${details.seed}):\n${lines.join('\n')}`,
    );
  }
  return { numRuns: details.numRuns, interrupted: details.interrupted, seed: details.seed };
}

// ---------------------------------------------------------------------------------------------------------------
// Process-level failures

/**
 * Records every unhandled rejection and uncaught exception while installed. The server runs in this process, so
 * anything it leaves unhandled lands here.
 */
export function watchProcessFailures(): { failures: string[]; stop(): void } {
  const failures: string[] = [];
  const describe = (value: unknown) =>
    value instanceof Error ? `${value.name}: ${value.message}` : String(value);
  const onRejection = (reason: unknown) => {
    failures.push(`unhandledRejection: ${describe(reason)}`);
  };
  const onException = (error: unknown) => {
    failures.push(`uncaughtException: ${describe(error)}`);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtExceptionMonitor', onException);
  return {
    failures,
    stop() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtExceptionMonitor', onException);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Secrets never printed

/** Every secret and token value a suite handles, so that any text can be printed with them replaced by a label. */
export class SecretRegistry {
  readonly #labels = new Map<string, string>();
  #longestFirst: [value: string, label: string][] | undefined;

  add(label: string, value: string | undefined): void {
    // Short values would also replace ordinary text; no secret or token here is that short.
    if (value !== undefined && value.length >= 12 && !this.#labels.has(value)) {
      this.#labels.set(value, label);
      this.#longestFirst = undefined;
    }
  }

  values(): [label: string, value: string][] {
    return [...this.#labels].map(([value, label]) => [label, value]);
  }

  redact(text: string): string {
    this.#longestFirst ??= [...this.#labels].sort(([a], [b]) => b.length - a.length);
    let out = text;
    for (const [value, label] of this.#longestFirst) {
      if (out.includes(value)) out = out.split(value).join(`[${label}]`);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What no response may contain

/** Marks of a stack trace, a file path, a runtime error name or a database message in a response body. */
export const INTERNAL_MARKERS: readonly RegExp[] = [
  /\n\s+at\s+\S/,
  /\bat\s+\S+\s+\([^)]*:\d+:\d+\)/,
  /node_modules/,
  /file:\/\//,
  /\/(?:work|home|usr|tmp)\/\S*\.(?:ts|js|mjs|cjs)\b/,
  /\.(?:ts|js|mjs|cjs):\d+:\d+/,
  /\b(?:TypeError|RangeError|ReferenceError|SyntaxError|EvalError|AggregateError)\b/,
  /Maximum call stack/i,
  /\b(?:kysely|pglite|node-postgres)\b/i,
  /\bSQLSTATE\b|duplicate key value|violates \S+ constraint|relation "|syntax error at or near/i,
  /invalid input syntax for|field value out of range|out of range for type|invalid byte sequence/i,
  /\bE(?:CONNREFUSED|CONNRESET|TIMEDOUT|PIPE)\b/,
  /in JSON at position|Unexpected token .* in JSON|is not valid JSON$/,
  /oidc-provider/i,
];

export function findInternalMarker(text: string): RegExp | undefined {
  return INTERNAL_MARKERS.find((marker) => marker.test(text));
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP with keep-alive, sending exactly what it is given

export interface WireRequest {
  method: string;
  /** Path and query, sent as they are. */
  path: string;
  /** Lower-case names; an array sends one header line per value. */
  headers?: Record<string, string | string[]>;
  body?: Buffer | undefined;
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  chunked?: boolean;
}

export interface WireResponse {
  /** 0 when no answer came (the `error` says why). */
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body when it is JSON, else undefined. */
  json: unknown;
  error?: string;
}

export class WireClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 4 });
  readonly #host: string;
  readonly #port: number;
  /** Requests sent so far. */
  sent = 0;

  constructor(baseUrl: string) {
    const url = new URL(baseUrl);
    this.#host = url.hostname;
    this.#port = Number(url.port);
  }

  send(request: WireRequest, timeoutMs = 15_000): Promise<WireResponse> {
    this.sent += 1;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (response: WireResponse) => {
        if (!settled) {
          settled = true;
          resolve(response);
        }
      };
      const failed = (error: unknown) => {
        settle({
          status: 0,
          headers: {},
          text: '',
          json: undefined,
          error:
            error instanceof Error
              ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}`
              : 'failed',
        });
      };
      const headers: OutgoingHttpHeaders = { ...request.headers };
      // Explicit framing: Node sends a GET or DELETE body without either header otherwise, and the server would
      // read the body as the next request.
      if (request.chunked) headers['transfer-encoding'] = 'chunked';
      else if (request.body !== undefined) headers['content-length'] = String(request.body.length);
      let outgoing: ReturnType<typeof httpRequest>;
      try {
        outgoing = httpRequest(
          {
            agent: this.#agent,
            host: this.#host,
            port: this.#port,
            method: request.method,
            path: request.path,
            headers,
          },
          (incoming) => {
            const chunks: Buffer[] = [];
            incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
            incoming.on('error', failed);
            incoming.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let json: unknown;
              try {
                json = text === '' ? undefined : JSON.parse(text);
              } catch {
                json = undefined;
              }
              settle({ status: incoming.statusCode ?? 0, headers: incoming.headers, text, json });
            });
          },
        );
      } catch (error) {
        // Node refused to put this on the wire (an invalid header character): a generator bug, not a server one.
        failed(new Error(`unsendable request: ${error instanceof Error ? error.message : 'invalid'}`));
        return;
      }
      outgoing.setTimeout(timeoutMs, () => {
        outgoing.destroy(new Error(`no answer within ${timeoutMs} ms`));
      });
      outgoing.on('error', failed);
      if (request.body !== undefined && request.chunked) {
        outgoing.write(request.body);
        outgoing.end();
      } else {
        outgoing.end(request.body);
      }
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** A path Node will send: characters outside printable ASCII percent-encoded, everything else (%, /, ?) as is. */
export function pathSafe(value: string): string {
  let out = '';
  for (const char of value) {
    out += /^[\x21-\x7e]$/.test(char) ? char : percentEncode(char);
  }
  return out;
}

/** encodeURIComponent over the UTF-8 bytes, without its URIError on lone surrogates (sent as U+FFFD). */
export function percentEncode(value: string, spaceAsPlus = false): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.!~*'()]/.test(c)) out += c;
    else if (spaceAsPlus && c === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A header value Node will send: UTF-8 bytes as Latin-1 characters, control characters but tab removed, at most
 * 4 KiB (all headers together stay below Node's 16 KiB limit, which answers 431 before the application sees the
 * request; the hardening tests cover that limit).
 */
export function headerSafe(value: string): string {
  return (
    Buffer.from(value, 'utf8')
      .toString('latin1')
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, '')
      .slice(0, 4096)
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Database fingerprint

/**
 * The tables that hold configuration and tokens, each reduced to a row count and an order-independent hash of
 * its rows' text, in one round trip.
 *
 * Left out, because a refused request legitimately records its attempt there:
 * - `replay_marker`: the jti of every DPoP proof and client assertion is claimed
 *   before anything else is checked (RFC 9449 §11.1, RFC 7523 §3), so a proof seen once cannot be replayed even in
 *   a request that fails for another reason;
 * - `rate_limit`: request and authentication-failure counters, which count refused requests by design;
 * - `audit_event` rows of anomalies (`anomaly.*`, actor system:anomaly-detection): the anomaly detector records
 *   unusual patterns of requests, refused ones included, by design — and off the request path, so such a row may
 *   land during a later request. The trail of changes to clients, resources and signing keys is compared: a
 *   refused request commits no change, so it records none.
 * `kysely_migration*` hold no state a request could touch.
 */
const FINGERPRINTED: Record<string, string> = {
  resource: 'select * from resource',
  client: 'select * from client',
  client_secret: 'select * from client_secret',
  client_grant: 'select * from client_grant',
  client_introspection: 'select * from client_introspection',
  oidc_payload: 'select * from oidc_payload',
  revoked_token: 'select * from revoked_token',
  signing_key: 'select * from signing_key',
  audit_event: "select * from audit_event where action not like 'anomaly.%'",
};

const FINGERPRINT_QUERY = `select ${Object.entries(FINGERPRINTED)
  .map(
    ([name, query]) =>
      `(select count(*) || ':' || coalesce(sum(hashtextextended(t::text, 0)), 0) from (${query}) t) as "${name}"`,
  )
  .join(', ')}`;

export type Fingerprint = Record<string, string>;

export async function fingerprint(db: Db): Promise<Fingerprint> {
  const { rows } = await sql.raw<Fingerprint>(FINGERPRINT_QUERY).execute(db);
  const row = rows[0];
  if (!row) throw new Error('no fingerprint row');
  return row;
}

/** The tables whose fingerprint changed, with row counts before → after. */
export function changedTables(before: Fingerprint, after: Fingerprint): string[] {
  return Object.keys(FINGERPRINTED)
    .filter((table) => before[table] !== after[table])
    .map((table) => {
      const count = (value: string | undefined) => value?.split(':')[0] ?? '?';
      return `${table} (rows ${count(before[table])} → ${count(after[table])})`;
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Strings

const SPECIAL_STRINGS = [
  '',
  ' ',
  '\t',
  '\u0000',
  'a\u0000b',
  '\r\n',
  '\n',
  '%',
  '%zz',
  '%00',
  '%E0%A4%A',
  '%C0%AF',
  '..%2F..%2F',
  '../../',
  '\uFEFF',
  '\u202E',
  '\uD800',
  '\uDFFF',
  '😀',
  'ǅ',
  'İ',
  'ß',
  '\\',
  '"',
  "'",
  '<script>',
  '{}',
  '[]',
  'null',
  'undefined',
  'NaN',
  '-0',
  '1e999',
  '0x10',
  'true',
  '__proto__',
  'constructor',
  'toString',
  "' OR '1'='1",
  '${7*7}',
  '{{7*7}}',
  'a'.repeat(256),
  'a'.repeat(4097),
];

/** Any text: ASCII, Unicode (lone surrogates included), control characters, known troublemakers, huge values. */
export function weirdString(): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.string({ maxLength: 40 }), weight: 4 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 3 },
    {
      arbitrary: fc.string({
        unit: fc.integer({ min: 0, max: 31 }).map((code) => String.fromCharCode(code)),
        maxLength: 8,
      }),
      weight: 1,
    },
    { arbitrary: fc.constantFrom(...SPECIAL_STRINGS), weight: 3 },
    {
      arbitrary: fc
        .tuple(fc.constantFrom('a', 'é', '😀', '%', '\u0000', ' '), fc.integer({ min: 300, max: 20_000 }))
        .map(([unit, count]) => unit.repeat(count)),
      weight: 1,
    },
  );
}

/** A date-time as a client might send it, from the valid to the absurd (year 0, offsets past the year 9999). */
export function timestampString(): fc.Arbitrary<string> {
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  const crafted = fc
    .record({
      year: fc.oneof(fc.constantFrom(0, 1, 1969, 1970, 2038, 9999), fc.integer({ min: 0, max: 9999 })),
      month: fc.integer({ min: 1, max: 12 }),
      day: fc.integer({ min: 1, max: 28 }),
      hour: fc.integer({ min: 0, max: 23 }),
      minute: fc.integer({ min: 0, max: 59 }),
      second: fc.integer({ min: 0, max: 59 }),
      fraction: fc.option(fc.stringMatching(/^\d{1,9}$/), { nil: undefined }),
      offset: fc.oneof(
        fc.constant('Z'),
        fc
          .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
          .map(([sign, h, m]) => `${sign}${pad(h, 2)}:${pad(m, 2)}`),
      ),
    })
    .map(
      (t) =>
        `${pad(t.year, 4)}-${pad(t.month, 2)}-${pad(t.day, 2)}T${pad(t.hour, 2)}:${pad(t.minute, 2)}:` +
        `${pad(t.second, 2)}${t.fraction === undefined ? '' : `.${t.fraction}`}${t.offset}`,
    );
  return fc.oneof(
    { arbitrary: crafted, weight: 5 },
    {
      arbitrary: fc
        .date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true })
        .map((d) => d.toISOString()),
      weight: 1,
    },
    { arbitrary: weirdString(), weight: 1 },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations of a valid value

export type Mutation =
  | { op: 'flip'; at: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; text: string }
  | { op: 'append'; text: string }
  | { op: 'case' }
  | { op: 'double' }
  | { op: 'empty' }
  | { op: 'strip-signature' }
  | { op: 'swap-segments' }
  | { op: 'pad'; text: string };

export function mutation(): fc.Arbitrary<Mutation> {
  const at = fc.nat({ max: 10_000 });
  return fc.oneof(
    { arbitrary: at.map((n) => ({ op: 'flip' as const, at: n })), weight: 4 },
    { arbitrary: at.map((n) => ({ op: 'truncate' as const, at: n })), weight: 2 },
    {
      arbitrary: fc.tuple(at, weirdString()).map(([n, text]) => ({ op: 'insert' as const, at: n, text })),
      weight: 2,
    },
    { arbitrary: weirdString().map((text) => ({ op: 'append' as const, text })), weight: 2 },
    { arbitrary: fc.constant({ op: 'case' as const }), weight: 1 },
    { arbitrary: fc.constant({ op: 'double' as const }), weight: 1 },
    { arbitrary: fc.constant({ op: 'empty' as const }), weight: 1 },
    { arbitrary: fc.constant({ op: 'strip-signature' as const }), weight: 1 },
    { arbitrary: fc.constant({ op: 'swap-segments' as const }), weight: 1 },
    {
      arbitrary: fc.constantFrom(' ', '\t', '\n', '=', '.').map((text) => ({ op: 'pad' as const, text })),
      weight: 1,
    },
  );
}

/** Applies a mutation; the result always differs from a non-empty input unless the mutation cannot apply. */
export function mutate(value: string, m: Mutation): string {
  const index = (at: number) => (value.length === 0 ? 0 : at % value.length);
  switch (m.op) {
    case 'flip': {
      const i = index(m.at);
      const c = value[i];
      if (c === undefined) return 'A';
      const replacement = c === 'A' ? 'B' : c === 'a' ? 'b' : 'A';
      return value.slice(0, i) + replacement + value.slice(i + 1);
    }
    case 'truncate':
      return value.slice(0, index(m.at));
    case 'insert': {
      const i = index(m.at);
      return value.slice(0, i) + m.text + value.slice(i);
    }
    case 'append':
      return value + m.text;
    case 'case':
      return value === value.toUpperCase() ? value.toLowerCase() : value.toUpperCase();
    case 'double':
      return value + value;
    case 'empty':
      return '';
    case 'strip-signature': {
      const parts = value.split('.');
      return parts.length === 3 ? `${parts[0] ?? ''}.${parts[1] ?? ''}.` : value.slice(0, -1);
    }
    case 'swap-segments': {
      const parts = value.split('.');
      return parts.length === 3
        ? `${parts[1] ?? ''}.${parts[0] ?? ''}.${parts[2] ?? ''}`
        : Array.from(value).reverse().join('');
    }
    case 'pad':
      return `${m.text}${value}${m.text}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// JWS made by hand, so that every header member and the algorithm can be wrong on purpose

export interface ProofKey extends DpopKey {
  privateJwk: JWK;
}

/** DPoP keys of several types: the proofs of a fuzz run are signed with any of them. */
export async function prepareProofKeys(): Promise<ProofKey[]> {
  const keys: ProofKey[] = [];
  for (const alg of ['ES256', 'ES384', 'Ed25519', 'PS256']) {
    const key = await generateDpopKey(alg);
    keys.push({ ...key, privateJwk: await exportJWK(key.privateKey) });
  }
  return keys;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function subtleParams(alg: string): Parameters<typeof crypto.subtle.sign>[0] {
  switch (alg) {
    case 'ES256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ES384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'ES512':
      return { name: 'ECDSA', hash: 'SHA-512' };
    case 'PS256':
      return { name: 'RSA-PSS', saltLength: 32 };
    case 'RS256':
      return { name: 'RSASSA-PKCS1-v1_5' };
    default:
      return { name: 'Ed25519' };
  }
}

export type SignatureMode = 'key' | 'none' | 'HS256' | 'mismatch';

/**
 * A compact JWS over exactly this header and payload. `key` signs with the key's algorithm (the header's `alg`
 * is left as given); `none` leaves the signature empty; `HS256` signs with a random HMAC key; `mismatch` signs with
 * the key but names another algorithm in the header.
 */
export async function signJws(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: Pick<ProofKey, 'alg' | 'privateKey'>,
  mode: SignatureMode,
): Promise<string> {
  const fullHeader = { ...header };
  if (mode === 'none') fullHeader.alg = 'none';
  if (mode === 'HS256') fullHeader.alg = 'HS256';
  if (mode === 'mismatch') fullHeader.alg = key.alg === 'ES256' ? 'ES384' : 'ES256';
  const input = `${b64(fullHeader)}.${b64(payload)}`;
  if (mode === 'none') return `${input}.`;
  if (mode === 'HS256') {
    return `${input}.${createHmac('sha256', randomBytes(32)).update(input).digest('base64url')}`;
  }
  const signature = await crypto.subtle.sign(subtleParams(key.alg), key.privateKey, Buffer.from(input));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

// ---------------------------------------------------------------------------------------------------------------
// DPoP proofs

/** A proof described member by member: `ok` is the correct value for the request it goes with. */
export interface ProofSpec {
  kind: 'proof';
  key: number;
  htm: 'ok' | 'GET' | 'PUT' | 'post' | 'missing';
  htu: 'ok' | 'other-path' | 'query' | 'other-origin' | 'trailing-slash' | 'missing' | 'not-a-url';
  /** Seconds from now. */
  iat: 'ok' | 'missing' | 'string' | number;
  jti: 'ok' | 'missing' | 'short' | 'fixed' | 'number' | 'long';
  ath: 'ok' | 'missing' | 'wrong';
  typ: 'ok' | 'missing' | 'jwt' | 'at+jwt';
  signature: SignatureMode;
  jwk: 'ok' | 'private' | 'missing' | 'other-key' | 'symmetric' | 'garbage';
  nonce: 'none' | 'random';
}

export type DpopSpec =
  | ProofSpec
  | { kind: 'raw'; value: string }
  | { kind: 'mutated'; proof: ProofSpec; m: Mutation }
  | { kind: 'replay' };

export const mostly = <T>(good: T, bad: fc.Arbitrary<T>, goodWeight = 12): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: fc.constant(good), weight: goodWeight }, { arbitrary: bad, weight: 1 });

export function proofSpec(keyCount: number): fc.Arbitrary<ProofSpec> {
  return fc.record({
    kind: fc.constant('proof' as const),
    // Key 0 is the one a token is bound to, where that matters (the admin API).
    key: mostly(0, fc.nat({ max: keyCount - 1 }), 6),
    htm: mostly<ProofSpec['htm']>('ok', fc.constantFrom('GET', 'PUT', 'post', 'missing')),
    htu: mostly<ProofSpec['htu']>(
      'ok',
      fc.constantFrom('other-path', 'query', 'other-origin', 'trailing-slash', 'missing', 'not-a-url'),
    ),
    iat: mostly<ProofSpec['iat']>(
      'ok',
      fc.oneof(fc.constantFrom('missing' as const, 'string' as const), fc.integer({ min: -4000, max: 4000 })),
    ),
    jti: mostly<ProofSpec['jti']>('ok', fc.constantFrom('missing', 'short', 'fixed', 'number', 'long')),
    ath: mostly<ProofSpec['ath']>('ok', fc.constantFrom('missing', 'wrong')),
    typ: mostly<ProofSpec['typ']>('ok', fc.constantFrom('missing', 'jwt', 'at+jwt')),
    signature: mostly<SignatureMode>('key', fc.constantFrom('none', 'HS256', 'mismatch')),
    jwk: mostly<ProofSpec['jwk']>(
      'ok',
      fc.constantFrom('private', 'missing', 'other-key', 'symmetric', 'garbage'),
    ),
    nonce: mostly<ProofSpec['nonce']>('none', fc.constant('random'), 20),
  });
}

/** A proof right in every member, for the request it goes with. */
export const VALID_PROOF: ProofSpec = {
  kind: 'proof',
  key: 0,
  htm: 'ok',
  htu: 'ok',
  iat: 'ok',
  jti: 'ok',
  ath: 'ok',
  typ: 'ok',
  signature: 'key',
  jwk: 'ok',
  nonce: 'none',
};

/** A DPoP header value: a correct proof `validWeight` times in 20 + `validWeight`, else anything from subtly to utterly wrong. */
export function dpopSpec(keyCount: number, validWeight = 4): fc.Arbitrary<DpopSpec> {
  return fc.oneof(
    { arbitrary: fc.constant<DpopSpec>(VALID_PROOF), weight: validWeight },
    { arbitrary: proofSpec(keyCount), weight: 16 },
    { arbitrary: weirdString().map((value) => ({ kind: 'raw' as const, value })), weight: 1 },
    {
      arbitrary: fc
        .tuple(proofSpec(keyCount), mutation())
        .map(([proof, m]) => ({ kind: 'mutated' as const, proof, m })),
      weight: 2,
    },
    { arbitrary: fc.constant({ kind: 'replay' as const }), weight: 1 },
  );
}

export interface ProofTarget {
  method: string;
  /** The URL the proof is for: issuer and path, no query. */
  htu: string;
  /** The access token the request presents (admin API), for `ath`. */
  accessToken?: string | undefined;
}

/** Proofs signed so far, so that a later request can replay one. */
export class ProofMemory {
  last: string | undefined;
}

const FIXED_JTI = 'fuzz-fixed-jti-0123456789';

export async function buildProof(
  spec: DpopSpec,
  keys: readonly ProofKey[],
  target: ProofTarget,
  memory: ProofMemory,
): Promise<string> {
  if (spec.kind === 'raw') return spec.value;
  if (spec.kind === 'replay') return memory.last ?? 'no-proof-yet';
  const proofSpec = spec.kind === 'mutated' ? spec.proof : spec;
  const key = keys[proofSpec.key % keys.length];
  if (!key) throw new Error('no proof key');
  const other = keys[(proofSpec.key + 1) % keys.length] ?? key;
  const now = Math.floor(Date.now() / 1000);
  const url = new URL(target.htu);
  const htu = {
    ok: target.htu,
    'other-path': `${url.origin}/elsewhere`,
    query: `${target.htu}?q=1`,
    'other-origin': `https://other.example${url.pathname}`,
    'trailing-slash': `${target.htu}/`,
    missing: undefined,
    'not-a-url': 'not a url',
  }[proofSpec.htu];
  const claims: Record<string, unknown> = {
    htm: proofSpec.htm === 'ok' ? target.method : proofSpec.htm === 'missing' ? undefined : proofSpec.htm,
    htu,
    iat:
      proofSpec.iat === 'ok'
        ? now
        : proofSpec.iat === 'missing'
          ? undefined
          : proofSpec.iat === 'string'
            ? String(now)
            : now + proofSpec.iat,
    jti: {
      ok: randomUUID(),
      missing: undefined,
      short: 'abc',
      fixed: FIXED_JTI,
      number: 1234567890123,
      long: 'j'.repeat(300),
    }[proofSpec.jti],
  };
  if (target.accessToken !== undefined && proofSpec.ath !== 'missing') {
    claims.ath =
      proofSpec.ath === 'ok'
        ? Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(target.accessToken))).toString(
            'base64url',
          )
        : 'ath-that-matches-nothing-0123456789abcdef';
  }
  if (proofSpec.nonce === 'random') claims.nonce = randomBytes(16).toString('base64url');
  const jwk = {
    ok: key.publicJwk,
    private: key.privateJwk,
    missing: undefined,
    'other-key': other.publicJwk,
    symmetric: { kty: 'oct', k: randomBytes(32).toString('base64url') },
    garbage: 'not-a-jwk',
  }[proofSpec.jwk];
  const header: Record<string, unknown> = {
    typ: { ok: 'dpop+jwt', missing: undefined, jwt: 'JWT', 'at+jwt': 'at+jwt' }[proofSpec.typ],
    alg: key.alg,
    jwk,
  };
  const defined = (members: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(members).filter(([, value]) => value !== undefined));
  const proof = await signJws(defined(header), defined(claims), key, proofSpec.signature);
  memory.last = proof;
  return spec.kind === 'mutated' ? mutate(proof, spec.m) : proof;
}
