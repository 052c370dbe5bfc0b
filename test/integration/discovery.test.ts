import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

it.each(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])(
  'serves RFC 8414 metadata at %s advertising only what is supported',
  async (path) => {
    const res = await request(server.url).get(path);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect(res.body).toEqual({
      issuer: server.url,
      token_endpoint: `${server.url}/token`,
      jwks_uri: `${server.url}/jwks`,
      introspection_endpoint: `${server.url}/token/introspection`,
      revocation_endpoint: `${server.url}/token/revocation`,
      grant_types_supported: ['client_credentials'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: expect.arrayContaining(['ES256', 'EdDSA']),
      dpop_signing_alg_values_supported: expect.arrayContaining(['ES256', 'EdDSA']),
    });
    for (const alg of [
      ...res.body.dpop_signing_alg_values_supported,
      ...res.body.token_endpoint_auth_signing_alg_values_supported,
    ]) {
      expect(alg).not.toMatch(/^(none|HS)/);
    }
  },
);

it('serves the public signing key set with cache headers and revalidation', async () => {
  const res = await request(server.url).get('/jwks');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/jwk-set\+json/);
  expect(res.headers['cache-control']).toBe('public, max-age=300');
  const etag = res.headers.etag as string;
  expect(etag).toMatch(/^"[\w-]+"$/);
  const body = JSON.parse(res.text) as { keys: Record<string, unknown>[] };
  expect(body.keys).toHaveLength(1);
  expect(body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'])
    expect(body.keys[0]).not.toHaveProperty(member);

  const cached = await request(server.url).get('/jwks').set('If-None-Match', etag);
  expect(cached.status).toBe(304);
  expect(cached.text).toBe('');
  const stale = await request(server.url).get('/jwks').set('If-None-Match', '"other"');
  expect(stale.status).toBe(200);
  // RFC 9110 §13.1.2: weak comparison, a list of tags, or any tag.
  for (const header of [`W/${etag}`, `"other", ${etag}`, '*']) {
    expect((await request(server.url).get('/jwks').set('If-None-Match', header)).status, header).toBe(304);
  }

  const post = await request(server.url).post('/jwks');
  expect(post.status).toBe(405);
  expect(post.body.error).toBe('invalid_request');
});

it('answers health checks', async () => {
  const res = await request(server.url).get('/healthz');
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ status: 'ok' });
});
