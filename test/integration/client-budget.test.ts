/**
 * Nobody spends another client's budget without authenticating as it: a request counts against a client's rate
 * limit, its denial statistics and its metric label only once its authentication has positively succeeded. Every
 * way a request naming a client can fail once the provider has looked the client up is tried against a victim
 * whose limit is 3 per minute, on the token, introspection and revocation endpoints; the victim must still get
 * its whole budget, and no more.
 */
import { randomUUID } from 'node:crypto';

import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, createClientAssertion, JWT_BEARER_ASSERTION } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const LIMIT = 3;
const ATTEMPTS = 5;

type Endpoint = 'token' | 'introspection' | 'revocation';
const PATHS: Record<Endpoint, string> = {
  token: '/token',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
};

let server: TestServer;
let dpopKey: DpopKey;

beforeAll(async () => {
  server = await startTestServer({
    env: {
      MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT: String(LIMIT),
      MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT: String(LIMIT),
      // The failures of this file come from one address: no backoff in the way.
      MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000',
      MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '1001',
    },
  });
  await server.createResource({ identifier: API, scopes: ['read'] });
  dpopKey = await generateDpopKey();
});
afterAll(() => server.close());

interface Victim {
  id: string;
  secret: string;
  /** For a private_key_jwt victim. */
  key?: CryptoKey;
}

async function secretVictim(endpoint: Endpoint): Promise<Victim> {
  const { client, clientSecret } = await server.createClient({
    name: `victim-${randomUUID()}`,
    ...(endpoint === 'introspection'
      ? { introspects: [API] }
      : { grants: [{ resource: API, scopes: ['read'] }] }),
  });
  return { id: client.id, secret: clientSecret ?? '' };
}

async function keyVictim(endpoint: Endpoint): Promise<Victim> {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kty: 'EC' as const, kid: 'k', alg: 'ES256' };
  const { client } = await server.createClient({
    name: `keyed-victim-${randomUUID()}`,
    auth_method: 'private_key_jwt',
    jwks: { keys: [jwk] },
    ...(endpoint === 'introspection'
      ? { introspects: [API] }
      : { grants: [{ resource: API, scopes: ['read'] }] }),
  });
  return { id: client.id, secret: '', key: pair.privateKey };
}

/** A request to `endpoint` with the given authentication (headers and form members), as a client sends it. */
async function send(
  endpoint: Endpoint,
  auth: { headers?: Record<string, string>; form?: Record<string, string> },
): Promise<request.Response> {
  const path = PATHS[endpoint];
  let call = request(server.url).post(path).type('form');
  for (const [name, value] of Object.entries(auth.headers ?? {})) call = call.set(name, value);
  if (endpoint === 'token')
    call = call.set('DPoP', await createProof(dpopKey, { htu: `${server.url}${path}` }));
  const form =
    endpoint === 'token'
      ? { grant_type: 'client_credentials', resource: API }
      : { token: 'an-opaque-token-of-nobody' };
  return call.send({ ...form, ...auth.form });
}

const assertionForm = (assertion: string) => ({
  client_assertion_type: JWT_BEARER_ASSERTION,
  client_assertion: assertion,
});

/** What the real client sends. */
async function genuine(endpoint: Endpoint, victim: Victim) {
  if (!victim.key) return send(endpoint, { headers: { Authorization: basicAuth(victim.id, victim.secret) } });
  const assertion = await createClientAssertion({
    clientId: victim.id,
    audience: `${server.url}${PATHS[endpoint]}`,
    key: victim.key,
    kid: 'k',
  });
  return send(endpoint, { form: assertionForm(assertion) });
}

/** The victim's whole budget is there, and no more: LIMIT answers, then 429. */
async function expectFullBudget(endpoint: Endpoint, victim: Victim): Promise<void> {
  for (let i = 0; i < LIMIT; i += 1) {
    const res = await genuine(endpoint, victim);
    expect(res.status, `genuine request ${i + 1}: ${JSON.stringify(res.body)}`).toBe(200);
  }
  const over = await genuine(endpoint, victim);
  expect(over.status).toBe(429);
  expect(over.body.error).toBe('temporarily_unavailable');
  expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
}

const attacker = async () => (await generateKeyPair('ES256', { extractable: true })).privateKey;

/** Each way a request naming `victim` fails, with the status and OAuth error it gets. */
const SECRET_FAILURES: [
  string,
  (endpoint: Endpoint, victim: Victim) => Promise<request.Response>,
  number,
  string,
][] = [
  [
    'a wrong secret (Basic)',
    (endpoint, victim) => send(endpoint, { headers: { Authorization: basicAuth(victim.id, 'wrong') } }),
    401,
    'invalid_client',
  ],
  [
    'a wrong secret (form)',
    (endpoint, victim) => send(endpoint, { form: { client_id: victim.id, client_secret: 'wrong' } }),
    401,
    'invalid_client',
  ],
  [
    'a client attestation proof header',
    (endpoint, victim) =>
      send(endpoint, {
        headers: { 'OAuth-Client-Attestation-PoP': 'x.y.z' },
        form: { client_id: victim.id },
      }),
    400,
    'invalid_request',
  ],
  [
    'a client attestation header',
    (endpoint, victim) =>
      send(endpoint, { headers: { 'OAuth-Client-Attestation': 'x.y.z' }, form: { client_id: victim.id } }),
    400,
    'invalid_request',
  ],
  [
    'a client assertion, for a client of another method',
    async (endpoint, victim) =>
      send(endpoint, {
        form: assertionForm(
          await createClientAssertion({
            clientId: victim.id,
            audience: `${server.url}${PATHS[endpoint]}`,
            key: await attacker(),
          }),
        ),
      }),
    401,
    'invalid_client',
  ],
  [
    'two authentication methods at once',
    (endpoint, victim) =>
      send(endpoint, {
        headers: { Authorization: basicAuth(victim.id, 'wrong') },
        form: { client_id: victim.id, client_secret: 'wrong' },
      }),
    400,
    'invalid_request',
  ],
];

