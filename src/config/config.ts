import { z } from 'zod';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type DatabaseConfig =
  { kind: 'postgres'; url: string; poolMax: number } | { kind: 'pglite'; dataDir: string | undefined };

export interface Config {
  port: number;
  host: string;
  /** Origin of the issuer, without a trailing slash. */
  issuer: string;
  database: DatabaseConfig;
  keysDir: string;
  logLevel: LogLevel;
  trustProxy: boolean;
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
  /** Allow clients' jwks_uri to resolve to loopback or private addresses (off: SSRF protection). */
  jwksUriAllowPrivate: boolean;
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

const nonEmpty = z.string().trim().min(1, 'expected a non-empty value');

const EnvSchema = z.object({
  PORT: integer(1, 65535).default(3000),
  HOST: nonEmpty.default('0.0.0.0'),
  MAYFLY_ISSUER: nonEmpty.optional(),
  DATABASE_URL: nonEmpty
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'expected a postgres:// or postgresql:// URL')
    .optional(),
  MAYFLY_DB_POOL_MAX: integer(1, 1000).default(10),
  MAYFLY_DATA_DIR: nonEmpty.default('./data'),
  MAYFLY_KEYS_DIR: nonEmpty.default('./keys'),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }))
    .default('info'),
  MAYFLY_TRUST_PROXY: flag.default(false),
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
  MAYFLY_SECRET_OVERLAP: integer(0, 2_592_000).default(86_400),
  MAYFLY_ADMIN_JWKS_FILE: nonEmpty.optional(),
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
  if (problems.length) throw new ConfigError(problems);

  return {
    port: e.PORT,
    host: e.HOST,
    issuer,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolMax: e.MAYFLY_DB_POOL_MAX }
      : { kind: 'pglite', dataDir: e.MAYFLY_DATA_DIR },
    keysDir: e.MAYFLY_KEYS_DIR,
    logLevel: e.LOG_LEVEL,
    trustProxy: e.MAYFLY_TRUST_PROXY,
    dpop: { nonceSecret: e.MAYFLY_DPOP_NONCE_SECRET, requireNonce: e.MAYFLY_DPOP_REQUIRE_NONCE },
    tokens: { maxTtl: e.MAYFLY_MAX_TOKEN_TTL, defaultTtl: Math.min(300, e.MAYFLY_MAX_TOKEN_TTL) },
    purgeIntervalSeconds: e.MAYFLY_PURGE_INTERVAL,
    jwksUriAllowPrivate: e.MAYFLY_JWKS_URI_ALLOW_PRIVATE,
    admin: {
      audience: `${issuer}/admin`,
      secretOverlapSeconds: e.MAYFLY_SECRET_OVERLAP,
      bootstrapJwksFile: e.MAYFLY_ADMIN_JWKS_FILE,
      bootstrapClientId: e.MAYFLY_ADMIN_CLIENT_ID,
    },
  };
}

const SECRET_VARIABLES = new Set(['MAYFLY_DPOP_NONCE_SECRET']);

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
