/**
 * `npm run bench`: starts Mayfly as a separate process on each database, drives it with the load generator in a
 * third process, and prints one table. Traffic goes to 127.0.0.1 only; every scenario is bounded in requests
 * and time.
 *
 * Every server runs from the start; the scenarios then go round by round, each round measuring every server
 * in turn (in a rotating order), so that a noisy neighbour or a drifting clock rate affects all alike. Each row
 * gives the median of its rounds.
 *
 *   BENCH_REQUESTS (5000)  BENCH_CONCURRENCY (32)  BENCH_ROUNDS (3)  BENCH_DATABASES (pglite,postgres)
 *   BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres): server on which a bench database is created
 *   BENCH_SCENARIOS: comma-separated scenario name prefixes to run (default: all)
 *   BENCH_PROFILE_DIR: write a V8 CPU profile of each server process there (node --cpu-prof)
 *   BENCH_BASELINE: false skips the baseline (plain oidc-provider with its memory adapter, same token setup)
 *   BENCH_WORKERS (1,2): MAYFLY_WORKERS values measured on Postgres
 *   BENCH_NODE_OPTIONS: `label=options;label=options`: one more single-worker Postgres server per entry, started
 *     with those NODE_OPTIONS, measured in the same rounds (to weigh a runtime setting against the default)
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
  type BenchDatabase,
  type RunningServer,
  type Scenario,
  type Seed,
} from './harness.ts';
import type { LoadResult } from './loadgen.ts';
import { measure, type Cost } from './proc.ts';
import { basicAuth } from '../test/support/oauth.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 5000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
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

/** A server under test, with the scenarios it answers. */
interface Target {
  label: string;
  server: RunningServer;
  /** Its PostgreSQL database, whose backends' CPU counts; undefined for the baseline and PGlite. */
  database: string | undefined;
  flush: (() => Promise<void>) | undefined;
  scenarios: Map<string, Scenario>;
  stop(): Promise<void>;
}

/**
 * Plain oidc-provider with its memory adapter and the same token configuration, measured by the same load
 * generator. Introspecting a JWT is left out: the plain provider cannot (it answers inactive without looking).
 */
async function startBaseline(): Promise<Target> {
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
  const scenarios = (await buildScenarios(server.url, seeded)).filter(([name]) => name !== 'introspect JWT');
  return {
    label: 'baseline',
    server,
    database: undefined,
    flush: undefined,
    scenarios: new Map(scenarios),
    stop: () => stopServer(server),
  };
}

async function startMayfly(kind: string, workers: number, variant?: [string, string]): Promise<Target> {
  const database: BenchDatabase = await createBenchDatabase(kind);
  try {
    const seeded = await seed(database.config);
    const server = await startServer({
      ...database.env,
      MAYFLY_WORKERS: String(workers),
      ...(variant ? { NODE_OPTIONS: variant[1] } : {}),
    });
    return {
      label: variant ? `${kind} ${variant[0]}` : workers > 1 ? `${kind} ×${workers} workers` : kind,
      server,
      database: database.name,
      flush: database.flush,
      scenarios: new Map(await buildScenarios(server.url, seeded)),
      async stop() {
        await stopServer(server);
        await database.drop();
      },
    };
  } catch (error) {
    await database.drop();
    throw error;
  }
}

interface Row extends LoadResult, Cost {
  server: string;
  scenario: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** One row from the rounds of one server and scenario: the median of each figure, the worst of errors and RSS. */
function combine(rounds: Row[]): Row {
  const first = rounds[0];
  if (!first) throw new Error('no round to combine');
  const of = (pick: (row: Row) => number) => median(rounds.map(pick));
  const statuses: Record<string, number> = {};
  for (const round of rounds)
    for (const [status, count] of Object.entries(round.statuses))
      statuses[status] = (statuses[status] ?? 0) + count;
  const requests = Math.min(...rounds.map((row) => row.requests));
  // Totals scaled to `requests`, so that the table's division gives the median cost per request.
  const perRequestUs = (pick: (row: Row) => number | undefined) =>
    rounds.every((row) => pick(row) !== undefined)
      ? of((row) => ((pick(row) ?? 0) / Math.max(1, row.requests)) * requests)
      : undefined;
  return {
    server: first.server,
    scenario: first.scenario,
    requests,
    errors: Math.max(...rounds.map((row) => row.errors)),
    statuses,
    seconds: of((row) => row.seconds),
    rps: Math.round(of((row) => row.rps)),
    p50: of((row) => row.p50),
    p95: of((row) => row.p95),
    p99: of((row) => row.p99),
    peakRssMb: Math.max(...rounds.map((row) => row.peakRssMb)),
    serverCpuUs: perRequestUs((row) => row.serverCpuUs) ?? 0,
    databaseCpuUs: perRequestUs((row) => row.databaseCpuUs),
    loadCpuUs: perRequestUs((row) => row.loadCpuUs) ?? 0,
  };
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

const targets: Target[] = [];
const wanted = process.env.BENCH_SCENARIOS?.split(',');
try {
  if (process.env.BENCH_BASELINE !== 'false') targets.push(await startBaseline());
  for (const kind of DATABASES) {
    for (const workers of kind === 'postgres' ? WORKERS : [1]) targets.push(await startMayfly(kind, workers));
  }
  for (const variant of (process.env.BENCH_NODE_OPTIONS ?? '').split(';').filter(Boolean)) {
    const at = variant.indexOf('=');
    targets.push(await startMayfly('postgres', 1, [variant.slice(0, at), variant.slice(at + 1)]));
  }
  for (const target of targets) console.log(`${target.label}: ready ${target.server.readyMs} ms after spawn`);
  const names = [...new Set(targets.flatMap((target) => [...target.scenarios.keys()]))].filter(
    (name) => !wanted || wanted.some((prefix) => name.startsWith(prefix)),
  );
  const rounds = new Map<string, Row[]>();
  for (const name of names) {
    for (let round = 0; round < ROUNDS; round += 1) {
      // A rotating order: no server always goes first (on a cold cache) or last.
      const order = targets.map((_, i) => targets[(i + round) % targets.length]);
      for (const target of order) {
        const spec = target?.scenarios.get(name);
        if (!target || !spec) continue;
        const [result, cost] = await measure(
          { pid: target.server.process.pid ?? 0, database: target.database, flush: target.flush },
          () => load(spec),
        );
        const key = `${target.label}\n${name}`;
        rounds.set(key, [
          ...(rounds.get(key) ?? []),
          { server: target.label, scenario: name, ...cost, ...result },
        ]);
      }
    }
  }
  const all = targets.flatMap((target) =>
    names.flatMap((name) => {
      const measured = rounds.get(`${target.label}\n${name}`);
      return measured ? [combine(measured)] : [];
    }),
  );
  console.log(
    `\n${REQUESTS} requests per scenario and round, ${ROUNDS} round(s), ${CONCURRENCY} connections, ` +
      'load generator in its own process; medians of the rounds\n',
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
} finally {
  for (const target of targets) await target.stop();
}
