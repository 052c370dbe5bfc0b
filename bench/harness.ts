/**
 * What the bench scripts share: seeding a database, starting and stopping a Mayfly process, the load generator
 * in its own process, and peak RSS sampling.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { exportJWK, generateKeyPair, type JWK } from 'jose';
import pg from 'pg';

import { createClient } from '../src/clients/client.service.ts';
import { createResource } from '../src/clients/resource.service.ts';
import { createAudit } from '../src/observability/audit.ts';
import { createLogger } from '../src/observability/logger.ts';
import { systemClock } from '../src/clock.ts';
import type { DatabaseConfig } from '../src/config/config.ts';
import { connectDatabase } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrator.ts';
import { basicAuth } from '../test/support/oauth.ts';
import type { LoadResult, LoadSpec } from './loadgen.ts';
import { measure } from './proc.ts';

export const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const JWT_API = 'https://api.bench.example';
export const OPAQUE_API = 'https://opaque.bench.example';
export const ROOT = new URL('..', import.meta.url).pathname;

export interface Seed {
  secretClient: { id: string; secret: string };
  keyClient: { id: string; privateJwk: JWK };
  resourceServer: { id: string; secret: string };
}

export async function seed(config: DatabaseConfig, options: { opaqueTtl?: number } = {}): Promise<Seed> {
  const handle = await connectDatabase(config);
  try {
    await migrateToLatest(handle.db);
    const deps = {
      db: handle.db,
      clock: systemClock,
      audit: createAudit(createLogger('silent')),
      tokens: { maxTtl: 900, defaultTtl: 300 },
    };
    const actor = { id: 'system:bench' };
    await createResource(deps, actor, { identifier: JWT_API, scopes: ['read', 'write'] });
    await createResource(deps, actor, {
      identifier: OPAQUE_API,
      scopes: ['read'],
      token_format: 'opaque',
      ...(options.opaqueTtl === undefined ? {} : { token_ttl: options.opaqueTtl }),
    });
    const grants = [
      { resource: JWT_API, scopes: ['read', 'write'] },
      { resource: OPAQUE_API, scopes: ['read'] },
    ];
    const secretClient = await createClient(deps, actor, { name: 'bench-secret', grants });
    const pair = await generateKeyPair('ES256', { extractable: true });
    const keyClient = await createClient(deps, actor, {
      name: 'bench-key',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), kty: 'EC', alg: 'ES256' }] },
      grants,
    });
    const resourceServer = await createClient(deps, actor, {
      name: 'bench-rs',
      introspects: [JWT_API, OPAQUE_API],
    });
    return {
      secretClient: { id: secretClient.client_id, secret: secretClient.client_secret ?? '' },
      keyClient: { id: keyClient.client_id, privateJwk: await exportJWK(pair.privateKey) },
      resourceServer: { id: resourceServer.client_id, secret: resourceServer.client_secret ?? '' },
    };
  } finally {
    await handle.close();
  }
}

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 0;
}

export interface RunningServer {
  url: string;
  process: ChildProcess;
  readyMs: number;
}

const UNREACHED_LIMIT = '10000000';
const UNREACHED_LIMITS = {
  MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: UNREACHED_LIMIT,
  MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS: UNREACHED_LIMIT,
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: UNREACHED_LIMIT,
  MAYFLY_RATE_LIMIT_INTROSPECTION_PER_ADDRESS: UNREACHED_LIMIT,
};

/** The Node options `npm start` runs Mayfly with (from package.json), so the bench measures what users run. */
const START_FLAGS = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }
).scripts.start
  .split(' ')
  .filter((word) => word.startsWith('--') && word !== '--experimental-strip-types');

/** Mayfly as `npm start` runs it, or another script (the baseline) with Node's defaults. */
export async function startServer(
  env: Record<string, string>,
  script = 'src/main.ts',
): Promise<RunningServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  const profile = process.env.BENCH_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
    : [];
  const flags = script === 'src/main.ts' ? START_FLAGS : [];
  const child = spawn(
    process.execPath,
    [...flags, ...profile, '--experimental-strip-types', join(ROOT, script)],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        // The limits are checked on every request, as in production, but set high enough never to refuse one.
        ...UNREACHED_LIMITS,
        ...env,
        PORT: String(port),
        HOST: '127.0.0.1',
        MAYFLY_ISSUER: url,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, process: child, readyMs: Math.round(performance.now() - started) };
    if (performance.now() - started > 30_000) throw new Error('server not ready after 30 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function stopServer(server: RunningServer): Promise<void> {
  server.process.kill('SIGTERM');
  await new Promise((resolve) => server.process.once('exit', resolve));
}

/** Peak resident set size of a server (with its workers) while `work` runs, in MB. */
export async function withPeakRss<T>(pid: number, work: () => Promise<T>): Promise<[T, number]> {
  const [result, cost] = await measure({ pid }, work);
  return [result, cost.peakRssMb];
}

const execFileAsync = promisify(execFile);

/** A scenario: what every request looks like; counts and limits come from the environment. */
export type Scenario = Omit<LoadSpec, 'requests' | 'concurrency' | 'timeoutMs'>;

export async function load(spec: Scenario, requests: number, concurrency: number): Promise<LoadResult> {
  const full: LoadSpec = { requests, concurrency, timeoutMs: 120_000, ...spec };
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--experimental-strip-types', join(ROOT, 'bench/loadgen.ts'), JSON.stringify(full)],
    { cwd: ROOT, maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout) as LoadResult;
}

export const FORM = 'application/x-www-form-urlencoded';

export async function tokenFor(url: string, client: Seed['secretClient'], resource: string): Promise<string> {
  const { createProof, generateDpopKey } = await import('../test/support/dpop.ts');
  const res = await fetch(`${url}/token`, {
    method: 'POST',
    headers: {
      authorization: basicAuth(client.id, client.secret),
      'content-type': FORM,
      dpop: await createProof(await generateDpopKey(), { htu: `${url}/token` }),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }).toString(),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`could not obtain a token: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** A fresh database of `kind` for one bench server, and the environment that server runs with. */
export interface BenchDatabase {
  config: DatabaseConfig;
  /** CHECKPOINT on its server (see measure in proc.ts); nothing for PGlite. */
  flush: (() => Promise<void>) | undefined;
  /** The PostgreSQL database's name; undefined for PGlite (in the server's own process). */
  name: string | undefined;
  env: Record<string, string>;
  drop(): Promise<void>;
}

export async function createBenchDatabase(kind: string, serverUrl = POSTGRES_URL): Promise<BenchDatabase> {
  // Its own keys folder: the first start writes admin credentials there, never into the repository's keys/.
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-bench-'));
  if (kind !== 'postgres') {
    return {
      config: { kind: 'pglite', dataDir: join(dir, 'data') },
      name: undefined,
      flush: undefined,
      env: { MAYFLY_DATA_DIR: join(dir, 'data'), MAYFLY_KEYS_DIR: join(dir, 'keys') },
      drop: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const dbName = `mayfly_bench_${randomBytes(4).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${dbName}`);
  const url = new URL(serverUrl);
  url.pathname = `/${dbName}`;
  return {
    config: { kind: 'postgres', url: url.href, poolMax: 10, prepare: true },
    name: dbName,
    flush: () => admin('checkpoint'),
    env: {
      DATABASE_URL: url.href,
      MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
      MAYFLY_KEK: randomBytes(32).toString('base64url'),
      MAYFLY_KEYS_DIR: join(dir, 'keys'),
    },
    async drop() {
      await rm(dir, { recursive: true, force: true });
      await admin(`drop database if exists ${dbName} with (force)`);
    },
  };
}
