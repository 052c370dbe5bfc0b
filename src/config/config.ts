import { z } from 'zod';

import {
  AnomalySettingsError,
  DEFAULT_ANOMALY_SETTINGS,
  validateAnomalySettings,
  type AnomalySettings,
} from '../abuse/anomaly-detector.ts';
import type { AuthFailureSettings, RateLimitSettings } from '../abuse/rate-limits.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Signing algorithms Mayfly can generate keys for; a change rotates through the key lifecycle. */
export const SIGNING_ALGS = ['ES256', 'EdDSA', 'PS256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** Clock difference tolerated between Mayfly and a resource server when keeping retired keys published. */
export const CLOCK_SKEW_SECONDS = 60;
/** Time a resource server is given, beyond the JWKS max-age, to refetch the key set. */
export const JWKS_REFRESH_MARGIN_SECONDS = 60;

export type DatabaseConfig =
  | {
      kind: 'postgres';
      url: string;
      poolMax: number;
      /**
       * Hot statements as named prepared statements (parsed and planned once per connection). Off behind a pooler
       * in transaction mode that cannot keep them (pgbouncer before 1.21).
       */
      prepare: boolean;
    }
  | { kind: 'pglite'; dataDir: string | undefined };

export interface Config {
  port: number;
  host: string;
  /** Origin of the issuer, without a trailing slash. */
  issuer: string;
  database: DatabaseConfig;
  keysDir: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  trustProxy: boolean;
  /** Proxies that append to X-Forwarded-For: the client address is the entry the outermost of them wrote. */
  proxyHops: number;
  /** Serve /metrics on this port only (an internal one); undefined: on the main port. */
  metricsPort: number | undefined;
  /** Seconds a shutdown waits for requests in flight before cutting their connections. */
  shutdownTimeout: number;
  /** Server processes sharing the port (node:cluster); more than one needs Postgres. */
  workers: number;
  dpop: {
    /** 32 bytes from MAYFLY_DPOP_NONCE_SECRET; when absent the embedded default keeps one under keysDir. */
    nonceSecret: Buffer | undefined;
    requireNonce: boolean;
  };
  tokens: {
    /** Server-wide ceiling on any resource's token lifetime, in seconds. */
    maxTtl: number;
    defaultTtl: number;
  };
  purgeIntervalSeconds: number;
  keys: KeySettings;
  /** Requests per minute; see src/abuse/rate-limits.ts. */
  rateLimits: RateLimitSettings;
  authFailures: AuthFailureSettings;
  anomalies: AnomalySettings;
  /** Allow clients' jwks_uri to resolve to loopback or private addresses (off: SSRF protection). */
  jwksUriAllowPrivate: boolean;
  /** Dynamic client registration (RFC 7591, RFC 7592) at /register, gated by initial access tokens; off by default. */
  registration: { enabled: boolean };
  /** The web console under /console (see src/console/). */
  console: ConsoleSettings;
  admin: {
    /** `<issuer>/admin`: the resource (token audience) of the admin API. */
    audience: string;
    /** Seconds a client's previous secret keeps working after a rotation, by default. */
    secretOverlapSeconds: number;
    /** A public JWKS for the first admin client (production): no private key is generated or written. */
    bootstrapJwksFile: string | undefined;
    /** The first admin client's id; random when unset. */
    bootstrapClientId: string | undefined;
  };
}

export interface ConsoleSettings {
  enabled: boolean;
  /** A session unused this many seconds ends. */
  idleTimeout: number;
  /** A session ends this many seconds after sign-in, however active. */
  sessionLifetime: number;
  /** Sign-in attempts per minute naming one user, from anywhere. */
  signInPerUser: number;
  /** Sign-in attempts per minute from one source address, whatever user they name. */
  signInPerAddress: number;
}

/** The signing-key lifecycle; every duration in seconds. See src/keys/lifecycle.ts. */
export interface KeySettings {
  alg: SigningAlg;
  /** How long a key signs before its successor takes over. */
  rotationInterval: number;
  /** How long a key is published before it signs: at least the JWKS max-age plus a margin. */
  propagation: number;
  /** How long a retired key stays published: at least the longest token lifetime plus clock skew. */
  retention: number;
  /** `Cache-Control: max-age` of the JWKS. */
  jwksMaxAge: number;
  /** How often each instance re-reads the key table and runs the planner. */
  checkInterval: number;
  /**
   * Key-encryption key (32 bytes) from MAYFLY_KEK; when absent the embedded default keeps one under keysDir, and a
   * server on Postgres refuses to start.
   */
  kek: Buffer | undefined;
  /** Former KEKs (MAYFLY_KEK_PREVIOUS) still accepted for unwrapping while keys are re-wrapped. */
  previousKeks: Buffer[];
}

/** Start-up refused: names every offending variable and what it expects. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const integer = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `expected an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`));

const flag = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }))
  .transform((v) => v === 'true' || v === '1');

const decimal = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?$/, 'expected a number such as 0.5 or 10')
  .transform(Number);

const nonEmpty = z.string().trim().min(1, 'expected a non-empty value');

const EnvSchema = z.object({
  PORT: integer(1, 65535).default(3000),
  HOST: nonEmpty.default('0.0.0.0'),
  MAYFLY_ISSUER: nonEmpty.optional(),
  DATABASE_URL: nonEmpty
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'expected a postgres:// or postgresql:// URL')
    .optional(),
  MAYFLY_DB_POOL_MAX: integer(1, 1000).default(10),
  MAYFLY_DB_PREPARED_STATEMENTS: flag.default(true),
  MAYFLY_DATA_DIR: nonEmpty.default('./data'),
  MAYFLY_KEYS_DIR: nonEmpty.default('./keys'),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }))
    .default('info'),
  LOG_FORMAT: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(LOG_FORMATS, { error: `expected one of ${LOG_FORMATS.join(', ')}` }))
    .optional(),
  MAYFLY_TRUST_PROXY: flag.default(false),
  MAYFLY_PROXY_HOPS: integer(1, 10).default(1),
  MAYFLY_METRICS_PORT: integer(1, 65535).optional(),
  MAYFLY_SHUTDOWN_TIMEOUT: integer(0, 600).default(10),
  MAYFLY_WORKERS: integer(1, 64).default(1),
  // The value itself never appears in an error message.
  MAYFLY_DPOP_NONCE_SECRET: z
    .string()
    .trim()
    .refine((v) => decodeSecret(v) !== undefined, 'expected 32 bytes encoded as base64url (43 characters)')
    .transform((v) => decodeSecret(v) ?? Buffer.alloc(0))
    .optional(),
  MAYFLY_DPOP_REQUIRE_NONCE: flag.default(false),
  MAYFLY_MAX_TOKEN_TTL: integer(30, 3600).default(900),
  MAYFLY_PURGE_INTERVAL: integer(1, 86_400).default(60),
  MAYFLY_JWKS_URI_ALLOW_PRIVATE: flag.default(false),
  MAYFLY_REGISTRATION: flag.default(false),
  MAYFLY_CONSOLE: flag.default(true),
  MAYFLY_CONSOLE_IDLE_TIMEOUT: integer(60, 86_400).default(900),
  MAYFLY_CONSOLE_SESSION_LIFETIME: integer(300, 604_800).default(28_800),
  MAYFLY_CONSOLE_SIGNIN_PER_USER: integer(1, 10_000).default(10),
  MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS: integer(1, 100_000).default(30),
  MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: integer(1, 10_000_000).default(600),
  MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS: integer(1, 10_000_000).default(1_200),
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: integer(1, 10_000_000).default(6_000),
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_ADDRESS: integer(1, 10_000_000).default(60_000),
  MAYFLY_RATE_LIMIT_REGISTRATION_PER_ADDRESS: integer(1, 10_000_000).default(60),
  MAYFLY_RATE_LIMIT_REGISTRATION_PER_TOKEN: integer(1, 10_000_000).default(20),
  MAYFLY_AUTH_FAILURE_SLOW_AFTER: integer(1, 10_000_000).default(5),
  MAYFLY_AUTH_FAILURE_BLOCK_AFTER: integer(2, 10_000_000).default(20),
  MAYFLY_AUTH_FAILURE_WINDOW: integer(1, 86_400).default(900),
  MAYFLY_AUTH_FAILURE_BLOCK: integer(1, 86_400).default(900),
  MAYFLY_ANOMALY_WINDOW: integer(10, 86_400).optional(),
  MAYFLY_ANOMALY_DENIAL_RATIO: decimal.optional(),
  MAYFLY_ANOMALY_MIN_REQUESTS: integer(1, 10_000_000).optional(),
  MAYFLY_ANOMALY_SPIKE_FACTOR: decimal.optional(),
  MAYFLY_ANOMALY_MIN_ISSUED: integer(1, 10_000_000).optional(),
  MAYFLY_ANOMALY_BASELINE_WINDOWS: integer(1, 10_000).optional(),
  MAYFLY_ANOMALY_MAX_ADDRESSES: integer(1, 100_000).optional(),
  MAYFLY_ANOMALY_MAX_DPOP_KEYS: integer(1, 100_000).optional(),
  MAYFLY_ANOMALY_INACTIVE_ATTEMPTS: integer(1, 10_000_000).optional(),
  MAYFLY_ANOMALY_COOLDOWN: integer(1, 86_400).optional(),
  MAYFLY_SECRET_OVERLAP: integer(0, 2_592_000).default(86_400),
  MAYFLY_ADMIN_JWKS_FILE: nonEmpty.optional(),
  MAYFLY_SIGNING_ALG: z
    .string()
    .trim()
    .pipe(z.enum(SIGNING_ALGS, { error: `expected one of ${SIGNING_ALGS.join(', ')}` }))
    .default('ES256'),
  MAYFLY_KEY_ROTATION_INTERVAL: integer(60, 31_536_000).default(86_400),
  MAYFLY_KEY_PROPAGATION: integer(10, 2_592_000).default(3_600),
  MAYFLY_KEY_RETENTION: integer(60, 2_592_000).optional(),
  MAYFLY_JWKS_MAX_AGE: integer(0, 86_400).default(300),
  MAYFLY_KEY_CHECK_INTERVAL: integer(1, 3_600).default(5),
  // Key material: the values never appear in an error message.
  MAYFLY_KEK: z
    .string()
    .trim()
    .refine((v) => decodeSecret(v) !== undefined, 'expected 32 bytes encoded as base64url (43 characters)')
    .transform((v) => decodeSecret(v) ?? Buffer.alloc(0))
    .optional(),
  MAYFLY_KEK_PREVIOUS: z
    .string()
    .trim()
    .refine(
      (v) => v.split(',').every((part) => decodeSecret(part.trim()) !== undefined),
      'expected a comma-separated list of 32-byte keys encoded as base64url',
    )
    .transform((v) => v.split(',').map((part) => decodeSecret(part.trim()) ?? Buffer.alloc(0)))
    .optional(),
  // RFC 6749 §2.2 / Appendix A.1: client_id = *VSCHAR.
  MAYFLY_ADMIN_CLIENT_ID: nonEmpty
    .regex(/^[\x20-\x7E]{1,255}$/, 'expected 1 to 255 printable ASCII characters')
    .optional(),
});

export function decodeSecret(value: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(value)) return undefined;
  const bytes = Buffer.from(value, 'base64url');
  // Only the canonical encoding: two spellings of one secret would be a trap when comparing instances.
  return bytes.length === 32 && bytes.toString('base64url') === value ? bytes : undefined;
}

/**
 * Reads the environment once, at boot. Every problem is collected so an operator fixes them in one pass.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const blankAsUnset = Object.fromEntries(
    Object.entries(env).filter(
      ([key, value]) => key in EnvSchema.shape && value !== undefined && value !== '',
    ),
  );
  const parsed = EnvSchema.safeParse(blankAsUnset);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const variable = String(issue.path[0] ?? 'environment');
        const shown = showValue(variable, env[variable]);
        return `${variable}: ${issue.message}${shown}`;
      }),
    );
  }
  const e = parsed.data;

  const problems: string[] = [];
  const issuer = normalizeIssuer(e.MAYFLY_ISSUER ?? `http://localhost:${e.PORT}`, problems);
  const keys = keySettings(e, problems);
  if (e.MAYFLY_WORKERS > 1 && !e.DATABASE_URL) {
    problems.push(
      `MAYFLY_WORKERS: more than one worker needs DATABASE_URL: the embedded database belongs to one process ` +
        `(got ${e.MAYFLY_WORKERS})`,
    );
  }
  if (e.MAYFLY_AUTH_FAILURE_BLOCK_AFTER <= e.MAYFLY_AUTH_FAILURE_SLOW_AFTER) {
    problems.push(
      `MAYFLY_AUTH_FAILURE_BLOCK_AFTER: expected more than MAYFLY_AUTH_FAILURE_SLOW_AFTER ` +
        `(${e.MAYFLY_AUTH_FAILURE_SLOW_AFTER}): failures are slowed before they are blocked ` +
        `(got ${e.MAYFLY_AUTH_FAILURE_BLOCK_AFTER})`,
    );
  }
  const anomalies = anomalySettings(e, problems);
  if (e.MAYFLY_METRICS_PORT !== undefined && e.MAYFLY_METRICS_PORT === e.PORT) {
    problems.push(`MAYFLY_METRICS_PORT: expected a port other than PORT (${e.PORT}), or leave it unset`);
  }
  if (problems.length) throw new ConfigError(problems);

  return {
    port: e.PORT,
    host: e.HOST,
    issuer,
    database: e.DATABASE_URL
      ? {
          kind: 'postgres',
          url: e.DATABASE_URL,
          poolMax: e.MAYFLY_DB_POOL_MAX,
          prepare: e.MAYFLY_DB_PREPARED_STATEMENTS,
        }
      : { kind: 'pglite', dataDir: e.MAYFLY_DATA_DIR },
    keysDir: e.MAYFLY_KEYS_DIR,
    logLevel: e.LOG_LEVEL,
    // Readable lines for a person at a terminal in development; JSON everywhere else.
    logFormat: e.LOG_FORMAT ?? (process.stdout.isTTY && env.NODE_ENV !== 'production' ? 'pretty' : 'json'),
    trustProxy: e.MAYFLY_TRUST_PROXY,
    proxyHops: e.MAYFLY_PROXY_HOPS,
    metricsPort: e.MAYFLY_METRICS_PORT,
    shutdownTimeout: e.MAYFLY_SHUTDOWN_TIMEOUT,
    workers: e.MAYFLY_WORKERS,
    dpop: { nonceSecret: e.MAYFLY_DPOP_NONCE_SECRET, requireNonce: e.MAYFLY_DPOP_REQUIRE_NONCE },
    tokens: { maxTtl: e.MAYFLY_MAX_TOKEN_TTL, defaultTtl: Math.min(300, e.MAYFLY_MAX_TOKEN_TTL) },
    purgeIntervalSeconds: e.MAYFLY_PURGE_INTERVAL,
    keys,
    rateLimits: {
      tokenPerClient: e.MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT,
      tokenPerAddress: e.MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS,
      introspectionPerClient: e.MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT,
      introspectionPerAddress: e.MAYFLY_RATE_LIMIT_INTROSPECTION_PER_ADDRESS,
      registrationPerAddress: e.MAYFLY_RATE_LIMIT_REGISTRATION_PER_ADDRESS,
      registrationPerToken: e.MAYFLY_RATE_LIMIT_REGISTRATION_PER_TOKEN,
    },
    authFailures: {
      slowAfter: e.MAYFLY_AUTH_FAILURE_SLOW_AFTER,
      blockAfter: e.MAYFLY_AUTH_FAILURE_BLOCK_AFTER,
      windowSeconds: e.MAYFLY_AUTH_FAILURE_WINDOW,
      blockSeconds: e.MAYFLY_AUTH_FAILURE_BLOCK,
    },
    anomalies,
    jwksUriAllowPrivate: e.MAYFLY_JWKS_URI_ALLOW_PRIVATE,
    registration: { enabled: e.MAYFLY_REGISTRATION },
    console: {
      enabled: e.MAYFLY_CONSOLE,
      idleTimeout: e.MAYFLY_CONSOLE_IDLE_TIMEOUT,
      sessionLifetime: Math.max(e.MAYFLY_CONSOLE_SESSION_LIFETIME, e.MAYFLY_CONSOLE_IDLE_TIMEOUT),
      signInPerUser: e.MAYFLY_CONSOLE_SIGNIN_PER_USER,
      signInPerAddress: e.MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS,
    },
    admin: {
      audience: `${issuer}/admin`,
      secretOverlapSeconds: e.MAYFLY_SECRET_OVERLAP,
      bootstrapJwksFile: e.MAYFLY_ADMIN_JWKS_FILE,
      bootstrapClientId: e.MAYFLY_ADMIN_CLIENT_ID,
    },
  };
}

const ANOMALY_VARIABLES: Partial<Record<keyof AnomalySettings, string>> = {
  windowSeconds: 'MAYFLY_ANOMALY_WINDOW',
  denialRatio: 'MAYFLY_ANOMALY_DENIAL_RATIO',
  minRequestsForRatio: 'MAYFLY_ANOMALY_MIN_REQUESTS',
  issuanceSpikeFactor: 'MAYFLY_ANOMALY_SPIKE_FACTOR',
  minIssuedForSpike: 'MAYFLY_ANOMALY_MIN_ISSUED',
  baselineWindows: 'MAYFLY_ANOMALY_BASELINE_WINDOWS',
  maxAddresses: 'MAYFLY_ANOMALY_MAX_ADDRESSES',
  maxDpopKeys: 'MAYFLY_ANOMALY_MAX_DPOP_KEYS',
  inactiveAttempts: 'MAYFLY_ANOMALY_INACTIVE_ATTEMPTS',
  cooldownSeconds: 'MAYFLY_ANOMALY_COOLDOWN',
};

/** The detector's thresholds: each variable overrides one default; the detector checks the result. */
function anomalySettings(e: z.output<typeof EnvSchema>, problems: string[]): AnomalySettings {
  const d = DEFAULT_ANOMALY_SETTINGS;
  const settings: AnomalySettings = {
    windowSeconds: e.MAYFLY_ANOMALY_WINDOW ?? d.windowSeconds,
    denialRatio: e.MAYFLY_ANOMALY_DENIAL_RATIO ?? d.denialRatio,
    minRequestsForRatio: e.MAYFLY_ANOMALY_MIN_REQUESTS ?? d.minRequestsForRatio,
    issuanceSpikeFactor: e.MAYFLY_ANOMALY_SPIKE_FACTOR ?? d.issuanceSpikeFactor,
    minIssuedForSpike: e.MAYFLY_ANOMALY_MIN_ISSUED ?? d.minIssuedForSpike,
    baselineWindows: e.MAYFLY_ANOMALY_BASELINE_WINDOWS ?? d.baselineWindows,
    maxAddresses: e.MAYFLY_ANOMALY_MAX_ADDRESSES ?? d.maxAddresses,
    maxDpopKeys: e.MAYFLY_ANOMALY_MAX_DPOP_KEYS ?? d.maxDpopKeys,
    inactiveAttempts: e.MAYFLY_ANOMALY_INACTIVE_ATTEMPTS ?? d.inactiveAttempts,
    cooldownSeconds: e.MAYFLY_ANOMALY_COOLDOWN ?? d.cooldownSeconds,
    maxClients: d.maxClients,
  };
  try {
    return validateAnomalySettings(settings);
  } catch (error) {
    if (!(error instanceof AnomalySettingsError)) throw error;
    const variable = ANOMALY_VARIABLES[error.field] ?? error.field;
    problems.push(`${variable}: ${error.message.replace(/^Invalid anomaly settings: \w+ /, '')}`);
    return settings;
  }
}

/**
 * The lifecycle settings and the relations between them that keep the schedule safe: a key is published long
 * enough for every cache to hold it before it signs, and stays published until its last token has expired.
 */
function keySettings(e: z.output<typeof EnvSchema>, problems: string[]): KeySettings {
  // A new key reaches other instances' JWKS within one check interval, and their caches within max-age after.
  const minPropagation = e.MAYFLY_JWKS_MAX_AGE + e.MAYFLY_KEY_CHECK_INTERVAL + JWKS_REFRESH_MARGIN_SECONDS;
  if (e.MAYFLY_KEY_PROPAGATION < minPropagation) {
    problems.push(
      `MAYFLY_KEY_PROPAGATION: expected at least ${minPropagation} (MAYFLY_JWKS_MAX_AGE ${e.MAYFLY_JWKS_MAX_AGE} ` +
        `plus MAYFLY_KEY_CHECK_INTERVAL ${e.MAYFLY_KEY_CHECK_INTERVAL} plus a ${JWKS_REFRESH_MARGIN_SECONDS} s ` +
        `margin), so every instance and resource server holds a key before it signs (got ${e.MAYFLY_KEY_PROPAGATION})`,
    );
  }
  if (e.MAYFLY_KEY_ROTATION_INTERVAL <= e.MAYFLY_KEY_PROPAGATION) {
    problems.push(
      `MAYFLY_KEY_ROTATION_INTERVAL: expected more than MAYFLY_KEY_PROPAGATION (${e.MAYFLY_KEY_PROPAGATION}): ` +
        `a successor is published one propagation time before it signs (got ${e.MAYFLY_KEY_ROTATION_INTERVAL})`,
    );
  }
  const minRetention = e.MAYFLY_MAX_TOKEN_TTL + CLOCK_SKEW_SECONDS;
  const retention = e.MAYFLY_KEY_RETENTION ?? Math.max(3_600, minRetention);
  if (retention < minRetention) {
    problems.push(
      `MAYFLY_KEY_RETENTION: expected at least ${minRetention} (MAYFLY_MAX_TOKEN_TTL ${e.MAYFLY_MAX_TOKEN_TTL} ` +
        `plus ${CLOCK_SKEW_SECONDS} s of clock skew), so every unexpired token's key stays published ` +
        `(got ${retention})`,
    );
  }
  return {
    alg: e.MAYFLY_SIGNING_ALG,
    rotationInterval: e.MAYFLY_KEY_ROTATION_INTERVAL,
    propagation: e.MAYFLY_KEY_PROPAGATION,
    retention,
    jwksMaxAge: e.MAYFLY_JWKS_MAX_AGE,
    checkInterval: e.MAYFLY_KEY_CHECK_INTERVAL,
    kek: e.MAYFLY_KEK,
    previousKeks: e.MAYFLY_KEK_PREVIOUS ?? [],
  };
}

const SECRET_VARIABLES = new Set(['MAYFLY_DPOP_NONCE_SECRET', 'MAYFLY_KEK', 'MAYFLY_KEK_PREVIOUS']);

/**
 * The offending value, so the operator sees what was read — except secrets, and except credentials inside a URL
 * (a mistyped DATABASE_URL must not print its password).
 */
function showValue(variable: string, value: string | undefined): string {
  if (value === undefined || SECRET_VARIABLES.has(variable)) return '';
  const credentials = /^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i;
  const safe = credentials.test(value) ? value.replace(credentials, '$1***@') : value;
  return ` (got ${JSON.stringify(safe)})`;
}

function normalizeIssuer(value: string, problems: string[]): string {
  const url = URL.parse(value);
  const expected =
    'expected an absolute http(s) URL with no path, query or fragment, e.g. https://auth.example.com';
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    problems.push(`MAYFLY_ISSUER: ${expected}${showValue('MAYFLY_ISSUER', value)}`);
    return value;
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    problems.push(`MAYFLY_ISSUER: ${expected}${showValue('MAYFLY_ISSUER', value)}`);
  }
  return url.origin;
}
