/**
 * Console benchmark: sign-in (one scrypt check per request), the overview and the client list of a signed-in
 * user, on PostgreSQL, with the load generator in its own process and the server's peak RSS. Sign-in runs at the
 * concurrency the server accepts (2 password checks at once by default); the pages at BENCH_CONCURRENCY (8).
 *
 *   npm run bench:console      (BENCH_REQUESTS, BENCH_CONCURRENCY)
 */
import { createAdminUser } from '../src/console/admin-user.service.ts';
import { connectDatabase } from '../src/db/connect.ts';
import { createAudit } from '../src/observability/audit.ts';
import { createLogger } from '../src/observability/logger.ts';
import { systemClock } from '../src/clock.ts';
import { createBenchDatabase, FORM, load, seed, startServer, stopServer, withPeakRss } from './harness.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const PASSWORD = 'a benchmark password';

const database = await createBenchDatabase('postgres');
try {
  await seed(database.config);
  const handle = await connectDatabase(database.config);
  try {
    const deps = {
      db: handle.db,
      clock: systemClock,
      audit: createAudit(createLogger('silent')),
      keks: [],
      issuer: '',
    };
    await createAdminUser(deps, { id: 'system:bench' }, { name: 'bench', password: PASSWORD, role: 'write' });
  } finally {
    await handle.close();
  }
  const server = await startServer({
    ...database.env,
    MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS: '100000',
    MAYFLY_CONSOLE_SIGNIN_PER_USER: '10000',
  });
  try {
    // The sign-in form's cookie and token, reusable for every sign-in post (double submit).
    const form = await fetch(`${server.url}/console/sign-in`);
    const formCookie = form.headers.getSetCookie()[0]?.split(';')[0] ?? '';
    const token = /name="_csrf" value="([^"]+)"/.exec(await form.text())?.[1] ?? '';
    const signInBody = new URLSearchParams({ _csrf: token, user: 'bench', password: PASSWORD }).toString();
    const signedIn = await fetch(`${server.url}/console/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: formCookie, 'content-type': FORM, origin: server.url },
      body: signInBody,
    });
    const session = signedIn.headers.getSetCookie().find((line) => line.startsWith('mayfly-console='));
    if (!session) throw new Error(`sign-in failed: ${signedIn.status}`);
    const cookie = session.split(';')[0] ?? '';
    const scenarios = [
      [
        'sign-in (scrypt)',
        {
          url: server.url,
          path: '/console/sign-in',
          method: 'POST' as const,
          headers: { cookie: formCookie, 'content-type': FORM, origin: server.url },
          body: signInBody,
        },
        Math.min(REQUESTS, 400),
        // As many as the server checks at once (UV_THREADPOOL_SIZE − 2); more are answered 503 by design.
        2,
      ],
      [
        'overview',
        { url: server.url, path: '/console', method: 'GET' as const, headers: { cookie } },
        REQUESTS,
        CONCURRENCY,
      ],
      [
        'client list',
        { url: server.url, path: '/console/clients', method: 'GET' as const, headers: { cookie } },
        REQUESTS,
        CONCURRENCY,
      ],
    ] as const;
    console.log('console on PostgreSQL');
    console.log(
      'scenario           conc requests   req/s     p50 ms   p99 ms   statuses                peak RSS',
    );
    for (const [name, spec, requests, concurrency] of scenarios) {
      const [result, rss] = await withPeakRss(server.process.pid ?? 0, () =>
        load(spec, requests, concurrency),
      );
      console.log(
        `${name.padEnd(18)} ${String(concurrency).padStart(4)} ${String(result.requests).padStart(8)} ` +
          `${result.rps.toFixed(0).padStart(7)} ` +
          `${result.p50.toFixed(1).padStart(9)} ${result.p99.toFixed(1).padStart(8)}   ` +
          `${JSON.stringify(result.statuses).padEnd(22)}  ${rss} MB`,
      );
    }
  } finally {
    await stopServer(server);
  }
} finally {
  await database.drop();
}