const assertion = async (
  endpoint: Endpoint,
  victim: Victim,
  options: { key?: CryptoKey; audience?: string; exp?: number; withoutJti?: boolean } = {},
) => {
  const key = options.key ?? victim.key;
  if (!key) throw new Error('no key');
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ iat: now, exp: options.exp ?? now + 60 })
    .setProtectedHeader({ alg: 'ES256', kid: 'k' })
    .setIssuer(victim.id)
    .setSubject(victim.id)
    .setAudience(options.audience ?? `${server.url}${PATHS[endpoint]}`);
  return send(endpoint, {
    form: assertionForm(await (options.withoutJti ? jwt : jwt.setJti(randomUUID())).sign(key)),
  });
};

const KEY_FAILURES: [
  string,
  (endpoint: Endpoint, victim: Victim) => Promise<request.Response>,
  number,
  string,
][] = [
  [
    'an assertion signed by another key',
    async (e, v) => assertion(e, v, { key: await attacker() }),
    401,
    'invalid_client',
  ],
  [
    'an assertion for another audience',
    (e, v) => assertion(e, v, { audience: 'https://other.example/token' }),
    401,
    'invalid_client',
  ],
  [
    'an expired assertion',
    (e, v) => assertion(e, v, { exp: Math.floor(Date.now() / 1000) - 600 }),
    401,
    'invalid_client',
  ],
  ['an assertion without jti', (e, v) => assertion(e, v, { withoutJti: true }), 401, 'invalid_client'],
  [
    'a secret, for a private_key_jwt client',
    (e, v) => send(e, { headers: { Authorization: basicAuth(v.id, 'guess') } }),
    401,
    'invalid_client',
  ],
];

describe.each(['token', 'introspection', 'revocation'] as const)('at %s', (endpoint) => {
  it.each(SECRET_FAILURES)(
    'leaves a secret client its budget after requests naming it with %s',
    async (_case, fail, status, error) => {
      const victim = await secretVictim(endpoint);
      for (let i = 0; i < ATTEMPTS; i += 1) {
        const res = await fail(endpoint, victim);
        expect({ status: res.status, error: res.body.error }).toEqual({ status, error });
      }
      await expectFullBudget(endpoint, victim);
    },
  );

  it.each(KEY_FAILURES)(
    'leaves a private_key_jwt client its budget after requests naming it with %s',
    async (_case, fail, status, error) => {
      const victim = await keyVictim(endpoint);
      for (let i = 0; i < ATTEMPTS; i += 1) {
        const res = await fail(endpoint, victim);
        expect({ status: res.status, error: res.body.error }).toEqual({ status, error });
      }
      await expectFullBudget(endpoint, victim);
    },
  );

  it('counts a replayed assertion only once: the first, genuine use', async () => {
    const victim = await keyVictim(endpoint);
    const replayed = await createClientAssertion({
      clientId: victim.id,
      audience: `${server.url}${PATHS[endpoint]}`,
      key: victim.key as CryptoKey,
      kid: 'k',
    });
    expect((await send(endpoint, { form: assertionForm(replayed) })).status).toBe(200);
    for (let i = 0; i < ATTEMPTS; i += 1) {
      const res = await send(endpoint, { form: assertionForm(replayed) });
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    }
    for (let i = 1; i < LIMIT; i += 1) expect((await genuine(endpoint, victim)).status).toBe(200);
    expect((await genuine(endpoint, victim)).status).toBe(429);
  });
});

describe('statistics of a client named by others', () => {
  it('never label metrics or raise anomalies with a client that did not authenticate', async () => {
    const victim = await secretVictim('token');
    for (let i = 0; i < 20; i += 1) {
      expect(
        (await send('token', { headers: { Authorization: basicAuth(victim.id, 'wrong') } })).status,
      ).toBe(401);
    }
    const metrics = await server.app.metrics.registry.getSingleMetricAsString('mayfly_token_requests_total');
    expect(metrics).not.toContain(victim.id);
    expect(server.logs.audit('anomaly').filter((line) => line.client_id === victim.id)).toEqual([]);
    // Once it authenticates, its requests carry its name.
    expect((await genuine('token', victim)).status).toBe(200);
    expect(
      await server.app.metrics.registry.getSingleMetricAsString('mayfly_token_requests_total'),
    ).toContain(`client_id="${victim.id}"`);
  });
});
