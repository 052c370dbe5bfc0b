import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { AdminCredentials } from '../../src/admin/bootstrap.ts';
import type { Clock } from '../../src/clock.ts';
import {
  accessTokenHash,
  adminCall,
  obtainAdminToken,
  readAdminCredentials,
  type AdminToken,
} from '../support/admin.ts';
import { createProof, generateDpopKey } from '../support/dpop.ts';
import { createClientAssertion, JWT_BEARER_ASSERTION, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * Issue 3, item 2: the admin API accepts only DPoP-bound access tokens that this server issued for the admin
 * audience, with the scope the operation needs, from an admin client that is still enabled.
 */
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let admin: AdminToken;
const API = 'https://orders.example.com';

beforeAll(async () => {
  server = await startTestServer({ clock });
  admin = await obtainAdminToken(server);
  await server.createResource({ identifier: API, scopes: ['read'] });
});

afterAll(async () => {
  await server.close();
});

function expectRefusal(
  response: { status: number; body: unknown; headers: Record<string, string> },
  status: number,
  code: string,
  reason: RegExp,
) {
  expect(response.status).toBe(status);
  expect(response.body).toMatchObject({ code, message: expect.stringMatching(reason) });
  const challenge = response.headers['www-authenticate'] ?? '';
  expect(challenge).toMatch(/^DPoP /);
  if (code === 'token_required') expect(challenge).not.toMatch(/error=/);
  else expect(challenge).toContain(`error="${code}"`);
}

/** A second admin client with its own key pair, created through the admin API. */
async function createAdminClient(scopes: string[]): Promise<AdminCredentials> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const created = await adminCall(server, admin, 'POST', '/clients', {
    body: {
      name: `operator ${scopes.join('+')}`,
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] },
      grants: [{ resource: `${server.url}/admin`, scopes }],
    },
  });
  expect(created.status).toBe(201);
  return {
    issuer: server.url,
    client_id: (created.body as { client_id: string }).client_id,
    private_jwk: { ...(await exportJWK(privateKey)), alg: 'ES256' },
  };
}

