import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { TokenStore } from '../../src/adapter/token-store.ts';
import type { Statement, Statements } from '../../src/db/statements.ts';
import { createProof, generateDpopKey } from '../support/dpop.ts';
import { createClientAssertion, JWT_BEARER_ASSERTION, requestToken, postToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** Replay detection must be atomic: of concurrent uses of one proof, exactly one succeeds. */

const API = 'https://api.example.com';
let server: TestServer;

beforeAll(async () => {
  // Replays fail authentication from one address by design here: the backoff would answer them first.
  server = await startTestServer({
    env: { MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000', MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '1001' },
  });
  await server.createResource({ identifier: API, scopes: ['read'] });
});
afterAll(() => server.close());

it('gives exactly one token for 25 concurrent requests reusing one DPoP proof, and 24 OAuth errors', async () => {
  const { client, clientSecret } = await server.createClient({
    name: 'racer',
    grants: [{ resource: API, scopes: ['read'] }],
  });
  const key = await generateDpopKey();
  const proof = await createProof(key, { htu: `${server.url}/token` });
  const responses = await Promise.all(
    Array.from({ length: 25 }, () =>
      requestToken(server.url, { clientId: client.id, secret: clientSecret ?? '', resource: API, proof }),
    ),
  );
  const statuses = responses.map((r) => r.status);
  expect(statuses.filter((s) => s >= 500)).toEqual([]);
  expect(statuses.filter((s) => s === 200)).toHaveLength(1);
  const refused = responses.filter((r) => r.status !== 200);
  expect(refused).toHaveLength(24);
  for (const res of refused) {
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_dpop_proof');
  }
  const markers = await server.app.db
    .selectFrom('replay_marker')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  expect(Number(markers.n)).toBeGreaterThanOrEqual(1);
});

it('gives exactly one token for 25 concurrent requests reusing one client assertion', async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kty: 'EC' as const, kid: 'a', alg: 'ES256' };
  const { client } = await server.createClient({
    name: 'assertion racer',
    auth_method: 'private_key_jwt',
    jwks: { keys: [jwk] },
    grants: [{ resource: API, scopes: ['read'] }],
  });
  const assertion = await createClientAssertion({
    clientId: client.id,
    audience: `${server.url}/token`,
    key: pair.privateKey,
    kid: 'a',
  });
  const key = await generateDpopKey();
  const responses = await Promise.all(
    Array.from({ length: 25 }, async () =>
      postToken(
        server.url,
        {
          grant_type: 'client_credentials',
          client_assertion_type: JWT_BEARER_ASSERTION,
          client_assertion: assertion,
          resource: API,
        },
        { key },
      ),
    ),
  );
  const statuses = responses.map((r) => r.status);
  expect(statuses.filter((s) => s === 200)).toHaveLength(1);
  expect(statuses.filter((s) => s === 401)).toHaveLength(24);
  expect(responses.filter((r) => r.status === 401).every((r) => r.body.error === 'invalid_client')).toBe(
    true,
  );
});

it('keeps a proof marker for longer than the proof could be accepted, so a late replay still fails', async () => {
  const { client, clientSecret } = await server.createClient({
    name: 'late',
    grants: [{ resource: API, scopes: ['read'] }],
  });
  const key = await generateDpopKey();
  // A proof dated almost 5 minutes ahead is acceptable for almost 10 minutes in all.
  const proof = await createProof(key, {
    htu: `${server.url}/token`,
    claims: { iat: Math.floor(Date.now() / 1000) + 290 },
  });
  const first = await requestToken(server.url, {
    clientId: client.id,
    secret: clientSecret ?? '',
    resource: API,
    proof,
  });
  expect(first.status).toBe(200);
  const marker = await server.app.db
    .selectFrom('replay_marker')
    .select('expires_at')
    .orderBy('expires_at', 'desc')
    .executeTakeFirstOrThrow();
  const keptFor = (marker.expires_at.getTime() - Date.now()) / 1000;
  expect(keptFor).toBeGreaterThan(290 + 300);
});

/** The database's statements, counting how many of them ran. */
function countingStatements(inner: Statements): Statements & { ran: string[] } {
  const ran: string[] = [];
  return {
    ran,
    query<Row>(statement: Statement, values: readonly unknown[]) {
      ran.push(statement.name);
      return inner.query<Row>(statement, values);
    },
  };
}

it('settles duplicates inside one batched claim: the first claim of a value wins, the others are replays', async () => {
  const statements = countingStatements(server.database.handle.statements);
  const store = new TokenStore(statements);
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 660_000);
  const ids = ['dup-a', 'dup-b', 'dup-a', 'dup-c', 'dup-a', 'dup-b'];
  const won = await Promise.all(ids.map((id) => store.claimOnce({ id, expiresAt, now })));
  expect(won).toEqual([true, true, false, true, false, false]);
  // One statement for the six claims.
  expect(statements.ran).toEqual(['mayfly_claim_replay_markers']);
  // A later batch finds every value taken.
  const again = await Promise.all(
    ['dup-a', 'dup-b', 'dup-c'].map((id) => store.claimOnce({ id, expiresAt, now })),
  );
  expect(again).toEqual([false, false, false]);
});

it('lets exactly one of two instances claim a value when both batches hold it, many times over', async () => {
  // Two stores are two instances' batchers on the same database: each sends its batch as one statement.
  const first = new TokenStore(server.database.handle.statements);
  const second = new TokenStore(server.database.handle.statements);
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 660_000);
  for (let round = 0; round < 20; round += 1) {
    const id = `shared-${round}`;
    const claims = await Promise.all([
      ...Array.from({ length: 5 }, () => first.claimOnce({ id, expiresAt, now })),
      ...Array.from({ length: 5 }, () => second.claimOnce({ id, expiresAt, now })),
    ]);
    expect(claims.filter(Boolean)).toHaveLength(1);
  }
});

it('reclaims a value whose marker has expired, once', async () => {
  const store = new TokenStore(server.database.handle.statements);
  const past = new Date(Date.now() - 1_000);
  await server.app.db.insertInto('replay_marker').values({ id: 'expired', expires_at: past }).execute();
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 660_000);
  const claims = await Promise.all(
    Array.from({ length: 4 }, () => store.claimOnce({ id: 'expired', expiresAt, now })),
  );
  expect(claims).toEqual([true, false, false, false]);
});
