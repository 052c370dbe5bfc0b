import type { IncomingMessage, ServerResponse } from 'node:http';

import { exportJWK, generateKeyPair as joseKeyPair, SignJWT } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, type DpopKey } from '../support/dpop.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import {
  accessTokenHash,
  claimsOf,
  fetchJwks,
  insecure,
  listen,
  thumbprintOf,
  toFetchRequest,
  type Json,
  type Listening,
} from './helpers.ts';

/**
 * A resource server on node:http that validates Mayfly's JWT access tokens with oauth4webapi's
 * validateJwtAccessToken (RFC 9068 + RFC 9449 §7), DPoP required. Tokens come from oauth4webapi as a client.
 */

const API = 'https://api.example.com';
const OTHER_API = 'https://other.example.com';
const OPAQUE_API = 'https://opaque.example.com';

let server: TestServer;
let as: oauth.AuthorizationServer;
let rs: Listening;
let caller: { client: oauth.Client; auth: oauth.ClientAuth };

interface Holder {
  pair: oauth.CryptoKeyPair;
  /** The same key, for proofs built by hand in negative cases. */
  key: DpopKey;
  dpop: oauth.DPoPHandle;
}

async function holder(): Promise<Holder> {
  const pair = await oauth.generateKeyPair('ES256');
  const key = {
    privateKey: pair.privateKey,
    publicJwk: await exportJWK(pair.publicKey),
    thumbprint: await thumbprintOf(pair.publicKey),
    alg: 'ES256',
  };
  return { pair, key, dpop: oauth.DPoP(caller.client, pair) };
}

/** The resource server: everything it knows of Mayfly is the discovered metadata and the published JWKS. */
async function protectedResource(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const reply = (status: number, body: object) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    const claims = await oauth.validateJwtAccessToken(as, toFetchRequest(req, rs.url), API, {
      requireDPoP: true,
      signingAlgorithms: ['ES256'],
      ...insecure,
    });
    reply(200, { client_id: claims.client_id, scope: claims.scope, cnf: claims.cnf });
  } catch (error) {
    res.setHeader('WWW-Authenticate', 'DPoP error="invalid_token", algs="ES256"');
    reply(401, { error: 'invalid_token', error_description: (error as Error).message });
  }
}

async function obtain(who: Holder, resource = API): Promise<string> {
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    caller.client,
    caller.auth,
    { resource },
    { DPoP: who.dpop, ...insecure },
  );
  return (await oauth.processClientCredentialsResponse(as, caller.client, response)).access_token;
}

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: OTHER_API, scopes: ['read'] });
  await server.createResource({ identifier: OPAQUE_API, scopes: ['read'], token_format: 'opaque' });
  const created = await server.createClient({
    name: 'caller',
    grants: [API, OTHER_API, OPAQUE_API].map((resource) => ({ resource, scopes: ['read'] })),
  });
  caller = {
    client: { client_id: created.client.id },
    auth: oauth.ClientSecretBasic(created.clientSecret ?? ''),
  };
  const issuer = new URL(server.url);
  as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  );
  rs = await listen((req, res) => {
    void protectedResource(req, res);
  });
});
afterAll(async () => {
  await rs.close();
  await server.close();
});

const ordersUrl = () => `${rs.url}/orders`;

/** A call made by hand, so each header can be wrong on purpose. */
async function call(headers: Record<string, string>) {
  const res = await fetch(ordersUrl(), { headers });
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    body: (await res.json()) as Json,
  };
}