describe('admin API authentication', () => {
  it('serves a DPoP-bound admin token with the admin scopes', async () => {
    const response = await adminCall(server, admin, 'GET', '/resources');
    expect(response.status).toBe(200);
    expect(server.logs.audit('admin_request').at(-1)).toMatchObject({
      outcome: 'success',
      method: 'GET',
      status: 200,
      client_id: (await readAdminCredentials(server)).client_id,
    });
  });

  it('refuses a request without a token, naming the scheme in the challenge', async () => {
    const response = await adminCall(server, admin, 'GET', '/clients', { authorization: null, proof: null });
    expectRefusal(response, 401, 'token_required', /DPoP-bound access token/);
  });

  it('refuses a DPoP-bound token presented with the Bearer scheme', async () => {
    const response = await adminCall(server, admin, 'GET', '/clients', {
      authorization: `Bearer ${admin.token}`,
    });
    expectRefusal(response, 401, 'invalid_token', /DPoP-bound tokens only/);
  });

  it('refuses an unbound (bearer) token even when it names the admin audience', async () => {
    const bearer = await server.createClient({
      name: 'bearer admin',
      bearer_allowed: true,
      grants: [{ resource: `${server.url}/admin`, scopes: ['admin:read'] }],
    });
    const issued = await requestToken(server.url, {
      clientId: bearer.client.id,
      secret: bearer.clientSecret ?? '',
      resource: `${server.url}/admin`,
      scope: 'admin:read',
    });
    expect(issued.status).toBe(200);
    expect(issued.body).toMatchObject({ token_type: 'Bearer' });
    const token = (issued.body as { access_token: string }).access_token;
    const asBearer = await adminCall(server, admin, 'GET', '/clients', { authorization: `Bearer ${token}` });
    expectRefusal(asBearer, 401, 'invalid_token', /DPoP-bound tokens only/);
    const asDpop = await adminCall(server, { token, key: admin.key }, 'GET', '/clients');
    expectRefusal(asDpop, 401, 'invalid_token', /not DPoP-bound/);
  });

  it('refuses a token issued for another audience', async () => {
    const { client, clientSecret } = await server.createClient({
      name: 'orders reader',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const key = await generateDpopKey();
    const issued = await requestToken(server.url, {
      clientId: client.id,
      secret: clientSecret ?? '',
      resource: API,
      key,
    });
    expect(issued.status).toBe(200);
    const token = (issued.body as { access_token: string }).access_token;
    const response = await adminCall(server, { token, key }, 'GET', '/clients');
    expectRefusal(response, 401, 'invalid_token', /not for the admin API/);
  });

  it('refuses a token another server issued, and a token that is not a JWT', async () => {
    const other = await startTestServer();
    try {
      const foreign = await obtainAdminToken(other);
      expectRefusal(
        await adminCall(server, foreign, 'GET', '/clients'),
        401,
        'invalid_token',
        /not issued by this server|not signed by this server/,
      );
    } finally {
      await other.close();
    }
    expectRefusal(
      await adminCall(server, { token: 'not-a-jwt', key: admin.key }, 'GET', '/clients'),
      401,
      'invalid_token',
      /not a JWT access token/,
    );
    const tampered = `${admin.token.slice(0, -4)}AAAA`;
    expectRefusal(
      await adminCall(server, { token: tampered, key: admin.key }, 'GET', '/clients'),
      401,
      'invalid_token',
      /not signed by this server|not a JWT/,
    );
  });

  it('refuses an expired token', async () => {
    clock.offsetMs = 310_000;
    try {
      const response = await adminCall(server, admin, 'GET', '/clients', {
        proofOptions: { claims: { iat: Math.floor(clock.now().getTime() / 1000) } },
      });
      expectRefusal(response, 401, 'invalid_token', /expired/);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it('refuses a token its client has revoked', async () => {
    const credentials = await readAdminCredentials(server);
    const revocable = await obtainAdminToken(server);
    const revocation = await request(server.url)
      .post('/token/revocation')
      .type('form')
      .send({
        token: revocable.token,
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: await createClientAssertion({
          clientId: credentials.client_id,
          audience: server.url,
          key: await importJWK(credentials.private_jwk, 'ES256'),
        }),
      });
    expect(revocation.status).toBe(200);
    expectRefusal(await adminCall(server, revocable, 'GET', '/clients'), 401, 'invalid_token', /revoked/);
  });
});

describe('admin API scopes', () => {
  it('lets a read-only token read and refuses it every change', async () => {
    const reader = await obtainAdminToken(server, { scope: 'admin:read' });
    expect((await adminCall(server, reader, 'GET', '/clients')).status).toBe(200);
    const writes = [
      await adminCall(server, reader, 'POST', '/resources', {
        body: { identifier: 'https://x.example.com', scopes: ['a'] },
      }),
      await adminCall(server, reader, 'POST', '/clients', { body: { name: 'x' } }),
      await adminCall(server, reader, 'DELETE', `/resources/${encodeURIComponent(API)}`),
    ];
    for (const response of writes) {
      expectRefusal(response, 403, 'insufficient_scope', /admin:write/);
    }
    const listed = await adminCall(server, admin, 'GET', '/resources', {
      query: `identifier=${encodeURIComponent('https://x.example.com')}`,
    });
    expect(listed.body).toMatchObject({ items: [] });
    expect((await adminCall(server, admin, 'GET', `/resources/${encodeURIComponent(API)}`)).status).toBe(200);
  });

  it('refuses a write-only token reading', async () => {
    const writer = await obtainAdminToken(server, { scope: 'admin:write' });
    expectRefusal(
      await adminCall(server, writer, 'GET', '/clients'),
      403,
      'insufficient_scope',
      /admin:read/,
    );
  });
});

describe('admin clients that are disabled or deleted', () => {
  it('refuses the tokens of a disabled admin client at once, for good, and serves new ones once it is enabled', async () => {
    const operator = await createAdminClient(['admin:read', 'admin:write']);
    const token = await obtainAdminToken(server, { credentials: operator });
    expect((await adminCall(server, token, 'GET', '/clients')).status).toBe(200);

    expect((await adminCall(server, admin, 'POST', `/clients/${operator.client_id}/disable`)).status).toBe(
      200,
    );
    expectRefusal(
      await adminCall(server, token, 'GET', '/clients'),
      401,
      'invalid_token',
      /disabled or deleted/,
    );
    await expect(obtainAdminToken(server, { credentials: operator })).rejects.toThrow(/invalid_client/);

    expect((await adminCall(server, admin, 'POST', `/clients/${operator.client_id}/enable`)).status).toBe(
      200,
    );
    // Enabling does not revive the token issued before the disable; a new one works.
    expectRefusal(
      await adminCall(server, token, 'GET', '/clients'),
      401,
      'invalid_token',
      /disabled or deleted/,
    );
    const renewed = await obtainAdminToken(server, { credentials: operator });
    expect((await adminCall(server, renewed, 'GET', '/clients')).status).toBe(200);
  });

  it('refuses the tokens of a deleted admin client', async () => {
    const operator = await createAdminClient(['admin:read']);
    const token = await obtainAdminToken(server, { credentials: operator, scope: 'admin:read' });
    expect((await adminCall(server, admin, 'DELETE', `/clients/${operator.client_id}`)).status).toBe(204);
    expectRefusal(
      await adminCall(server, token, 'GET', '/clients'),
      401,
      'invalid_token',
      /disabled or deleted/,
    );
  });
});

describe('the last admin client', () => {
  it('cannot be disabled, deleted or stripped of admin:write while no other enabled client could administer', async () => {
    const fresh = await startTestServer();
    try {
      const root = await obtainAdminToken(fresh);
      const { client_id: rootId } = await readAdminCredentials(fresh);
      const attempts = [
        await adminCall(fresh, root, 'POST', `/clients/${rootId}/disable`),
        await adminCall(fresh, root, 'DELETE', `/clients/${rootId}`),
        await adminCall(fresh, root, 'PATCH', `/clients/${rootId}`, {
          body: { grants: [{ resource: `${fresh.url}/admin`, scopes: ['admin:read'] }] },
        }),
      ];
      for (const response of attempts) {
        expect(response.status).toBe(409);
        expect(response.body).toMatchObject({
          code: 'last_admin_client',
          message: expect.stringContaining(rootId),
        });
      }
      expect((await adminCall(fresh, root, 'GET', `/clients/${rootId}`)).body).toMatchObject({
        status: 'enabled',
        grants: [{ scopes: ['admin:read', 'admin:write'] }],
      });

      const successor = await fresh.createClient({
        name: 'successor',
        auth_method: 'private_key_jwt',
        jwks_uri: 'https://keys.example.com/jwks.json',
        grants: [{ resource: `${fresh.url}/admin`, scopes: ['admin:write'] }],
      });
      expect((await adminCall(fresh, root, 'POST', `/clients/${rootId}/disable`)).status).toBe(200);
      expect((await adminCall(fresh, root, 'GET', `/clients/${successor.client.id}`)).status).toBe(401);
    } finally {
      await fresh.close();
    }
  });
});

describe('admin API DPoP proofs', () => {
  const htu = () => `${server.url}/admin/v1/clients`;

  it('refuses a request without a proof, and with two proofs', async () => {
    expectRefusal(
      await adminCall(server, admin, 'GET', '/clients', { proof: null }),
      401,
      'invalid_dpop_proof',
      /proof header is required/,
    );
    const proof = await createProof(admin.key, { htm: 'GET', htu: htu(), ath: accessTokenHash(admin.token) });
    const twice = await request(server.url)
      .get('/admin/v1/clients')
      .set('Authorization', `DPoP ${admin.token}`)
      .set('DPoP', [proof, proof] as unknown as string);
    expectRefusal(twice, 401, 'invalid_dpop_proof', /exactly one/);
  });

  it('refuses a proof made for another host, even when the Host header names that host', async () => {
    const proof = await createProof(admin.key, {
      htm: 'GET',
      htu: 'http://evil.example/admin/v1/clients',
      ath: accessTokenHash(admin.token),
    });
    const response = await request(server.url)
      .get('/admin/v1/clients')
      .set('Host', 'evil.example')
      .set('Authorization', `DPoP ${admin.token}`)
      .set('DPoP', proof);
    expectRefusal(response, 401, 'invalid_dpop_proof', /htu/);
  });

  it('accepts a proof for the issuer URL whatever Host the request came through', async () => {
    const proof = await createProof(admin.key, {
      htm: 'GET',
      htu: `${server.url}/admin/v1/clients`,
      ath: accessTokenHash(admin.token),
    });
    const response = await request(server.url)
      .get('/admin/v1/clients')
      .set('Host', `localhost:${new URL(server.url).port}`)
      .set('Authorization', `DPoP ${admin.token}`)
      .set('DPoP', proof);
    expect(response.status).toBe(200);
  });

  it('refuses a proof used twice', async () => {
    const proof = await createProof(admin.key, { htm: 'GET', htu: htu(), ath: accessTokenHash(admin.token) });
    expect((await adminCall(server, admin, 'GET', '/clients', { proof })).status).toBe(200);
    expectRefusal(
      await adminCall(server, admin, 'GET', '/clients', { proof }),
      401,
      'invalid_dpop_proof',
      /used before/,
    );
  });

  it.each<
    [string, Parameters<typeof createProof>[1] | 'other-key' | 'private-jwk' | 'hs256' | 'none', RegExp]
  >([
    ['another method', { htm: 'POST', htu: '' }, /htm/],
    ['another URL', { htm: 'GET', htu: 'http://127.0.0.1:1/admin/v1/clients' }, /htu/],
    ['another path', { htm: 'GET', htu: 'PATH:/admin/v1/resources' }, /htu/],
    ['no ath', { htm: 'GET', htu: '', claims: { ath: undefined } }, /ath/],
    ['the hash of another token', { htm: 'GET', htu: '', ath: accessTokenHash('another token') }, /ath/],
    ['a stale iat', { htm: 'GET', htu: '', claims: { iat: Math.floor(Date.now() / 1000) - 600 } }, /iat/],
    [
      'an iat in the future',
      { htm: 'GET', htu: '', claims: { iat: Math.floor(Date.now() / 1000) + 600 } },
      /iat/,
    ],
    ['no jti', { htm: 'GET', htu: '', claims: { jti: undefined } }, /jti/],
    ['the wrong typ', { htm: 'GET', htu: '', header: { typ: 'JWT' } }, /typ/],
    ['a key other than the bound one', 'other-key', /other than the one/],
    ['a private key in its jwk', 'private-jwk', /only a public key/],
    ['an HMAC', 'hs256', /signed with one of|malformed|public key/],
    ['no signature (alg none)', 'none', /signed with one of|malformed|not a JWT/],
  ])('refuses a proof with %s', async (_name, variant, reason) => {
    const ath = accessTokenHash(admin.token);
    let proof: string;
    if (variant === 'other-key') {
      proof = await createProof(await generateDpopKey(), { htm: 'GET', htu: htu(), ath });
    } else if (variant === 'private-jwk') {
      proof = await createProof(admin.key, {
        htm: 'GET',
        htu: htu(),
        ath,
        header: { jwk: await exportJWK(admin.key.privateKey) },
      });
    } else if (variant === 'hs256') {
      proof = await new SignJWT({
        htm: 'GET',
        htu: htu(),
        ath,
        iat: Math.floor(Date.now() / 1000),
        jti: crypto.randomUUID(),
      })
        .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: admin.key.publicJwk })
        .sign(new TextEncoder().encode('a shared secret that is 32 bytes!'));
    } else if (variant === 'none') {
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      proof = `${encode({ alg: 'none', typ: 'dpop+jwt', jwk: admin.key.publicJwk })}.${encode({ htm: 'GET', htu: htu(), ath, iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID() })}.`;
    } else {
      const target = variant.htu === '' ? htu() : variant.htu.replace('PATH:', server.url);
      proof = await createProof(admin.key, { ath, ...variant, htu: target });
    }
    expectRefusal(
      await adminCall(server, admin, 'GET', '/clients', { proof }),
      401,
      'invalid_dpop_proof',
      reason,
    );
  });

  it('logs every refusal with its reason and never the token or the proof', async () => {
    const proof = await createProof(admin.key, {
      htm: 'POST',
      htu: htu(),
      ath: accessTokenHash(admin.token),
    });
    await adminCall(server, admin, 'GET', '/clients', { proof });
    const refusal = server.logs.audit('admin_request').at(-1);
    expect(refusal).toMatchObject({
      outcome: 'failure',
      status: 401,
      error: 'invalid_dpop_proof',
      reason: expect.stringMatching(/htm/),
    });
    expect(server.logs.text()).not.toContain(admin.token);
    expect(server.logs.text()).not.toContain(proof);
  });
});

describe('admin API surface', () => {
  it('serves its OpenAPI document without a token', async () => {
    const response = await request(server.url).get('/admin/v1/openapi.json');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ openapi: '3.1.0' });
  });

  it('answers an unknown path with 404 and a wrong method with 405 and Allow', async () => {
    const unknown = await adminCall(server, admin, 'GET', '/nothing-here');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'not_found' });
    const wrongMethod = await adminCall(server, admin, 'PUT', '/clients');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body).toMatchObject({ code: 'method_not_allowed' });
    expect(wrongMethod.headers.allow).toBe('POST, GET');
  });
});

describe('admin API DPoP nonces', () => {
  it('with nonces required, refuses a proof without one, names the nonce to use, and accepts it', async () => {
    const strict = await startTestServer({ env: { MAYFLY_DPOP_REQUIRE_NONCE: 'true' } });
    try {
      const token = await obtainAdminToken(strict);
      const first = await adminCall(strict, token, 'GET', '/clients');
      expectRefusal(first, 401, 'use_dpop_nonce', /requires a nonce/);
      const nonce = String(first.headers['dpop-nonce']);
      expect(nonce).toMatch(/^[\w-]{43}$/);
      const forged = await adminCall(strict, token, 'GET', '/clients', {
        proofOptions: { nonce: 'A'.repeat(43) },
      });
      expectRefusal(forged, 401, 'use_dpop_nonce', /stale or was not issued here/);
      const retried = await adminCall(strict, token, 'GET', '/clients', { proofOptions: { nonce } });
      expect(retried.status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});
