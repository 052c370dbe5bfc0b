import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { KEK_FILE, loadSecrets, NONCE_SECRET_FILE } from '../../src/config/secrets.ts';

const SECRET = 'snLyLT0ghNnRWc_TryfNloCptr_12VfDK8c8aYNknqE';
const KEK = 'q2dVLX8hFcCmJq1Yk3v0Bf7nTzR9sWeA4uGxHiLoMpE';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has working defaults for the embedded mode', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      issuer: 'http://localhost:3000',
      database: { kind: 'pglite', dataDir: './data' },
      keysDir: './keys',
      logLevel: 'info',
      trustProxy: false,
      dpop: { nonceSecret: undefined, requireNonce: false },
      tokens: { maxTtl: 900, defaultTtl: 300 },
      purgeIntervalSeconds: 60,
      jwksUriAllowPrivate: false,
      admin: {
        audience: 'http://localhost:3000/admin',
        secretOverlapSeconds: 86_400,
        bootstrapJwksFile: undefined,
        bootstrapClientId: undefined,
      },
    });
  });

  it('derives the issuer from PORT and uses Postgres when DATABASE_URL is set', () => {
    const config = loadConfig({
      PORT: '8080',
      DATABASE_URL: 'postgres://u@db:5432/mayfly',
      MAYFLY_DB_POOL_MAX: '4',
    });
    expect(config.issuer).toBe('http://localhost:8080');
    expect(config.database).toEqual({
      kind: 'postgres',
      url: 'postgres://u@db:5432/mayfly',
      poolMax: 4,
      prepare: true,
    });
  });

  it('normalises the issuer and treats blank values as unset', () => {
    const config = loadConfig({
      MAYFLY_ISSUER: 'https://Auth.Example.com/',
      LOG_LEVEL: '',
      MAYFLY_DPOP_NONCE_SECRET: SECRET,
    });
    expect(config.issuer).toBe('https://auth.example.com');
    expect(config.logLevel).toBe('info');
    expect(config.dpop.nonceSecret).toHaveLength(32);
  });

  it('keeps the default lifetime within a lower maximum', () => {
    expect(loadConfig({ MAYFLY_MAX_TOKEN_TTL: '120' }).tokens).toEqual({ maxTtl: 120, defaultTtl: 120 });
  });

  it.each([
    [{ PORT: 'abc' }, /^PORT: expected an integer between 1 and 65535 \(got "abc"\)$/],
    [{ PORT: '70000' }, /^PORT: expected at most 65535/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent/],
    [{ DATABASE_URL: 'mysql://db' }, /^DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ MAYFLY_ISSUER: 'auth.example.com' }, /^MAYFLY_ISSUER: expected an absolute http\(s\) URL/],
    [{ MAYFLY_ISSUER: 'https://auth.example.com/oauth' }, /^MAYFLY_ISSUER: .*no path/],
    [{ MAYFLY_ISSUER: 'ftp://auth.example.com' }, /^MAYFLY_ISSUER:/],
    [{ MAYFLY_TRUST_PROXY: 'yes' }, /^MAYFLY_TRUST_PROXY: expected true or false/],
    [{ MAYFLY_MAX_TOKEN_TTL: '7200' }, /^MAYFLY_MAX_TOKEN_TTL: expected at most 3600/],
    [{ MAYFLY_PURGE_INTERVAL: '0' }, /^MAYFLY_PURGE_INTERVAL: expected at least 1/],
    [{ MAYFLY_SECRET_OVERLAP: '-1' }, /^MAYFLY_SECRET_OVERLAP: expected an integer between 0 and 2592000/],
    [{ MAYFLY_SECRET_OVERLAP: '2592001' }, /^MAYFLY_SECRET_OVERLAP: expected at most 2592000/],
    [{ MAYFLY_ADMIN_CLIENT_ID: 'ops\u00e9' }, /^MAYFLY_ADMIN_CLIENT_ID: expected 1 to 255 printable ASCII/],
  ])('refuses %o naming the variable and what it expects', (env, message) => {
    const found = problems(env);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(message);
  });

  it('reports every bad variable at once', () => {
    expect(
      problems({ PORT: 'x', LOG_LEVEL: 'y', MAYFLY_DPOP_REQUIRE_NONCE: 'z' }).map((p) => p.split(':')[0]),
    ).toEqual(['PORT', 'LOG_LEVEL', 'MAYFLY_DPOP_REQUIRE_NONCE']);
  });

  it('never echoes a malformed nonce secret', () => {
    const [problem] = problems({ MAYFLY_DPOP_NONCE_SECRET: 'my-very-secret-value' });
    expect(problem).toMatch(/^MAYFLY_DPOP_NONCE_SECRET: expected 32 bytes encoded as base64url/);
    expect(problem).not.toContain('my-very-secret-value');
  });
});

