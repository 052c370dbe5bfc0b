/**
 * `npm run bench`: starts Mayfly as a separate process on each database, drives it with the load generator in a
 * third process, and prints one table. Traffic goes to 127.0.0.1 only; every scenario is bounded in requests
 * and time.
 *
 *   BENCH_REQUESTS (5000)  BENCH_CONCURRENCY (32)  BENCH_DATABASES (pglite,postgres)
 *   BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres): server on which a bench database is created
 *   BENCH_SCENARIOS: comma-separated scenario name prefixes to run (default: all)
 *   BENCH_PROFILE_DIR: write a V8 CPU profile of each server process there (node --cpu-prof)
 *   BENCH_BASELINE: false skips the baseline (plain oidc-provider with its memory adapter, same token setup)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const DATABASES = (process.env.BENCH_DATABASES ?? 'pglite,postgres').split(',');
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const JWT_API = 'https://api.bench.example';
const OPAQUE_API = 'https://opaque.bench.example';
const ROOT = new URL('..', import.meta.url).pathname;

interface Seed {
  secretClient: { id: string; secret: string };
  keyClient: { id: string; privateJwk: JWK };
  resourceServer: { id: string; secret: string };
}

async function seed(config: DatabaseConfig): Promise<Seed> {
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
    await createResource(deps, actor, { identifier: OPAQUE_API, scopes: ['read'], token_format: 'opaque' });
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

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 0;
}

interface RunningServer {
  url: string;
  process: ChildProcess;
  readyMs: number;
}

async function startServer(env: Record<string, string>, script = 'src/main.ts'): Promise<RunningServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  const profile = process.env.BENCH_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
    : [];
  const child = spawn(process.execPath, [...profile, '--experimental-strip-types', join(ROOT, script)], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      PORT: String(port),
      HOST: '127.0.0.1',
      MAYFLY_ISSUER: url,
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
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

async function stopServer(server: RunningServer): Promise<void> {
  server.process.kill('SIGTERM');
  await new Promise((resolve) => server.process.once('exit', resolve));
}

/** Peak resident set size of a process while `work` runs, sampled from /proc every 50 ms. */
async function withPeakRss<T>(pid: number, work: () => Promise<T>): Promise<[T, number]> {
  let peak = 0;
  const sample = async () => {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    peak = Math.max(peak, kb);
  };
  const timer = setInterval(() => void sample(), 50);
  try {
    const result = await work();
    await sample();
    return [result, Math.round(peak / 1024)];
  } finally {
    clearInterval(timer);
  }
}

const execFileAsync = promisify(execFile);

/** A scenario: what every request looks like; counts and limits come from the environment. */
type Scenario = Omit<LoadSpec, 'requests' | 'concurrency' | 'timeoutMs'>;

async function load(spec: Scenario): Promise<LoadResult> {
  const full: LoadSpec = { requests: REQUESTS, concurrency: CONCURRENCY, timeoutMs: 120_000, ...spec };
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--experimental-strip-types', join(ROOT, 'bench/loadgen.ts'), JSON.stringify(full)],
    { cwd: ROOT, maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout) as LoadResult;
}

const FORM = 'application/x-www-form-urlencoded';

