import { exportJWK, generateKeyPair } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import {
  basicAuth,
  createClientAssertion,
  JWT_BEARER_ASSERTION,
  requestToken,
  postToken,
} from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const LEDGER = 'https://ledger.example.com';
let server: TestServer;
let key: DpopKey;
/** Every secret, key, proof and token value the scenario uses: none may appear in any log line. */
const secrets: string[] = [];

beforeAll(async () => {
  server = await startTestServer({ env: { LOG_LEVEL: 'trace' } });
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: LEDGER, scopes: ['post'], token_format: 'opaque' });
  key = await generateDpopKey();
  secrets.push((await exportJWK(key.privateKey)).d ?? 'missing');
});
afterAll(() => server.close());

it('writes one audit line per token, introspection and revocation outcome, with no secret in any log line', async () => {
  const svc = await server.createClient({
    name: 'svc',
    grants: [
      { resource: API, scopes: ['read'] },
      { resource: LEDGER, scopes: ['post'] },
    ],
  });
  const rs = await server.createClient({ name: 'rs', introspects: [API, LEDGER] });
  const secret = svc.clientSecret ?? '';
  secrets.push(secret, rs.clientSecret ?? '');

  const proof = await createProof(key, { htu: `${server.url}/token` });
  secrets.push(proof);
  const issued = await requestToken(server.url, {
    clientId: svc.client.id,
    secret,
    resource: API,
    scope: 'read',
    proof,
  });
  expect(issued.status).toBe(200);
  const opaque = await requestToken(server.url, { clientId: svc.client.id, secret, resource: LEDGER, key });
  secrets.push(issued.body.access_token as string, opaque.body.access_token as string);

  const wrongSecret = `${secret.slice(0, -4)}abcd`;
  secrets.push(wrongSecret);
  expect(
    (await requestToken(server.url, { clientId: svc.client.id, secret: wrongSecret, resource: API, key }))
      .status,
  ).toBe(401);
  expect(
    (await requestToken(server.url, { clientId: svc.client.id, secret, resource: API, scope: 'write', key }))
      .status,
  ).toBe(400);
  expect(
    (await requestToken(server.url, { clientId: svc.client.id, secret, resource: API, proof })).status,
  ).toBe(400);

  const pair = await generateKeyPair('ES256', { extractable: true });
  secrets.push((await exportJWK(pair.privateKey)).d ?? 'missing');
  const pk = await server.createClient({
    name: 'pk',
    auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), kty: 'EC', alg: 'ES256' }] },
    grants: [{ resource: API, scopes: ['read'] }],
  });
  const assertion = await createClientAssertion({
    clientId: pk.client.id,
    audience: server.url,
    key: pair.privateKey,
  });
  secrets.push(assertion);
  const pkRes = await postToken(
    server.url,
    {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
      resource: API,
    },
    { key },
  );
  expect(pkRes.status).toBe(200);
  secrets.push(pkRes.body.access_token as string);

  for (const token of [issued.body.access_token as string, opaque.body.access_token as string]) {
    await request(server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(rs.client.id, rs.clientSecret ?? ''))
      .type('form')
      .send({ token })
      .expect(200);
    await request(server.url)
      .post('/token/revocation')
      .set('Authorization', basicAuth(svc.client.id, secret))
      .type('form')
      .send({ token })
      .expect(200);
  }

  const tokens = server.logs.audit('token');
  expect(tokens).toHaveLength(6);
  expect(tokens[0]).toMatchObject({
    outcome: 'success',
    client_id: svc.client.id,
    resource: API,
    scopes: ['read'],
    jkt: key.thumbprint,
    token_type: 'DPoP',
    token_format: 'jwt',
    ip: '127.0.0.1',
  });
  expect(tokens[2]).toMatchObject({
    outcome: 'failure',
    client_id: svc.client.id,
    error: 'invalid_client',
    reason: 'invalid secret provided',
  });
  expect(tokens[3]).toMatchObject({
    outcome: 'failure',
    error: 'invalid_scope',
    resource: API,
    scopes: ['write'],
  });
  expect(tokens[4]).toMatchObject({
    outcome: 'failure',
    error: 'invalid_dpop_proof',
    reason: expect.stringMatching(/Replay/i),
  });
  expect(tokens[5]).toMatchObject({ outcome: 'success', client_id: pk.client.id });

  const introspections = server.logs.audit('introspection');
  expect(introspections).toHaveLength(2);
  expect(introspections[0]).toMatchObject({
    outcome: 'success',
    client_id: rs.client.id,
    active: true,
    token_client_id: svc.client.id,
    resource: API,
    scopes: ['read'],
    jkt: key.thumbprint,
  });
  expect(server.logs.audit('revocation')).toEqual([
    expect.objectContaining({ outcome: 'success', revoked: true, resource: API }),
    expect.objectContaining({ outcome: 'success', revoked: true, resource: LEDGER }),
  ]);

  secrets.push(String(server.app.keys.current.signer.privateJwk.d));

  const everything = server.logs.text();
  expect(server.logs.lines.length).toBeGreaterThan(10);
  for (const value of secrets) {
    expect(value.length).toBeGreaterThan(20);
    expect(everything).not.toContain(value);
  }
});
