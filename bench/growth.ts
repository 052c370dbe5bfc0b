/**
 * `npm run bench:growth`: issues many tokens over several purge intervals against one Mayfly process on
 * PostgreSQL and reports, round by round, the rows and on-disk size of the token and replay-marker tables and the
 * cost of a token. It shows whether the database stays bounded (expired tokens and replay markers are purged,
 * and autovacuum lets their space be reused) and whether a token costs more as the tables grow. Traffic goes to
 * 127.0.0.1 only; every round is bounded in requests and time.
 *
 *   GROWTH_TOKENS (200000)  GROWTH_ROUNDS (20)  GROWTH_ROUND_SECONDS (42): each round issues TOKENS/ROUNDS
 *   opaque tokens (30 s lifetime, so each is stored and expires), then waits out the rest of its time
 *   GROWTH_PURGE_INTERVAL (30): MAYFLY_PURGE_INTERVAL of the server   BENCH_CONCURRENCY (32)
 *   GROWTH_POSTGRES_URL: a PostgreSQL server to create the database on; by default a cluster of the bench's own
 *   (initdb, PostgreSQL's default settings, autovacuum on), since a shared development server may run without
 *   autovacuum, as this project's reference machine does
 *
 * Replay markers of DPoP proofs live 660 s (the ±300 s proof window plus a margin), so their rows level off only
 * once the run is longer than that: the defaults run about 14 minutes.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { basicAuth } from '../test/support/oauth.ts';
import { findPostgresBin, PostgresCluster } from '../test/support/postgres-cluster.ts';
import { createBenchDatabase, FORM, load, OPAQUE_API, seed, startServer, stopServer } from './harness.ts';
import { measure } from './proc.ts';

const TOKENS = Number(process.env.GROWTH_TOKENS ?? 200_000);
const ROUNDS = Number(process.env.GROWTH_ROUNDS ?? 20);
const ROUND_SECONDS = Number(process.env.GROWTH_ROUND_SECONDS ?? 42);
const PURGE_INTERVAL = Number(process.env.GROWTH_PURGE_INTERVAL ?? 30);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

interface Census {
  tokens: number;
  tokensMb: number;
  markers: number;
  markersMb: number;
  /** Runs of autovacuum on the two tables since the start. */
  autovacuums: number;
}

const MB = 1024 * 1024;

async function census(url: string): Promise<Census> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{
      tokens: string;
      markers: string;
      tokens_bytes: string;
      markers_bytes: string;
      autovacuums: string;
    }>(
      `select (select count(*) from oidc_payload where model = 'ClientCredentials') as tokens,
              (select count(*) from replay_marker) as markers,
              pg_total_relation_size('oidc_payload') as tokens_bytes,
              pg_total_relation_size('replay_marker') as markers_bytes,
              (select coalesce(sum(autovacuum_count), 0) from pg_stat_user_tables
                where relname in ('oidc_payload', 'replay_marker')) as autovacuums`,
    );
    const row = rows[0];
    return {
      tokens: Number(row?.tokens ?? 0),
      tokensMb: Math.round((Number(row?.tokens_bytes ?? 0) / MB) * 10) / 10,
      markers: Number(row?.markers ?? 0),
      markersMb: Math.round((Number(row?.markers_bytes ?? 0) / MB) * 10) / 10,
      autovacuums: Number(row?.autovacuums ?? 0),
    };
  } finally {
    await client.end();
  }
}

const own = process.env.GROWTH_POSTGRES_URL ? undefined : findPostgresBin();
if (!process.env.GROWTH_POSTGRES_URL && !own) {
  throw new Error('no PostgreSQL binaries found: set GROWTH_POSTGRES_URL to a server to run on');
}
const cluster = own ? await PostgresCluster.create(own) : undefined;
try {
  const database = await createBenchDatabase(
    'postgres',
    cluster ? cluster.url('postgres') : process.env.GROWTH_POSTGRES_URL,
  );
  const databaseUrl = database.env.DATABASE_URL ?? '';
  try {
    const seeded = await seed(database.config, { opaqueTtl: 30 });
    const server = await startServer({
      ...database.env,
      MAYFLY_PURGE_INTERVAL: String(PURGE_INTERVAL),
      LOG_LEVEL: 'warn',
    });
    const perRound = Math.ceil(TOKENS / ROUNDS);
    console.log(
      `${ROUNDS} rounds of ${perRound} opaque tokens (30 s lifetime), one round every ${ROUND_SECONDS} s, ` +
        `purge every ${PURGE_INTERVAL} s, ${CONCURRENCY} connections, on ` +
        `${cluster ? "a PostgreSQL cluster of the bench's own (default settings)" : 'GROWTH_POSTGRES_URL'}\n`,
    );
    const header =
      '| round | minute | issued | tokens/s | p50 ms | p99 ms | server µs/token | db µs/token | errors | ' +
      'token rows | token table MB | marker rows | marker table MB | autovacuum runs | peak RSS MB |';
    console.log(header);
    console.log(header.replace(/[^|]/g, '-'));
    const started = Date.now();
    let issued = 0;
    let failures = 0;
    try {
      for (let round = 1; round <= ROUNDS; round += 1) {
        const roundStarted = Date.now();
        const [result, cost] = await measure({ pid: server.process.pid ?? 0, database: database.name }, () =>
          load(
            {
              url: server.url,
              path: '/token',
              method: 'POST',
              dpop: true,
              headers: {
                'content-type': FORM,
                authorization: basicAuth(seeded.secretClient.id, seeded.secretClient.secret),
              },
              body: new URLSearchParams({
                grant_type: 'client_credentials',
                resource: OPAQUE_API,
              }).toString(),
            },
            perRound,
            CONCURRENCY,
          ),
        );
        issued += result.requests - result.errors;
        failures += result.errors;
        const rows = await census(databaseUrl);
        const minute = ((Date.now() - started) / 60_000).toFixed(1);
        const perToken = (us: number | undefined) =>
          us === undefined ? '' : String(Math.round(us / Math.max(1, result.requests)));
        console.log(
          `| ${round} | ${minute} | ${issued} | ${result.rps} | ${result.p50} | ${result.p99} | ` +
            `${perToken(cost.serverCpuUs)} | ${perToken(cost.databaseCpuUs)} | ${result.errors} | ` +
            `${rows.tokens} | ${rows.tokensMb} | ${rows.markers} | ${rows.markersMb} | ${rows.autovacuums} | ` +
            `${cost.peakRssMb} |`,
        );
        const rest = ROUND_SECONDS * 1000 - (Date.now() - roundStarted);
        if (round < ROUNDS && rest > 0) await sleep(rest);
      }
    } finally {
      await stopServer(server);
    }
    if (failures) {
      console.error(`${failures} token request(s) failed`);
      process.exitCode = 1;
    }
  } finally {
    await database.drop();
  }
} finally {
  await cluster?.destroy();
}
