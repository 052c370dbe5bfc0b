import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

import { createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import {
  basicAuth,
  createClientAssertion,
  JWT_BEARER_ASSERTION,
  requestToken,
  type AssertionOptions,
  postToken,
} from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const BILLING = 'https://billing.example.com/v1';

let server: TestServer;
let client: { id: string; secret: string };
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer({ env: { MAYFLY_JWKS_URI_ALLOW_PRIVATE: 'true' } });
  await server.createResource({ identifier: API, scopes: ['read', 'write', 'admin'] });
  await server.createResource({
    identifier: BILLING,
    scopes: ['invoices:read'],
    token_ttl: 60,
    token_format: 'opaque',
  });
  const created = await server.createClient({
    name: 'orders-service',
    grants: [
      { resource: API, scopes: ['read', 'write'] },
      { resource: BILLING, scopes: ['invoices:read'] },
    ],
  });
  client = { id: created.client.id, secret: created.clientSecret ?? '' };
  key = await generateDpopKey();
});
afterAll(() => server.close());

const token = (overrides: Partial<Parameters<typeof requestToken>[1]> = {}) =>
  requestToken(server.url, { clientId: client.id, secret: client.secret, resource: API, key, ...overrides });

describe('issuance', () => {
  it('issues an RFC 9068 JWT bound to the proof key, for one audience and the requested scopes', async () => {
    const res = await token({ scope: 'read' });
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ token_type: 'DPoP', expires_in: 300, scope: 'read' });

    const jwks = createLocalJWKSet((await request(server.url).get('/jwks')).body);
    const { payload, protectedHeader } = await jwtVerify(res.body.access_token, jwks, {
      issuer: server.url,
      audience: API,
      typ: 'at+jwt',
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({
      sub: client.id,
      client_id: client.id,
      scope: 'read',
      cnf: { jkt: key.thumbprint },
    });
    expect(payload.aud).toBe(API);
    expect(typeof payload.jti).toBe('string');
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300);
  });

  it('gives every scope the client holds on the resource when scope is omitted', async () => {
    const res = await token();
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('read write');
    expect(decodeJwt(res.body.access_token).scope).toBe('read write');
  });

  it('issues opaque tokens with the resource lifetime for an opaque resource', async () => {
    const res = await token({ resource: BILLING });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'DPoP', expires_in: 60, scope: 'invoices:read' });
    expect(res.body.access_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('accepts client_secret_post as well as client_secret_basic', async () => {
    const res = await postToken(
      server.url,
      {
        grant_type: 'client_credentials',
        client_id: client.id,
        client_secret: client.secret,
        resource: API,
      },
      { key },
    );
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('DPoP');
  });

  it('never lets a lifetime exceed the server maximum, even for a resource created under a higher one', async () => {
    const strict = await startTestServer({ env: { MAYFLY_MAX_TOKEN_TTL: '120' } });
    try {
      await strict.app.db
        .insertInto('resource')
        .values({ identifier: API, scopes: ['read'], token_ttl: 900, token_format: 'jwt', name: null })
        .execute();
      const { client: c, clientSecret } = await strict.createClient({
        name: 'c',
        grants: [{ resource: API, scopes: ['read'] }],
      });
      const res = await requestToken(strict.url, {
        clientId: c.id,
        secret: clientSecret ?? '',
        resource: API,
        key,
      });
      expect(res.status).toBe(200);
      expect(res.body.expires_in).toBe(120);
      const claims = decodeJwt(res.body.access_token);
      expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(120);
    } finally {
      await strict.close();
    }
  });
});

