import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { updateClient } from '../../src/clients/client.service.ts';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';

interface Credentials {
  id: string;
  secret: string;
}

let key: DpopKey;
beforeAll(async () => {
  key = await generateDpopKey();
});

async function withApi(server: TestServer, name: string, extra: object = {}): Promise<Credentials> {
  const { client, clientSecret } = await server.createClient({
    name,
    grants: [{ resource: API, scopes: ['read'] }],
    ...extra,
  });
  return { id: client.id, secret: clientSecret ?? '' };
}

const token = (server: TestServer, as: Credentials) =>
  requestToken(server.url, { clientId: as.id, secret: as.secret, resource: API, key });

/** A token request from `address`, as a trusted proxy reports it. */
async function tokenFrom(server: TestServer, as: Credentials, address: string) {
  return request(server.url)
    .post('/token')
    .type('form')
    .set('Authorization', basicAuth(as.id, as.secret))
    .set('X-Forwarded-For', address)
    .set('DPoP', await createProof(key, { htu: `${server.url}/token` }))
    .send({ grant_type: 'client_credentials', resource: API });
}

async function counter(server: TestServer, key: string): Promise<number | undefined> {
  const row = await server.app.db
    .selectFrom('rate_limit')
    .select('points')
    .where('key', '=', key)
    .executeTakeFirst();
  return row?.points;
}

function expectLimited(res: request.Response, fragment: string, maxRetryAfter = 60): void {
  expect(res.status).toBe(429);
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(maxRetryAfter);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  expect(res.body.error).toBe('temporarily_unavailable');
  expect(res.body.error_description).toContain(fragment);
}

describe('token requests per client', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '3' } });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('serves the limit, then answers 429 with Retry-After and an OAuth error, audited', async () => {
    const client = await withApi(server, 'limited');
    for (let i = 0; i < 3; i++) expect((await token(server, client)).status).toBe(200);
    const refused = await token(server, client);
    expectLimited(refused, 'too many token requests by this client (limit 3 per minute)');
    const line = server.logs.audit('token').at(-1);
    expect(line).toMatchObject({
      outcome: 'failure',
      client_id: client.id,
      error: 'temporarily_unavailable',
      reason: 'too many token requests by this client (limit 3 per minute)',
    });
    // Another client is not affected.
    expect((await token(server, await withApi(server, 'other'))).status).toBe(200);
  });

  it('refuses before any signature work, and from memory once over the limit', async () => {
    const client = await withApi(server, 'hammering');
    for (let i = 0; i < 3; i++) expect((await token(server, client)).status).toBe(200);
    expectLimited(await token(server, client), 'limit 3 per minute');
    expect(await counter(server, `token-client:${client.id}`)).toBe(4);
    // A proof with a broken signature is not even looked at: the limit answers first.
    const broken = (await createProof(key, { htu: `${server.url}/token` })).replace(/.{4}$/, 'AAAA');
    const res = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      proof: broken,
    });
    expectLimited(res, 'limit 3 per minute');
    // No further writes: the refused requests were decided in memory.
    for (let i = 0; i < 5; i++) expectLimited(await token(server, client), 'limit 3 per minute');
    expect(await counter(server, `token-client:${client.id}`)).toBe(4);
  });

  it("follows the client's own limit, set through the admin service", async () => {
    const client = await withApi(server, 'generous', { rate_limits: { tokens_per_minute: 5 } });
    for (let i = 0; i < 5; i++) expect((await token(server, client)).status).toBe(200);
    expectLimited(await token(server, client), 'limit 5 per minute');

    const strict = await withApi(server, 'strict');
    await updateClient(server.app.admin, TEST_ACTOR, strict.id, { rate_limits: { tokens_per_minute: 1 } });
    // The first request of this instance reads the client; its own limit applies from then on.
    expect((await token(server, strict)).status).toBe(200);
    expectLimited(await token(server, strict), 'limit 1 per minute');
  });

  it('shows and clears a client limit through the admin API representation', async () => {
    const client = await withApi(server, 'shown', { rate_limits: { introspections_per_minute: 50 } });
    const updated = await updateClient(server.app.admin, TEST_ACTOR, client.id, {
      rate_limits: { tokens_per_minute: 7 },
    });
    expect(updated.rate_limits).toEqual({ tokens_per_minute: 7, introspections_per_minute: 50 });
    const cleared = await updateClient(server.app.admin, TEST_ACTOR, client.id, {
      rate_limits: { introspections_per_minute: null },
    });
    expect(cleared.rate_limits).toEqual({ tokens_per_minute: 7, introspections_per_minute: null });
    await expect(
      updateClient(server.app.admin, TEST_ACTOR, client.id, { rate_limits: { tokens_per_minute: 0 } }),
    ).rejects.toMatchObject({ code: 'invalid_input' });
  });
});

