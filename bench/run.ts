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
 *   BENCH_WORKERS (1,2): MAYFLY_WORKERS values measured on Postgres
 */
import { randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair } from 'jose';

import {
  createBenchDatabase,
  FORM,
  JWT_API,
  load as loadWith,
  OPAQUE_API,
  seed,
  startServer,
  stopServer,
  tokenFor,
  type RunningServer,
  type Scenario,
  type Seed,
} from './harness.ts';
import type { LoadResult } from './loadgen.ts';
import { measure, type Cost } from './proc.ts';
import { basicAuth } from '../test/support/oauth.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const DATABASES = (process.env.BENCH_DATABASES ?? 'pglite,postgres').split(',');
/** Worker counts measured on Postgres (MAYFLY_WORKERS); PGlite is single-process. */
const WORKERS = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number);

const load = (spec: Scenario) => loadWith(spec, REQUESTS, CONCURRENCY);
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

/** The scenarios BENCH_SCENARIOS selects, one after the other, with what the server (and database) spent on each. */
async function runScenarios(
  label: string,
  server: RunningServer,
  database: string | undefined,
  scenarios: readonly [string, Scenario][],
): Promise<Row[]> {
  const wanted = process.env.BENCH_SCENARIOS?.split(',');
  const rows: Row[] = [];
  for (const [scenario, spec] of scenarios) {
    if (wanted && !wanted.some((prefix) => scenario.startsWith(prefix))) continue;
    const [result, cost] = await measure({ pid: server.process.pid ?? 0, database }, () => load(spec));
    rows.push({ server: label, scenario, ...cost, ...result });
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
    return { rows: await runScenarios('baseline', server, undefined, scenarios), readyMs: server.readyMs };
  } finally {
    await stopServer(server);
  }
}

interface Row extends LoadResult, Cost {
  server: string;
  scenario: string;
}

async function benchDatabase(kind: string, workers = 1): Promise<{ rows: Row[]; readyMs: number }> {
  const database = await createBenchDatabase(kind);
  const label = workers > 1 ? `${kind} ×${workers} workers` : kind;
  try {
    const seeded = await seed(database.config);
    const server = await startServer({ ...database.env, MAYFLY_WORKERS: String(workers) });
    const rows: Row[] = [];
    try {
      const scenarios = await buildScenarios(server.url, seeded);
      rows.push(...(await runScenarios(label, server, database.name, scenarios)));
    } finally {
      await stopServer(server);
    }
    return { rows, readyMs: server.readyMs };
  } finally {
    await database.drop();
  }
}

/** µs of CPU per request answered. */
function perRequest(us: number | undefined, row: Row): number | undefined {
  return us === undefined || row.requests === 0 ? undefined : Math.round(us / row.requests);
}

function printTable(rows: Row[]): void {
  const baseline = new Map(rows.filter((r) => r.server === 'baseline').map((r) => [r.scenario, r]));
  const times = (value: number | undefined, base: number | undefined) =>
    value === undefined || base === undefined || base === 0 ? '' : `${(value / base).toFixed(2)}×`;
  const header = [
    'server',
    'scenario',
    'req/s',
    '× base',
    'p50 ms',
    'p99 ms',
    'p99 × base',
    'server µs/req',
    '× base',
    'db µs/req',
    'loadgen µs/req',
    'errors',
    'peak RSS MB',
    '× base',
  ];
  const lines = rows.map((r) => {
    const base = r.server === 'baseline' ? undefined : baseline.get(r.scenario);
    const serverUs = perRequest(r.serverCpuUs, r);
    const databaseUs = perRequest(r.databaseCpuUs, r);
    return [
      r.server,
      r.scenario,
      String(r.rps),
      times(r.rps, base?.rps),
      String(r.p50),
      String(r.p99),
      times(r.p99, base?.p99),
      String(serverUs ?? ''),
      times(serverUs, base && perRequest(base.serverCpuUs, base)),
      databaseUs === undefined ? (r.server.startsWith('pglite') ? 'in server' : '') : String(databaseUs),
      String(perRequest(r.loadCpuUs, r) ?? ''),
      `${r.errors}/${r.requests}`,
      String(r.peakRssMb),
      times(r.peakRssMb, base?.peakRssMb),
    ];
  });
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
  for (const workers of kind === 'postgres' ? WORKERS : [1]) {
    const { rows, readyMs } = await benchDatabase(kind, workers);
    console.log(`${kind}${workers > 1 ? ` ×${workers} workers` : ''}: ready ${readyMs} ms after spawn`);
    all.push(...rows);
  }
}
console.log(
  `\n${REQUESTS} requests per scenario, ${CONCURRENCY} connections, load generator in its own process\n`,
);
printTable(all);
const failed = all.filter((r) => r.errors > 0 || r.requests < REQUESTS);
if (all.length === 0) console.error('no scenario matched BENCH_SCENARIOS');
if (failed.length) {
  console.error(
    `\n${failed.length} scenario(s) had errors or did not finish: ${failed.map((r) => `${r.server}/${r.scenario} ${JSON.stringify(r.statuses)}`).join('; ')}`,
  );
  process.exitCode = 1;
}
