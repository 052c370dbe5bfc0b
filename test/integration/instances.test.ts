import { randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import request, { type Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken } from '../support/admin.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { startCluster, type Cluster } from '../support/instances.ts';
import {
  basicAuth,
  createClientAssertion,
  JWT_BEARER_ASSERTION,
  postToken,
  requestToken,
} from '../support/oauth.ts';

/**
 * Acceptance criterion "two instances, one database" of the operations feature: two real `mayfly serve`
 * processes on one Postgres database, behind one public address, behave as one server. Whatever one instance
 * issued, consumed or changed holds at the other at once: tokens, one-time DPoP proofs and client assertions,
 * DPoP nonces, the clients themselves, and the published keys.
 *
 * Only with DATABASE_URL: the embedded PGlite default is single-process by design (one process owns its data
 * folder), so there is no second instance to agree with.
 */

type Name = 'a' | 'b';
/** Each cross-instance check runs in both directions: [first instance, other instance]. */
const BOTH_WAYS = [
  ['a', 'b'],
  ['b', 'a'],
] as const;

const JWT_API = 'https://orders.example.com';
const OPAQUE_API = 'https://ledger.example.com';

interface Credentials {
  id: string;
  secret: string;
}

/** Status and body, then what every instance logged: the message of a failed status check. */
function why(res: Response, cluster: Cluster<string> | undefined): string {
  return `${res.status} ${JSON.stringify(res.body)}\n${cluster?.logs() ?? ''}`;
}

/** The instance the balancer sent the request to, as it says in the answer. */
function expectServedBy(res: Response, target: string): void {
  expect(res.headers['x-mayfly-instance'], 'the balancer routed the request').toBe(target);
}

/**
 * An admin API call through `target`, with an admin token obtained there. A server that requires nonces names
 * the one to use in its refusal; one retry with it, as a client would.
 */
async function adminAt<N extends string>(
  cluster: Cluster<N>,
  target: N,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<Response> {
  cluster.balancer.target = target;
  const address = cluster.publicAddress();
  const token = await obtainAdminToken(address);
  const withBody = body === undefined ? {} : { body };
  let res = await adminCall(address, token, method, path, withBody);
  const nonce = res.headers['dpop-nonce'];
  if (res.status === 401 && res.body.code === 'use_dpop_nonce' && nonce) {
    res = await adminCall(address, token, method, path, { ...withBody, proofOptions: { nonce } });
  }
  expectServedBy(res, target);
  return res;
}

/** client_credentials with client_secret_basic through `target`; a fresh DPoP proof from `key`, or `proof`. */
async function tokenAt<N extends string>(
  cluster: Cluster<N>,
  target: N,
  client: Credentials,
  resource: string,
  dpop: { key: DpopKey } | { proof: string },
): Promise<Response> {
  cluster.balancer.target = target;
  const res = await requestToken(cluster.balancer.url, {
    clientId: client.id,
    secret: client.secret,
    resource,
    ...dpop,
  });
  expectServedBy(res, target);
  return res;
}

describe.skipIf(!process.env.DATABASE_URL)('two instances on one database behind one address', () => {
  let cluster: Cluster<Name> | undefined;
  let key: DpopKey;
  let caller: Credentials;
  let resourceServer: Credentials;
  let signer: { id: string; privateKey: CryptoKey };

  const live = (): Cluster<Name> => {
    if (!cluster) throw new Error('the instances did not start');
    return cluster;
  };
  const tokenEndpoint = () => `${live().balancer.url}/token`;

  async function created(target: Name, body: unknown): Promise<Credentials> {
    const res = await adminAt(live(), target, 'POST', '/clients', body);
    expect(res.status, why(res, cluster)).toBe(201);
    return { id: res.body.client_id as string, secret: res.body.client_secret as string };
  }

  async function issued(target: Name, client: Credentials, resource: string): Promise<string> {
    const res = await tokenAt(live(), target, client, resource, { key });
    expect(res.status, why(res, cluster)).toBe(200);
    return res.body.access_token as string;
  }

  async function introspect(target: Name, token: string): Promise<Record<string, unknown>> {
    live().balancer.target = target;
    const res = await request(live().balancer.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(resourceServer.id, resourceServer.secret))
      .type('form')
      .send({ token });
    expect(res.status, why(res, cluster)).toBe(200);
    expectServedBy(res, target);
    return res.body as Record<string, unknown>;
  }

  /** A private_key_jwt request through `target` with this assertion and a fresh DPoP proof. */
  async function withAssertion(target: Name, assertion: string): Promise<Response> {
    live().balancer.target = target;
    const res = await postToken(
      live().balancer.url,
      {
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: assertion,
        resource: JWT_API,
      },
      { key },
    );
    expectServedBy(res, target);
    return res;
  }

  const assertion = () =>
    createClientAssertion({
      clientId: signer.id,
      audience: tokenEndpoint(),
      key: signer.privateKey,
      kid: 'k1',
    });

  async function jwksAt(target: Name, etag?: string): Promise<Response> {
    live().balancer.target = target;
    let call = request(live().balancer.url).get('/jwks');
    if (etag !== undefined) call = call.set('If-None-Match', etag);
    const res = await call;
    expectServedBy(res, target);
    return res;
  }

  beforeAll(async () => {
    cluster = await startCluster<Name>({ names: ['a', 'b'] });
    // The set-up itself goes through both instances: what one writes the other reads.
    const jwtApi = await adminAt(cluster, 'a', 'POST', '/resources', {
      identifier: JWT_API,
      scopes: ['orders:read'],
    });
    expect(jwtApi.status, why(jwtApi, cluster)).toBe(201);
    const opaqueApi = await adminAt(cluster, 'b', 'POST', '/resources', {
      identifier: OPAQUE_API,
      scopes: ['ledger:post'],
      token_format: 'opaque',
    });
    expect(opaqueApi.status, why(opaqueApi, cluster)).toBe(201);
    expect(opaqueApi.body.token_format).toBe('opaque');
    caller = await created('a', {
      name: 'orders-worker',
      grants: [
        { resource: JWT_API, scopes: ['orders:read'] },
        { resource: OPAQUE_API, scopes: ['ledger:post'] },
      ],
    });
    resourceServer = await created('b', { name: 'orders-api', introspects: [JWT_API, OPAQUE_API] });
    const pair = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
    const res = await adminAt(cluster, 'a', 'POST', '/clients', {
      name: 'orders-signer',
      auth_method: 'private_key_jwt',
      jwks: { keys: [jwk] },
      grants: [{ resource: JWT_API, scopes: ['orders:read'] }],
    });
    expect(res.status, why(res, cluster)).toBe(201);
    signer = { id: res.body.client_id as string, privateKey: pair.privateKey };
    key = await generateDpopKey();
  }, 120_000);

  afterAll(async () => {
    // Stops both processes (SIGTERM, then SIGKILL), drops the database and removes the folder.
    await cluster?.close();
  }, 60_000);

  it(
    'a JWT access token from one instance introspects active at the other',
    { timeout: 30_000 },
    async () => {
      for (const [from, to] of BOTH_WAYS) {
        const token = await issued(from, caller, JWT_API);
        expect(token.split('.'), 'a JWT: header, payload, signature').toHaveLength(3);
        expect(await introspect(to, token)).toMatchObject({
          active: true,
          aud: JWT_API,
          client_id: caller.id,
          scope: 'orders:read',
          cnf: { jkt: key.thumbprint },
        });
      }
    },
  );

  it(
    'an opaque access token from one instance introspects active at the other',
    { timeout: 30_000 },
    async () => {
      for (const [from, to] of BOTH_WAYS) {
        const token = await issued(from, caller, OPAQUE_API);
        // Opaque: nothing to verify locally, the other instance can only know it from the database.
        expect(token).not.toContain('.');
        expect(await introspect(to, token)).toMatchObject({
          active: true,
          aud: OPAQUE_API,
          client_id: caller.id,
          scope: 'ledger:post',
          cnf: { jkt: key.thumbprint },
        });
      }
    },
  );

  it(
    'a DPoP proof used at one instance is refused as a replay at the other, in either order',
    { timeout: 30_000 },
    async () => {
      for (const [first, second] of BOTH_WAYS) {
        const proof = await createProof(key, { htu: tokenEndpoint() });
        const used = await tokenAt(live(), first, caller, JWT_API, { proof });
        expect(used.status, why(used, cluster)).toBe(200);
        const replayed = await tokenAt(live(), second, caller, JWT_API, { proof });
        expect(replayed.status, why(replayed, cluster)).toBe(400);
        expect(replayed.body).toMatchObject({
          error: 'invalid_dpop_proof',
          error_description: expect.stringMatching(/replayed/),
        });
        // The same request with a fresh proof succeeds there: only the used jti was refused.
        const fresh = await tokenAt(live(), second, caller, JWT_API, { key });
        expect(fresh.status, why(fresh, cluster)).toBe(200);
      }
    },
  );

  it(
    'a client assertion used at one instance is refused at the other, in either order',
    { timeout: 30_000 },
    async () => {
      for (const [first, second] of BOTH_WAYS) {
        const single = await assertion();
        const used = await withAssertion(first, single);
        expect(used.status, why(used, cluster)).toBe(200);
        const replayed = await withAssertion(second, single);
        expect(replayed.status, why(replayed, cluster)).toBe(401);
        expect(replayed.body.error).toBe('invalid_client');
        // A fresh assertion of the same client succeeds there: only the used jti was refused.
        const fresh = await withAssertion(second, await assertion());
        expect(fresh.status, why(fresh, cluster)).toBe(200);
      }
    },
  );

  it(
    'a client created through A gets tokens at B at once; disabled through B, A refuses it at once',
    { timeout: 30_000 },
    async () => {
      const client = await created('a', {
        name: 'new-worker',
        grants: [
          { resource: JWT_API, scopes: ['orders:read'] },
          { resource: OPAQUE_API, scopes: ['ledger:post'] },
        ],
      });
      // No wait between the write at A and the read at B.
      await issued('b', client, JWT_API);
      // A serves the client as well before the change, so any copy A kept would be stale afterwards.
      const earlier = [await issued('a', client, JWT_API), await issued('a', client, OPAQUE_API)];
      for (const token of earlier) expect(await introspect('a', token)).toMatchObject({ active: true });

      const disabled = await adminAt(
        live(),
        'b',
        'POST',
        `/clients/${encodeURIComponent(client.id)}/disable`,
      );
      expect(disabled.status, why(disabled, cluster)).toBe(200);
      expect(disabled.body.status).toBe('disabled');
      const refused = await tokenAt(live(), 'a', client, JWT_API, { key });
      expect(refused.status, why(refused, cluster)).toBe(401);
      expect(refused.body.error).toBe('invalid_client');
      for (const token of earlier) expect(await introspect('a', token)).toEqual({ active: false });

      const enabled = await adminAt(live(), 'a', 'POST', `/clients/${encodeURIComponent(client.id)}/enable`);
      expect(enabled.status, why(enabled, cluster)).toBe(200);
      await issued('b', client, JWT_API);
    },
  );

  it(
    'a secret rotated through A with no overlap is refused at B at once, and the new one works there',
    { timeout: 30_000 },
    async () => {
      const client = await created('a', {
        name: 'rotating-worker',
        grants: [{ resource: JWT_API, scopes: ['orders:read'] }],
      });
      // B has used the old secret before the rotation.
      await issued('b', client, JWT_API);

      const rotated = await adminAt(
        live(),
        'a',
        'POST',
        `/clients/${encodeURIComponent(client.id)}/secrets`,
        { previous_secret_expires_in: 0 },
      );
      expect(rotated.status, why(rotated, cluster)).toBe(201);
      const secret = rotated.body.client_secret as string;
      expect(secret).toEqual(expect.any(String));
      expect(secret).not.toBe(client.secret);

      for (const target of ['b', 'a'] as const) {
        const old = await tokenAt(live(), target, client, JWT_API, { key });
        expect(old.status, why(old, cluster)).toBe(401);
        expect(old.body.error).toBe('invalid_client');
        await issued(target, { id: client.id, secret }, JWT_API);
      }
    },
  );

  it('both serve the same JWKS, and each confirms the ETag of the other', { timeout: 30_000 }, async () => {
    const [a, b] = [await jwksAt('a'), await jwksAt('b')];
    expect(a.status, why(a, cluster)).toBe(200);
    expect(b.status, why(b, cluster)).toBe(200);
    expect(a.text).toMatch(/^\{"keys":\[\{/);
    expect(b.text).toBe(a.text);
    const etag = a.headers.etag;
    expect(etag).toMatch(/^(W\/)?"[^"]+"$/);
    expect(b.headers.etag).toBe(etag);
    // A cache that fetched from one instance revalidates at the other without downloading the keys again.
    expect((await jwksAt('b', etag)).status).toBe(304);
    expect((await jwksAt('a', b.headers.etag)).status).toBe(304);
  });
});

describe.skipIf(!process.env.DATABASE_URL)('two instances requiring DPoP nonces behind one address', () => {
  /** `c` serves the same database with another nonce secret: an instance whose configuration went wrong. */
  type Strict = 'a' | 'b' | 'c';
  let cluster: Cluster<Strict> | undefined;
  let key: DpopKey;
  let caller: Credentials;

  const live = (): Cluster<Strict> => {
    if (!cluster) throw new Error('the instances did not start');
    return cluster;
  };
  const tokenEndpoint = () => `${live().balancer.url}/token`;

  /** A token request through `target` with a proof carrying `nonce` (none: leave it out). */
  const ask = async (target: Strict, nonce?: string) =>
    tokenAt(live(), target, caller, JWT_API, {
      proof: await createProof(key, { htu: tokenEndpoint(), ...(nonce === undefined ? {} : { nonce }) }),
    });

  /** The nonce `target` names when it refuses a proof without one. */
  async function nonceFrom(target: Strict): Promise<string> {
    const res = await ask(target);
    expect(res.status, why(res, cluster)).toBe(400);
    expect(res.body.error).toBe('use_dpop_nonce');
    const nonce = res.headers['dpop-nonce'];
    expect(nonce).toMatch(/^[\w-]{43}$/);
    return nonce ?? '';
  }

  /** The nonce the admin API of `target` names when it refuses a proof without one, with the token used. */
  async function adminNonceFrom(target: Strict) {
    live().balancer.target = target;
    const token = await obtainAdminToken(live().publicAddress());
    const res = await adminCall(live().publicAddress(), token, 'GET', '/clients');
    expectServedBy(res, target);
    expect(res.status, why(res, cluster)).toBe(401);
    expect(res.body.code).toBe('use_dpop_nonce');
    const nonce = res.headers['dpop-nonce'];
    expect(nonce).toMatch(/^[\w-]{43}$/);
    return { token, nonce: nonce ?? '' };
  }

  beforeAll(async () => {
    cluster = await startCluster<Strict>({
      names: ['a', 'b', 'c'],
      env: { MAYFLY_DPOP_REQUIRE_NONCE: 'true' },
      envOf: { c: { MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url') } },
    });
    const resource = await adminAt(cluster, 'a', 'POST', '/resources', {
      identifier: JWT_API,
      scopes: ['orders:read'],
    });
    expect(resource.status, why(resource, cluster)).toBe(201);
    const client = await adminAt(cluster, 'b', 'POST', '/clients', {
      name: 'orders-worker',
      grants: [{ resource: JWT_API, scopes: ['orders:read'] }],
    });
    expect(client.status, why(client, cluster)).toBe(201);
    caller = { id: client.body.client_id as string, secret: client.body.client_secret as string };
    key = await generateDpopKey();
  }, 120_000);

  afterAll(async () => {
    await cluster?.close();
  }, 60_000);

  it(
    'a nonce named by one instance is accepted by the other at the token endpoint',
    { timeout: 30_000 },
    async () => {
      for (const [from, to] of BOTH_WAYS) {
        const nonce = await nonceFrom(from);
        const res = await ask(to, nonce);
        expect(res.status, why(res, cluster)).toBe(200);
        expect(res.body.token_type).toBe('DPoP');
      }
    },
  );

  it(
    'a nonce named by one instance is accepted by the other at the admin API',
    { timeout: 30_000 },
    async () => {
      for (const [from, to] of BOTH_WAYS) {
        const { token, nonce } = await adminNonceFrom(from);
        live().balancer.target = to;
        const res = await adminCall(live().publicAddress(), token, 'GET', '/clients', {
          proofOptions: { nonce },
        });
        expectServedBy(res, to);
        expect(res.status, why(res, cluster)).toBe(200);
      }
    },
  );

  it(
    'a nonce from an instance with another nonce secret is refused with use_dpop_nonce',
    { timeout: 30_000 },
    async () => {
      const foreign = await nonceFrom('c');
      // A genuine nonce where it came from: refused elsewhere only because the secrets differ.
      const atHome = await ask('c', foreign);
      expect(atHome.status, why(atHome, cluster)).toBe(200);
      for (const target of ['a', 'b'] as const) {
        const res = await ask(target, foreign);
        expect(res.status, why(res, cluster)).toBe(400);
        expect(res.body.error).toBe('use_dpop_nonce');
        // The refusal names a nonce of the shared secret instead.
        expect(res.headers['dpop-nonce']).toMatch(/^[\w-]{43}$/);
        expect(res.headers['dpop-nonce']).not.toBe(foreign);
      }

      const admin = await adminNonceFrom('c');
      for (const target of ['a', 'b'] as const) {
        live().balancer.target = target;
        const res = await adminCall(live().publicAddress(), admin.token, 'GET', '/clients', {
          proofOptions: { nonce: admin.nonce },
        });
        expectServedBy(res, target);
        expect(res.status, why(res, cluster)).toBe(401);
        expect(res.body.code).toBe('use_dpop_nonce');
      }
    },
  );
});