describe('validateJwtAccessToken at a resource server', () => {
  it('accepts the DPoP token with a fresh proof sent by oauth4webapi', async () => {
    const me = await holder();
    const token = await obtain(me);
    const response = await oauth.protectedResourceRequest(
      token,
      'GET',
      new URL(ordersUrl()),
      undefined,
      null,
      {
        DPoP: me.dpop,
        ...insecure,
      },
    );
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      client_id: caller.client.client_id,
      scope: 'read',
      cnf: { jkt: me.key.thumbprint },
    });
  });

  it('accepts a hand-built proof with htm, htu and ath, and refuses it when replayed for another URL', async () => {
    const me = await holder();
    const token = await obtain(me);
    const ath = accessTokenHash(token);
    const good = await createProof(me.key, { htm: 'GET', htu: ordersUrl(), ath });
    expect((await call({ authorization: `DPoP ${token}`, dpop: good })).status).toBe(200);

    const elsewhere = await createProof(me.key, { htm: 'GET', htu: `${rs.url}/invoices`, ath });
    const refused = await call({ authorization: `DPoP ${token}`, dpop: elsewhere });
    expect(refused).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
    expect(refused.body.error_description).toBe('DPoP Proof htu mismatch');
    expect(refused.challenge).toMatch(/^DPoP error="invalid_token"/);
  });

  it.each([
    ['as a Bearer token, without a proof', 'Bearer', 'none', 'request has no DPoP HTTP Header'],
    ['with the DPoP scheme but no proof', 'DPoP', 'none', 'request has no DPoP HTTP Header'],
    ['as a Bearer token, with a proof', 'Bearer', 'good', `Authorization HTTP Header scheme is not DPoP`],
    ['with a proof by another key', 'DPoP', 'otherKey', 'JWT Access Token confirmation mismatch'],
    ['with a proof for POST', 'DPoP', 'post', 'DPoP Proof htm mismatch'],
    ['with a proof for another token', 'DPoP', 'otherAth', 'DPoP Proof ath mismatch'],
  ] as const)('refuses the token %s', async (_case, scheme, proofKind, reason) => {
    const me = await holder();
    const token = await obtain(me);
    const ath = accessTokenHash(token);
    const proofs = {
      none: undefined,
      good: await createProof(me.key, { htm: 'GET', htu: ordersUrl(), ath }),
      otherKey: await createProof((await holder()).key, { htm: 'GET', htu: ordersUrl(), ath }),
      post: await createProof(me.key, { htm: 'POST', htu: ordersUrl(), ath }),
      otherAth: await createProof(me.key, { htm: 'GET', htu: ordersUrl(), ath: accessTokenHash('x') }),
    };
    const proof = proofs[proofKind];
    const res = await call({ authorization: `${scheme} ${token}`, ...(proof ? { dpop: proof } : {}) });
    expect(res.status).toBe(401);
    expect(res.body.error_description).toContain(reason);
  });

  it('refuses a token issued for another audience, though bound to the caller key', async () => {
    const me = await holder();
    const token = await obtain(me, OTHER_API);
    expect(claimsOf(token)).toMatchObject({ aud: OTHER_API, cnf: { jkt: me.key.thumbprint } });
    const proof = await createProof(me.key, { htm: 'GET', htu: ordersUrl(), ath: accessTokenHash(token) });
    const res = await call({ authorization: `DPoP ${token}`, dpop: proof });
    expect(res.status).toBe(401);
    expect(res.body.error_description).toBe('unexpected JWT "aud" (audience) claim value');
  });

  it('refuses an opaque token and a JWT with Mayfly claims signed by another key', async () => {
    const me = await holder();
    const opaque = await obtain(me, OPAQUE_API);
    expect(opaque).toMatch(/^[\w-]{43}$/);
    const opaqueProof = await createProof(me.key, {
      htm: 'GET',
      htu: ordersUrl(),
      ath: accessTokenHash(opaque),
    });
    const notJwt = await call({ authorization: `DPoP ${opaque}`, dpop: opaqueProof });
    expect(notJwt).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
    expect(notJwt.body.error_description).toMatch(/JWT/);

    const genuine = claimsOf(await obtain(me));
    const impostor = await joseKeyPair('ES256');
    const kid = (await fetchJwks(as.jwks_uri ?? '')).keys[0]?.kid ?? '';
    const forged = await new SignJWT(genuine)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .sign(impostor.privateKey);
    const proof = await createProof(me.key, { htm: 'GET', htu: ordersUrl(), ath: accessTokenHash(forged) });
    const res = await call({ authorization: `DPoP ${forged}`, dpop: proof });
    expect(res.status).toBe(401);
    expect(res.body.error_description).toBe('JWT signature verification failed');
  });
});