describe('a client limit belongs to the client', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '3',
        MAYFLY_TRUST_PROXY: 'true',
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '1001',
      },
    });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('is not spent by requests that claim the client without its credentials', async () => {
    const victim = await withApi(server, 'victim');
    const attacker = '203.0.113.99';
    for (let i = 0; i < 5; i++) {
      expect((await tokenFrom(server, { ...victim, secret: 'guess' }, attacker)).status).toBe(401);
      const plain = await request(server.url)
        .post('/token')
        .type('text/plain')
        .set('Authorization', basicAuth(victim.id, 'guess'))
        .set('X-Forwarded-For', attacker)
        .send('grant_type=client_credentials');
      expect(plain.status).toBe(400);
    }
    for (let i = 0; i < 3; i++) expect((await tokenFrom(server, victim, '198.51.100.30')).status).toBe(200);
    expectLimited(await tokenFrom(server, victim, '198.51.100.30'), 'limit 3 per minute');
  });

  it('applies a limit below the default from the first request an instance sees', async () => {
    const strict = await withApi(server, 'below-default', { rate_limits: { tokens_per_minute: 2 } });
    // A fresh instance on the same database has never read this client.
    const other = await startTestServer({
      database: server.database,
      env: { MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '600' },
    });
    try {
      expect((await token(other, strict)).status).toBe(200);
      expect((await token(other, strict)).status).toBe(200);
      expectLimited(await token(other, strict), 'limit 2 per minute');
    } finally {
      await other.close();
    }
  });
});

describe('leases', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '100' } });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('serves exactly the limit to concurrent requests while writing the counter once per lease', async () => {
    const client = await withApi(server, 'busy');
    // Revocation counts against the token limit and costs little: an unknown token is simply accepted.
    const revoke = () =>
      request(server.url)
        .post('/token/revocation')
        .type('form')
        .set('Authorization', basicAuth(client.id, client.secret))
        .send({ token: 'not-a-token' });
    // A request counts once the client has authenticated, when this instance has read its own limit: requests
    // are claimed five at a time (1/20 of the limit) from the first.
    expect((await revoke()).status).toBe(200);
    expect(await counter(server, `token-client:${client.id}`)).toBe(5);
    expect((await revoke()).status).toBe(200);
    expect(await counter(server, `token-client:${client.id}`)).toBe(5);
    // 98 more, ten at a time: requests arriving while a lease is claimed wait for it rather than claim their own.
    const statuses: number[] = [200, 200];
    while (statuses.length < 100) {
      const batch = Math.min(10, 100 - statuses.length);
      statuses.push(...(await Promise.all(Array.from({ length: batch }, revoke))).map((r) => r.status));
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(100);
    expect(await counter(server, `token-client:${client.id}`)).toBe(100);
    expectLimited(await revoke(), 'limit 100 per minute');
  });
});

describe('token requests per address', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: { MAYFLY_RATE_LIMIT_TOKEN_PER_ADDRESS: '4', MAYFLY_TRUST_PROXY: 'true' },
    });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('counts every client an address claims, and no other address', async () => {
    const clients = await Promise.all(['a', 'b', 'c'].map((n) => withApi(server, n)));
    const statuses: number[] = [];
    for (const client of [...clients, ...clients])
      statuses.push((await tokenFrom(server, client, '203.0.113.9')).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    const refused = await tokenFrom(server, clients[0] as Credentials, '203.0.113.9');
    expectLimited(refused, 'too many requests from this address (limit 4 per minute)');
    expect((await tokenFrom(server, clients[0] as Credentials, '198.51.100.20')).status).toBe(200);
  });

  it('counts requests naming no client, and clients named in the form', async () => {
    const address = '203.0.113.10';
    const client = await withApi(server, 'post', { auth_method: 'client_secret_post' });
    const post = () =>
      request(server.url)
        .post('/token')
        .type('form')
        .set('X-Forwarded-For', address)
        .send({ grant_type: 'client_credentials', client_id: client.id, client_secret: 'wrong' });
    for (let i = 0; i < 4; i++) expect((await post()).body.error).toBe('invalid_client');
    const refused = await post();
    expectLimited(refused, 'from this address');
    expect(server.logs.audit('token').at(-1)).toMatchObject({ client_id: client.id });
  });
});