async function tokenFor(url: string, client: Seed['secretClient'], resource: string): Promise<string> {
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

/** Every scenario, against one running server seeded with `seeded`. */
async function buildScenarios(url: string, seeded: Seed): Promise<[string, Scenario][]> {
  const jwt = await tokenFor(url, seeded.secretClient, JWT_API);
  const opaque = await tokenFor(url, seeded.secretClient, OPAQUE_API);
  const jwks = await fetch(`${url}/jwks`);
  const etag = jwks.headers.get('etag') ?? '';
  const rsAuth = basicAuth(seeded.resourceServer.id, seeded.resourceServer.secret);
  const secretAuth = basicAuth(seeded.secretClient.id, seeded.secretClient.secret);
  const keyClient = { clientId: seeded.keyClient.id, privateJwk: seeded.keyClient.privateJwk };
  const post = (path: string, body: string, extra: Partial<Scenario> = {}): Scenario => ({
    url,
    path,
    method: 'POST',
    ...extra,
    headers: { 'content-type': FORM, ...extra.headers },
    body,
  });
  const grant = (resource: string) =>
    new URLSearchParams({ grant_type: 'client_credentials', resource }).toString();
  const introspect = (token: string) => new URLSearchParams({ token }).toString();
  return [
    [
      'token secret+DPoP → JWT',
      post('/token', grant(JWT_API), { dpop: true, headers: { authorization: secretAuth } }),
    ],
    [
      'token private_key_jwt+DPoP → JWT',
      post('/token', grant(JWT_API), { dpop: true, assertion: keyClient }),
    ],
    [
      'token secret+DPoP → opaque',
      post('/token', grant(OPAQUE_API), { dpop: true, headers: { authorization: secretAuth } }),
    ],
    ['introspect JWT', post('/token/introspection', introspect(jwt), { headers: { authorization: rsAuth } })],
    [
      'introspect opaque',
      post('/token/introspection', introspect(opaque), { headers: { authorization: rsAuth } }),
    ],
    ['JWKS', { url, path: '/jwks', method: 'GET' }],
    ['JWKS If-None-Match', { url, path: '/jwks', method: 'GET', headers: { 'if-none-match': etag } }],
  ];
}

/** The scenarios BENCH_SCENARIOS selects, one after the other, with the server's peak RSS during each. */
async function runScenarios(
  database: string,
  server: RunningServer,
  scenarios: readonly [string, Scenario][],
): Promise<Row[]> {
  const wanted = process.env.BENCH_SCENARIOS?.split(',');
  const rows: Row[] = [];
  for (const [scenario, spec] of scenarios) {
    if (wanted && !wanted.some((prefix) => scenario.startsWith(prefix))) continue;
    const [result, rssMb] = await withPeakRss(server.process.pid ?? 0, () => load(spec));
    rows.push({ database, scenario, rssMb, ...result });
  }
  return rows;
}

/**
 * Plain oidc-provider with its memory adapter and the same token configuration, measured by the same load
 * generator. Introspecting a JWT is left out: the plain provider cannot (it answers inactive without looking).
 */
async function benchBaseline(): Promise<{ rows: Row[]; readyMs: number }> {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const seeded: Seed = {
    secretClient: { id: 'bench-secret', secret: randomBytes(32).toString('base64url') },
    keyClient: { id: 'bench-key', privateJwk: await exportJWK(pair.privateKey) },
    resourceServer: { id: 'bench-rs', secret: randomBytes(32).toString('base64url') },
  };
  const baselineSeed = {
    ...seeded,
    keyClient: { id: seeded.keyClient.id, publicJwk: { ...(await exportJWK(pair.publicKey)), alg: 'ES256' } },
    resources: { jwt: JWT_API, opaque: OPAQUE_API },
  };
  const server = await startServer(
    { BASELINE_SEED: JSON.stringify(baselineSeed) },
    'bench/baseline-server.ts',
  );
  try {
    const scenarios = (await buildScenarios(server.url, seeded)).filter(
      ([name]) => name !== 'introspect JWT',
    );
    return { rows: await runScenarios('baseline', server, scenarios), readyMs: server.readyMs };
  } finally {
    await stopServer(server);
  }
}

interface Row extends LoadResult {
  database: string;
  scenario: string;
  rssMb: number;
}

async function benchDatabase(kind: string): Promise<{ rows: Row[]; readyMs: number }> {
  const nonceSecret = randomBytes(32).toString('base64url');
  let dbName: string | undefined;
  let config: DatabaseConfig;
  let env: Record<string, string>;
  // Its own keys folder: the first start writes admin credentials there, never into the repository's keys/.
  const dir = await mkdtemp(join(tmpdir(), 'mayfly-bench-'));
  if (kind === 'postgres') {
    dbName = `mayfly_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`create database ${dbName}`);
    await admin.end();
    const url = new URL(POSTGRES_URL);
    url.pathname = `/${dbName}`;
    config = { kind: 'postgres', url: url.href, poolMax: 10 };
    env = {
      DATABASE_URL: url.href,
      MAYFLY_DPOP_NONCE_SECRET: nonceSecret,
      MAYFLY_KEK: randomBytes(32).toString('base64url'),
      MAYFLY_KEYS_DIR: join(dir, 'keys'),
    };
  } else {
    config = { kind: 'pglite', dataDir: join(dir, 'data') };
    env = { MAYFLY_DATA_DIR: join(dir, 'data'), MAYFLY_KEYS_DIR: join(dir, 'keys') };
  }
  try {
    const seeded = await seed(config);
    const server = await startServer(env);
    const rows: Row[] = [];
    try {
      const scenarios = await buildScenarios(server.url, seeded);
      rows.push(...(await runScenarios(kind, server, scenarios)));
    } finally {
      await stopServer(server);
    }
    return { rows, readyMs: server.readyMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
    if (dbName) {
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query(`drop database if exists ${dbName} with (force)`);
      await admin.end();
    }
  }
}

function printTable(rows: Row[]): void {
  const baseline = new Map(rows.filter((r) => r.database === 'baseline').map((r) => [r.scenario, r.rps]));
  const header = [
    'database',
    'scenario',
    'req/s',
    '× baseline',
    'p50 ms',
    'p95 ms',
    'p99 ms',
    'errors',
    'peak RSS MB',
  ];
  const ratio = (r: Row) => {
    const base = baseline.get(r.scenario);
    return r.database === 'baseline' || base === undefined ? '' : `${(r.rps / base).toFixed(2)}×`;
  };
  const lines = rows.map((r) => [
    r.database,
    r.scenario,
    String(r.rps),
    ratio(r),
    String(r.p50),
    String(r.p95),
    String(r.p99),
    `${r.errors}/${r.requests}`,
    String(r.rssMb),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const format = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(format(header));
  console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
  for (const line of lines) console.log(format(line));
}

const all: Row[] = [];
if (process.env.BENCH_BASELINE !== 'false') {
  const { rows, readyMs } = await benchBaseline();
  console.log(`baseline (plain oidc-provider, memory adapter): ready ${readyMs} ms after spawn`);
  all.push(...rows);
}
for (const kind of DATABASES) {
  const { rows, readyMs } = await benchDatabase(kind);
  console.log(`${kind}: ready ${readyMs} ms after spawn`);
  all.push(...rows);
}
console.log(
  `\n${REQUESTS} requests per scenario, ${CONCURRENCY} connections, load generator in its own process\n`,
);
printTable(all);
const failed = all.filter((r) => r.errors > 0 || r.requests < REQUESTS);
if (all.length === 0) console.error('no scenario matched BENCH_SCENARIOS');
if (failed.length) {
  console.error(
    `\n${failed.length} scenario(s) had errors or did not finish: ${failed.map((r) => `${r.database}/${r.scenario} ${JSON.stringify(r.statuses)}`).join('; ')}`,
  );
  process.exitCode = 1;
}
