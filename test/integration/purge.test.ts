import { afterAll, beforeAll, expect, it } from 'vitest';

import { purgeExpiredRows, startPurgeJob } from '../../src/adapter/purge.ts';
import type { Clock } from '../../src/clock.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import request from 'supertest';

const API = 'https://api.example.com';
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ clock });
  await server.createResource({ identifier: API, scopes: ['read'], token_format: 'opaque', token_ttl: 60 });
  await server.createResource({ identifier: `${API}/jwt`, scopes: ['read'] });
});
afterAll(() => server.close());

const count = async (table: 'oidc_payload' | 'replay_marker' | 'revoked_token') =>
  Number(
    (
      await server.app.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

it('removes expired tokens, replay markers and revocations, and keeps what is still valid', async () => {
  const { client, clientSecret } = await server.createClient({
    name: 'c',
    grants: [
      { resource: API, scopes: ['read'] },
      { resource: `${API}/jwt`, scopes: ['read'] },
    ],
  });
  const key = await generateDpopKey();
  const ask = (resource: string) =>
    requestToken(server.url, { clientId: client.id, secret: clientSecret ?? '', resource, key });
  for (let i = 0; i < 3; i += 1) expect((await ask(API)).status).toBe(200);
  const jwt = (await ask(`${API}/jwt`)).body.access_token as string;
  await request(server.url)
    .post('/token/revocation')
    .set('Authorization', basicAuth(client.id, clientSecret ?? ''))
    .type('form')
    .send({ token: jwt })
    .expect(200);
  // 3 opaque tokens, 4 proof markers, 1 revoked JWT.
  expect(await count('oidc_payload')).toBe(3);
  expect(await count('replay_marker')).toBe(4);
  expect(await count('revoked_token')).toBe(1);

  expect(await purgeExpiredRows(server.app.db, clock)).toEqual({
    payloads: 0,
    replayMarkers: 0,
    revokedTokens: 0,
    rateLimitCounters: 0,
    stoppedEarly: false,
  });

  clock.offsetMs = 61_000; // opaque tokens (60 s) expired; proof markers (660 s) and the revocation (300 s) not.
  expect(await purgeExpiredRows(server.app.db, clock)).toEqual({
    payloads: 3,
    replayMarkers: 0,
    revokedTokens: 0,
    rateLimitCounters: 0,
    stoppedEarly: false,
  });
  expect(await count('oidc_payload')).toBe(0);
  expect(await count('replay_marker')).toBe(4);

  clock.offsetMs = 700_000;
  expect(await purgeExpiredRows(server.app.db, clock)).toEqual({
    payloads: 0,
    replayMarkers: 4,
    revokedTokens: 1,
    rateLimitCounters: 0,
    stoppedEarly: false,
  });
  expect(await count('replay_marker')).toBe(0);
  expect(await count('revoked_token')).toBe(0);
  clock.offsetMs = 0;
});

it('deletes a large backlog in batches', async () => {
  const expired = new Date(Date.now() - 1000);
  const rows = Array.from({ length: 12_000 }, (_, i) => ({
    model: 'ClientCredentials',
    id: `backlog-${i}`,
    payload: '{}',
    grant_id: null,
    uid: null,
    user_code: null,
    expires_at: expired,
  }));
  for (let i = 0; i < rows.length; i += 2000) {
    await server.app.db
      .insertInto('oidc_payload')
      .values(rows.slice(i, i + 2000))
      .execute();
  }
  expect(await purgeExpiredRows(server.app.db, clock)).toEqual({
    payloads: 12_000,
    replayMarkers: 0,
    revokedTokens: 0,
    rateLimitCounters: 0,
    stoppedEarly: false,
  });
  expect(await count('oidc_payload')).toBe(0);
});

it('runs on a schedule and stops cleanly', async () => {
  await server.app.db
    .insertInto('replay_marker')
    .values({ id: 'scheduled', expires_at: new Date(0) })
    .execute();
  const job = startPurgeJob(server.app.db, clock, 0.05, createLogger('silent'));
  try {
    await expect.poll(() => count('replay_marker'), { timeout: 5000, interval: 50 }).toBe(0);
  } finally {
    await job.stop();
  }
});

it('stops between batches when asked, and steps aside while another instance purges', async () => {
  const aborted = new AbortController();
  aborted.abort();
  expect(await purgeExpiredRows(server.app.db, clock, aborted.signal)).toEqual({
    payloads: 0,
    replayMarkers: 0,
    revokedTokens: 0,
    rateLimitCounters: 0,
    stoppedEarly: true,
  });
  if (server.database.config.kind !== 'postgres') return;
  // Another session holding the purge lock (in an open transaction) makes this instance step aside.
  const { default: pg } = await import('pg');
  const other = new pg.Client({ connectionString: server.database.config.url });
  await other.connect();
  try {
    await other.query('begin');
    await other.query('select pg_advisory_xact_lock($1)', [0x6d66_7001]);
    expect((await purgeExpiredRows(server.app.db, clock)).stoppedEarly).toBe(true);
    await other.query('rollback');
    expect((await purgeExpiredRows(server.app.db, clock)).stoppedEarly).toBe(false);
  } finally {
    await other.end();
  }
});