describe('introspection per resource server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: '2' } });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('limits each resource server on its own', async () => {
    const caller = await withApi(server, 'caller');
    const issued = (await token(server, caller)).body.access_token as string;
    const create = async (name: string, extra: object = {}) => {
      const { client, clientSecret } = await server.createClient({ name, introspects: [API], ...extra });
      return { id: client.id, secret: clientSecret ?? '' };
    };
    const api = await create('api');
    const big = await create('big-api', { rate_limits: { introspections_per_minute: 4 } });
    const introspect = (as: Credentials) =>
      request(server.url)
        .post('/token/introspection')
        .type('form')
        .set('Authorization', basicAuth(as.id, as.secret))
        .send({ token: issued });
    expect((await introspect(api)).body.active).toBe(true);
    expect((await introspect(api)).body.active).toBe(true);
    expectLimited(
      await introspect(api),
      'too many introspection requests by this client (limit 2 per minute)',
    );
    for (let i = 0; i < 4; i++) expect((await introspect(big)).body.active).toBe(true);
    expectLimited(await introspect(big), 'limit 4 per minute');
    // Token requests have their own counter.
    expect((await token(server, caller)).status).toBe(200);
  });
});

describe('authentication-failure backoff', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '2',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '4',
        MAYFLY_AUTH_FAILURE_BLOCK: '120',
        MAYFLY_TRUST_PROXY: 'true',
      },
    });
    await server.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(() => server.close());

  it('slows, then blocks the offending address without locking the client out of its own', async () => {
    const victim = await withApi(server, 'victim');
    const attacker = '203.0.113.66';
    const guess = { id: victim.id, secret: 'not-the-secret' };
    const timed = async (as: Credentials, address: string) => {
      const started = performance.now();
      const res = await tokenFrom(server, as, address);
      return { res, ms: performance.now() - started };
    };

    const first = await timed(guess, attacker);
    expect(first.res.body.error).toBe('invalid_client');
    const second = await timed(guess, attacker);
    expect(second.res.body.error).toBe('invalid_client');
    expect(second.ms).toBeGreaterThanOrEqual(240);
    const third = await timed(guess, attacker);
    expect(third.res.body.error).toBe('invalid_client');
    expect(third.ms).toBeGreaterThanOrEqual(490);
    const fourth = await timed(guess, attacker);
    expect(fourth.res.body.error).toBe('invalid_client');

    // Blocked: even the right secret is refused from that address, before it is checked.
    const blocked = await tokenFrom(server, victim, attacker);
    expectLimited(
      blocked,
      'too many failed authentications of this client from this address (4 failures)',
      120,
    );
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(60);

    // The client, from its own address, is served.
    expect((await tokenFrom(server, victim, '198.51.100.7')).status).toBe(200);

    const steps = server.logs.audit('auth_failure_backoff').filter((l) => l.client_id === victim.id);
    expect(steps.map((s) => [s.step, s.failures, s.ip])).toEqual([
      ['slowed', 2, attacker],
      ['slowed', 3, attacker],
      ['blocked', 4, attacker],
    ]);
    expect(steps[0]).toMatchObject({ delay_ms: 250 });
    expect(steps[2]).toMatchObject({ blocked_for_s: 120 });
    const refusal = server.logs
      .audit('token')
      .filter((l) => l.client_id === victim.id && l.ip === attacker)
      .at(-1);
    expect(refusal).toMatchObject({ error: 'temporarily_unavailable', outcome: 'failure' });
    expect(server.logs.text()).not.toContain(victim.secret);
  });

  it('slows and blocks failures naming an unknown client id exactly as for a real one (no existence oracle)', async () => {
    const real = await withApi(server, 'real');
    const cases = [
      { id: real.id, address: '203.0.113.90' },
      { id: 'no-such-client-id', address: '203.0.113.91' },
    ];
    const observed = [];
    for (const { id, address } of cases) {
      const durations: number[] = [];
      const answers: unknown[] = [];
      for (let i = 0; i < 4; i++) {
        const started = performance.now();
        const res = await tokenFrom(server, { id, secret: 'guess' }, address);
        durations.push(performance.now() - started);
        answers.push({ status: res.status, error: res.body.error });
      }
      const blocked = await tokenFrom(server, { id, secret: 'guess' }, address);
      const steps = server.logs
        .audit('auth_failure_backoff')
        .filter((l) => l.client_id === id)
        .map((l) => [l.step, l.failures]);
      observed.push({ answers, blocked: blocked.status, steps, durations });
    }
    const [known, unknown] = observed;
    // The same answers, the same steps, the same delays.
    expect(unknown?.answers).toEqual(known?.answers);
    expect(unknown?.answers).toEqual(Array(4).fill({ status: 401, error: 'invalid_client' }));
    expect(unknown?.blocked).toBe(429);
    expect(known?.blocked).toBe(429);
    expect(unknown?.steps).toEqual(known?.steps);
    for (const durations of [known?.durations ?? [], unknown?.durations ?? []]) {
      expect(durations[1]).toBeGreaterThanOrEqual(240);
      expect(durations[2]).toBeGreaterThanOrEqual(490);
    }
    // Measured, the delays differ by far less than the first step of the backoff (250 ms).
    for (const i of [1, 2, 3]) {
      expect(Math.abs((unknown?.durations[i] ?? 0) - (known?.durations[i] ?? 0))).toBeLessThan(200);
    }
  });

  it('blocks on every instance sharing the database', async () => {
    const other = await startTestServer({
      database: server.database,
      env: {
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '2',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '4',
        MAYFLY_TRUST_PROXY: 'true',
      },
    });
    try {
      const victim = await withApi(server, 'shared-victim');
      const guess = { id: victim.id, secret: 'wrong' };
      const attacker = '203.0.113.77';
      for (let i = 0; i < 4; i++) {
        // The fourth, blocking failure is recorded by `server`.
        const res = await tokenFrom(i % 2 ? server : other, guess, attacker);
        expect(res.body.error).toBe('invalid_client');
      }
      // The instance that did not record the blocking failure reads the stored block: even the right secret is
      // refused there, before it is checked.
      expectLimited(await tokenFrom(other, victim, attacker), 'failed authentications', 900);
      expectLimited(await tokenFrom(server, victim, attacker), 'failed authentications', 900);
      expect((await tokenFrom(other, victim, '198.51.100.8')).status).toBe(200);
    } finally {
      await other.close();
    }
  });
});