describe('resources and scopes', () => {
  it.each([
    ['a scope the resource defines but the client was not granted', 'read admin', 'admin'],
    ['a scope the resource does not define', 'read delete', 'delete'],
    ['an OpenID scope', 'openid', 'openid'],
  ])('refuses %s with invalid_scope, never narrowing silently', async (_case, scope, culprit) => {
    const res = await token({ scope });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
    expect(res.body.error_description).toContain(culprit);
  });

  it('refuses a scope granted on another resource', async () => {
    const res = await token({ scope: 'invoices:read' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  it.each([
    ['no resource', undefined, 'resource parameter is required'],
    ['an unknown resource', 'https://unknown.example.com', 'no grant'],
    ['a relative resource', '/api', 'absolute URI'],
    ['a resource with a fragment', `${API}#frag`, 'fragment'],
  ])('refuses %s with invalid_target', async (_case, resource, message) => {
    const res = await token({ resource });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
    expect(res.body.error_description).toContain(message);
  });

  it('refuses a resource that exists but was not granted, exactly as an unknown one', async () => {
    await server.createResource({ identifier: 'https://hr.example.com', scopes: ['read'] });
    const res = await token({ resource: 'https://hr.example.com' });
    const unknown = await token({ resource: 'https://nothing.example.com' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
    expect(res.body.error_description.replace('hr', 'nothing')).toBe(unknown.body.error_description);
  });

  it('refuses two resources in one request: a token has exactly one audience', async () => {
    const res = await postToken(
      server.url,
      `grant_type=client_credentials&resource=${encodeURIComponent(API)}&resource=${encodeURIComponent(BILLING)}`,
      { key, authorization: basicAuth(client.id, client.secret) },
    );
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
  });
});

describe('DPoP is required', () => {
  it('refuses a request without a proof', async () => {
    const res = await token({ key: undefined });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toContain('DPoP proof is required');
  });

  it('issues Bearer tokens only to a client created bearer-allowed, and still binds when it sends a proof', async () => {
    const { client: bearer, clientSecret } = await server.createClient({
      name: 'legacy',
      bearer_allowed: true,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const withoutProof = await requestToken(server.url, {
      clientId: bearer.id,
      secret: clientSecret ?? '',
      resource: API,
    });
    expect(withoutProof.status).toBe(200);
    expect(withoutProof.body.token_type).toBe('Bearer');
    expect(decodeJwt(withoutProof.body.access_token).cnf).toBeUndefined();

    const withProof = await requestToken(server.url, {
      clientId: bearer.id,
      secret: clientSecret ?? '',
      resource: API,
      key,
    });
    expect(withProof.body.token_type).toBe('DPoP');
    expect(decodeJwt(withProof.body.access_token).cnf).toEqual({ jkt: key.thumbprint });

    const audit = server.logs.audit('token').filter((line) => line.client_id === bearer.id);
    expect(audit).toHaveLength(2);
    expect(audit.every((line) => line.bearer_allowed === true)).toBe(true);
  });
});

describe('client authentication', () => {
  it.each([
    ['a wrong secret', () => ({ secret: `${client.secret.slice(0, -1)}x` })],
    ['an unknown client', () => ({ clientId: 'no-such-client' })],
  ])('refuses %s with invalid_client', async (_case, overrides) => {
    const res = await token(overrides());
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });

  it.each([
    ['a NUL byte', 'client%00id'],
    ['a control character', 'client%07id'],
    ['a space', 'client%20id'],
    ['an overlong id', 'x'.repeat(300)],
  ])('refuses a client_id with %s as invalid_client, not a server error', async (_case, encodedId) => {
    const res = await postToken(
      server.url,
      `grant_type=client_credentials&client_id=${encodedId}&client_secret=x&resource=${encodeURIComponent(API)}`,
      { key },
    );
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
    expect(server.logs.records().filter((r) => r.level === 'error')).toEqual([]);
  });

  it('refuses an empty secret as a malformed request', async () => {
    const res = await token({ secret: '' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('refuses a request with no client authentication', async () => {
    const res = await postToken(server.url, { grant_type: 'client_credentials', resource: API }, { key });
    // RFC 6749 §5.2: "no client authentication included" is invalid_client.
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });

  it('refuses a disabled client', async () => {
    const { client: c, clientSecret } = await server.createClient({
      name: 'gone',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    await server.app.db
      .updateTable('client')
      .set({ disabled_at: new Date() })
      .where('id', '=', c.id)
      .execute();
    const res = await requestToken(server.url, {
      clientId: c.id,
      secret: clientSecret ?? '',
      resource: API,
      key,
    });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });

  it('refuses none and client_secret_jwt', async () => {
    const none = await postToken(
      server.url,
      { grant_type: 'client_credentials', client_id: client.id, resource: API },
      { key },
    );
    expect(none.status).toBe(401);
    expect(none.body.error).toBe('invalid_client');

    const hmacAssertion = await createClientAssertion({
      clientId: client.id,
      audience: server.url,
      alg: 'HS256',
      key: new TextEncoder().encode(client.secret),
    });
    const jwt = await postToken(
      server.url,
      {
        grant_type: 'client_credentials',
        client_id: client.id,
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: hmacAssertion,
        resource: API,
      },
      { key },
    );
    expect(jwt.status).toBe(401);
    expect(jwt.body.error).toBe('invalid_client');
  });
});

describe('private_key_jwt', () => {
  let signingKey: CryptoKey;
  let jwksServer: Server;
  let jwksUrl: string;
  let publicJwk: { kty: 'EC' } & Record<string, unknown>;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    signingKey = pair.privateKey;
    publicJwk = { ...(await exportJWK(pair.publicKey)), kty: 'EC', kid: 'k1', alg: 'ES256', use: 'sig' };
    jwksServer = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [publicJwk] }));
    }).listen(0, '127.0.0.1');
    await once(jwksServer, 'listening');
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(
    () =>
      new Promise<void>((resolve) =>
        jwksServer.close(() => {
          resolve();
        }),
      ),
  );

  const assertion = (clientId: string, overrides: Partial<AssertionOptions> = {}) =>
    createClientAssertion({
      clientId,
      audience: `${server.url}/token`,
      key: signingKey,
      kid: 'k1',
      ...overrides,
    });

  const withAssertion = async (clientId: string, jwt: string) =>
    postToken(
      server.url,
      {
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: jwt,
        resource: API,
      },
      { key },
    );

  it.each(['inline jwks', 'jwks_uri'])('authenticates a client registered with %s', async (mode) => {
    const { client: c, clientSecret } = await server.createClient({
      name: `pkjwt ${mode}`,
      auth_method: 'private_key_jwt',
      ...(mode === 'jwks_uri' ? { jwks_uri: jwksUrl } : { jwks: { keys: [publicJwk] } }),
      grants: [{ resource: API, scopes: ['read'] }],
    });
    expect(clientSecret).toBeUndefined();
    const res = await withAssertion(c.id, await assertion(c.id));
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('DPoP');
    expect(decodeJwt(res.body.access_token).client_id).toBe(c.id);
  });

  it('refuses a replayed assertion, an assertion signed by another key and an expired one', async () => {
    const { client: c } = await server.createClient({
      name: 'pkjwt negatives',
      auth_method: 'private_key_jwt',
      jwks: { keys: [publicJwk] },
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const once = await assertion(c.id);
    expect((await withAssertion(c.id, once)).status).toBe(200);
    const replay = await withAssertion(c.id, once);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('invalid_client');

    const other = await generateKeyPair('ES256');
    const forged = await assertion(c.id, { key: other.privateKey });
    expect((await withAssertion(c.id, forged)).body.error).toBe('invalid_client');

    const now = Math.floor(Date.now() / 1000);
    const expired = await assertion(c.id, { iat: now - 120, exp: now - 60 });
    expect((await withAssertion(c.id, expired)).body.error).toBe('invalid_client');
  });
});

describe('malformed requests', () => {
  it.each([
    ['no grant_type', {}, 400, 'invalid_request'],
    [
      'the password grant',
      { grant_type: 'password', username: 'a', password: 'b' },
      400,
      'unsupported_grant_type',
    ],
    [
      'the authorization_code grant',
      { grant_type: 'authorization_code', code: 'x' },
      400,
      'unsupported_grant_type',
    ],
    ['an unknown grant', { grant_type: 'urn:example:nope' }, 400, 'unsupported_grant_type'],
  ])('refuses %s', async (_case, form, status, error) => {
    const res = await postToken(
      server.url,
      { resource: API, ...form },
      { key, authorization: basicAuth(client.id, client.secret) },
    );
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
  });

  it('refuses a JSON body', async () => {
    const res = await request(server.url)
      .post('/token')
      .set('Authorization', basicAuth(client.id, client.secret))
      .set('DPoP', await proof())
      .send({ grant_type: 'client_credentials', resource: API });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('refuses repeated parameters', async () => {
    const res = await postToken(
      server.url,
      `grant_type=client_credentials&grant_type=client_credentials&resource=${encodeURIComponent(API)}`,
      { key, authorization: basicAuth(client.id, client.secret) },
    );
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('refuses GET and an oversized body without a server error', async () => {
    const get = await request(server.url).get('/token');
    expect(get.status).toBeGreaterThanOrEqual(400);
    expect(get.status).toBeLessThan(500);

    const big = await request(server.url)
      .post('/token')
      .set('Authorization', basicAuth(client.id, client.secret))
      .type('form')
      .send(`grant_type=client_credentials&resource=${'a'.repeat(200_000)}`);
    expect(big.status).toBeGreaterThanOrEqual(400);
    expect(big.status).toBeLessThan(500);
  });

  it('answers 404 for endpoints a client_credentials server does not serve', async () => {
    for (const path of ['/auth', '/me', '/session/end', '/reg', '/request']) {
      const res = await request(server.url).get(path);
      expect(res.status, path).toBe(404);
    }
  });
});

function proof(): Promise<string> {
  return createProof(key, { htu: `${server.url}/token` });
}
