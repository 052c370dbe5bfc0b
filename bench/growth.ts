/**
 * `npm run bench:growth`: issues many tokens over several purge intervals against one Mayfly process on
 * Postgres and reports, round by round, the rows and size of the token table and the cost of a token. It shows
 * whether the database stays bounded (expired tokens and replay markers are purged) and whether a token costs
 * more as the table grows. Traffic goes to 127.0.0.1 only; every round is bounded in requests and time.
 *
 *   GROWTH_TOKENS (200000)  GROWTH_ROUNDS (20)  GROWTH_ROUND_SECONDS (42): each round issues TOKENS/ROUNDS
 *   opaque tokens (30 s lifetime, so each is stored and expires), then waits out the rest of its time
 *   GROWTH_PURGE_INTERVAL (30): MAYFLY_PURGE_INTERVAL of the server   BENCH_CONCURRENCY (32)
 *
 * Replay markers of DPoP proofs live 660 s (the ±300 s proof window plus a margin), so the rows level off only
 * once the run is longer than that: the defaults run about 14 minutes.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { basicAuth } from '../test/support/oauth.ts';
import {
  createBenchDatabase,
  FORM,
  load,
  OPAQUE_API,
  seed,
  startServer,
  stopServer,
  withPeakRss,
} from './harness.ts';

const TOKENS = Number(process.env.GROWTH_TOKENS ?? 200_000);
const ROUNDS = Number(process.env.GROWTH_ROUNDS ?? 20);
const ROUND_SECONDS = Number(process.env.GROWTH_ROUND_SECONDS ?? 42);
const PURGE_INTERVAL = Number(process.env.GROWTH_PURGE_INTERVAL ?? 30);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

interface Census {
  tokens: number;
  replay: number;
  other: number;
  tableMb: number;
}

async function census(url: string): Promise<Census> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const counts = await client.query<{ model: string; n: string }>(
      'select model, count(*) as n from oidc_payload group by model',
    );
    const size = await client.query<{ bytes: string }>(
      "select pg_total_relation_size('oidc_payload') as bytes",
    );
    const by = new Map(counts.rows.map((row) => [row.model, Number(row.n)]));
    const tokens = by.get('ClientCredentials') ?? 0;
    const replay = by.get('ReplayDetection') ?? 0;
    const all = [...by.values()].reduce((sum, n) => sum + n, 0);
    return {
      tokens,
      replay,
      other: all - tokens - replay,
      tableMb: Math.round(Number(size.rows[0]?.bytes ?? 0) / 1024 / 102.4) / 10,
    };
  } finally {
    await client.end();
  }
}

const database = await createBenchDatabase('postgres');
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
      `purge every ${PURGE_INTERVAL} s, ${CONCURRENCY} connections\n`,
  );
  const header =
    '| round | minute | issued | tokens/s | p50 ms | p99 ms | errors | token rows | replay rows | table MB | RSS MB |';
  console.log(header);
  console.log(header.replace(/[^|]/g, '-'));
  const started = Date.now();
  let issued = 0;
  let failures = 0;
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const roundStarted = Date.now();
      const [result, rssMb] = await withPeakRss(server.process.pid ?? 0, () =>
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
            body: new URLSearchParams({ grant_type: 'client_credentials', resource: OPAQUE_API }).toString(),
          },
          perRound,
          CONCURRENCY,
        ),
      );
      issued += result.requests - result.errors;
      failures += result.errors;
      const rows = await census(databaseUrl);
      const minute = ((Date.now() - started) / 60_000).toFixed(1);
      console.log(
        `| ${round} | ${minute} | ${issued} | ${result.rps} | ${result.p50} | ${result.p99} | ${result.errors} | ` +
          `${rows.tokens} | ${rows.replay} | ${rows.tableMb} | ${rssMb} |`,
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