describe('limits shared by instances', () => {
  let database: TestDatabase;
  let first: TestServer;
  let second: TestServer;
  beforeAll(async () => {
    database = await createTestDatabase();
    const env = { MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '4' };
    first = await startTestServer({ database, env });
    second = await startTestServer({ database, env });
    await first.createResource({ identifier: API, scopes: ['read'] });
  });
  afterAll(async () => {
    await second.close();
    await first.close();
    await database.drop();
  });

  it('counts one client across both instances', async () => {
    const client = await withApi(first, 'spread');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await token(i % 2 ? second : first, client)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });
});

describe('settings', () => {
  it('refuses a block threshold at or below the slow threshold', () => {
    expect(() =>
      loadConfig({ MAYFLY_AUTH_FAILURE_SLOW_AFTER: '5', MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '5' }),
    ).toThrow(ConfigError);
    expect(() => loadConfig({ MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: '0' })).toThrow(
      /MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: expected at least 1/,
    );
  });

  it('has documented defaults', () => {
    const config = loadConfig({});
    expect(config.rateLimits).toEqual({
      tokenPerClient: 600,
      tokenPerAddress: 1200,
      introspectionPerClient: 6000,
      introspectionPerAddress: 60000,
      registrationPerAddress: 60,
      registrationPerToken: 20,
    });
    expect(config.authFailures).toEqual({
      slowAfter: 5,
      blockAfter: 20,
      windowSeconds: 900,
      blockSeconds: 900,
    });
  });
});