describe('loadSecrets', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-keys-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('generates the embedded nonce secret once, mode 0600, and reuses it', async () => {
    const keysDir = join(dir, 'keys');
    const config = loadConfig({ MAYFLY_KEYS_DIR: keysDir });
    const first = await loadSecrets(config);
    const path = join(keysDir, NONCE_SECRET_FILE);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(first.dpopNonceSecret).toHaveLength(32);
    expect((await loadSecrets(config)).dpopNonceSecret.equals(first.dpopNonceSecret)).toBe(true);
    expect((await readFile(path, 'utf8')).trim()).toBe(first.dpopNonceSecret.toString('base64url'));
  });

  it('creates one secret when several starts race', async () => {
    const config = loadConfig({ MAYFLY_KEYS_DIR: dir });
    const all = await Promise.all(Array.from({ length: 5 }, () => loadSecrets(config)));
    expect(new Set(all.map((s) => s.dpopNonceSecret.toString('hex'))).size).toBe(1);
  });

  it('refuses a corrupt secret file instead of replacing it', async () => {
    await writeFile(join(dir, NONCE_SECRET_FILE), 'garbage\n');
    await expect(loadSecrets(loadConfig({ MAYFLY_KEYS_DIR: dir }))).rejects.toThrow(
      /expected 32 bytes.*delete it to regenerate/,
    );
    expect(await readFile(join(dir, NONCE_SECRET_FILE), 'utf8')).toBe('garbage\n');
  });

  it('requires the nonce secret and the KEK from the environment when instances share Postgres', async () => {
    const refusal = loadSecrets(loadConfig({ DATABASE_URL: 'postgres://db/x', MAYFLY_KEYS_DIR: dir }));
    await expect(refusal).rejects.toThrow(/MAYFLY_DPOP_NONCE_SECRET: required when DATABASE_URL is set/);
    await expect(refusal).rejects.toThrow(/MAYFLY_KEK: required when DATABASE_URL is set/);
    // No silent default: nothing was generated for a Postgres deployment.
    await expect(stat(join(dir, KEK_FILE))).rejects.toThrow(/ENOENT/);
    await expect(
      loadSecrets(loadConfig({ DATABASE_URL: 'postgres://db/x', MAYFLY_DPOP_NONCE_SECRET: SECRET })),
    ).rejects.toThrow(/^(?![\s\S]*NONCE_SECRET: required)[\s\S]*MAYFLY_KEK: required/);
    const secrets = await loadSecrets(
      loadConfig({ DATABASE_URL: 'postgres://db/x', MAYFLY_DPOP_NONCE_SECRET: SECRET, MAYFLY_KEK: KEK }),
    );
    expect(secrets.dpopNonceSecret.toString('base64url')).toBe(SECRET);
    expect(secrets.kek.toString('base64url')).toBe(KEK);
  });

  it('generates the embedded KEK once, mode 0600, and prefers MAYFLY_KEK when set', async () => {
    const first = await loadSecrets(loadConfig({ MAYFLY_KEYS_DIR: dir }));
    const path = join(dir, KEK_FILE);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await readFile(path, 'utf8')).trim()).toBe(first.kek.toString('base64url'));
    const again = await loadSecrets(loadConfig({ MAYFLY_KEYS_DIR: dir }));
    expect(again.kek.equals(first.kek)).toBe(true);
    expect(first.kek.equals(first.dpopNonceSecret)).toBe(false);
    const explicit = await loadSecrets(loadConfig({ MAYFLY_KEYS_DIR: dir, MAYFLY_KEK: KEK }));
    expect(explicit.kek.toString('base64url')).toBe(KEK);
  });

  it('reads former KEKs for re-wrapping', async () => {
    const secrets = await loadSecrets(
      loadConfig({ MAYFLY_KEYS_DIR: dir, MAYFLY_KEK: KEK, MAYFLY_KEK_PREVIOUS: ` ${SECRET} , ${KEK}` }),
    );
    expect(secrets.previousKeks.map((k) => k.toString('base64url'))).toEqual([SECRET, KEK]);
  });
});

describe('signing key settings', () => {
  it('defaults to ES256, daily rotation, an hour of propagation and of retention', () => {
    expect(loadConfig({}).keys).toEqual({
      alg: 'ES256',
      rotationInterval: 86_400,
      propagation: 3_600,
      retention: 3_600,
      jwksMaxAge: 300,
      checkInterval: 5,
      kek: undefined,
      previousKeks: [],
    });
  });

  it('keeps retention above the longest token lifetime plus clock skew by default', () => {
    expect(loadConfig({ MAYFLY_MAX_TOKEN_TTL: '3600' }).keys.retention).toBe(3_660);
  });

  it('refuses a schedule under which a resource server could meet an unknown kid or lose a live key', () => {
    expect(problems({ MAYFLY_KEY_PROPAGATION: '300' })).toEqual([
      expect.stringMatching(
        /^MAYFLY_KEY_PROPAGATION: expected at least 365 \(MAYFLY_JWKS_MAX_AGE 300 plus MAYFLY_KEY_CHECK_INTERVAL 5 plus/,
      ),
    ]);
    expect(problems({ MAYFLY_KEY_ROTATION_INTERVAL: '3600' })).toEqual([
      expect.stringMatching(
        /^MAYFLY_KEY_ROTATION_INTERVAL: expected more than MAYFLY_KEY_PROPAGATION \(3600\)/,
      ),
    ]);
    expect(problems({ MAYFLY_MAX_TOKEN_TTL: '900', MAYFLY_KEY_RETENTION: '900' })).toEqual([
      expect.stringMatching(
        /^MAYFLY_KEY_RETENTION: expected at least 960 \(MAYFLY_MAX_TOKEN_TTL 900 plus 60 s/,
      ),
    ]);
    expect(problems({ MAYFLY_SIGNING_ALG: 'HS256' })).toEqual([
      'MAYFLY_SIGNING_ALG: expected one of ES256, EdDSA, PS256 (got "HS256")',
    ]);
    expect(
      loadConfig({ MAYFLY_SIGNING_ALG: 'EdDSA', MAYFLY_JWKS_MAX_AGE: '60', MAYFLY_KEY_PROPAGATION: '125' })
        .keys,
    ).toMatchObject({ alg: 'EdDSA', jwksMaxAge: 60, propagation: 125 });
  });

  it('never echoes a malformed KEK', () => {
    const [kek, previous] = problems({
      MAYFLY_KEK: 'not-a-key-zzzz',
      MAYFLY_KEK_PREVIOUS: `${KEK},short-one`,
    });
    expect(kek).toBe('MAYFLY_KEK: expected 32 bytes encoded as base64url (43 characters)');
    expect(previous).toBe(
      'MAYFLY_KEK_PREVIOUS: expected a comma-separated list of 32-byte keys encoded as base64url',
    );
  });
});

describe('error messages', () => {
  it('never print credentials found in a URL', () => {
    const [database] = problems({ DATABASE_URL: 'postgress://mayfly:S3cretPw@db:5432/mayfly' });
    expect(database).toBe(
      'DATABASE_URL: expected a postgres:// or postgresql:// URL (got "postgress://***@db:5432/mayfly")',
    );
    const [issuer] = problems({ MAYFLY_ISSUER: 'https://admin:hunter22@auth.example.com' });
    expect(issuer).toMatch(/^MAYFLY_ISSUER: .*\(got "https:\/\/\*\*\*@auth\.example\.com"\)$/);
    expect(`${database} ${issuer}`).not.toMatch(/S3cretPw|hunter22/);
  });
});
