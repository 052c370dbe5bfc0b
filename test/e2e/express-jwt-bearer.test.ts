import express, { type NextFunction, type Request, type Response } from 'express';
import { auth, requiredScopes, UnauthorizedError } from 'express-oauth2-jwt-bearer';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import {
  accessTokenHash,
  allowHttp,
  claimsOf,
  listen,
  thumbprintOf,
  type Json,
  type Listening,
} from './helpers.ts';

/**
 * A resource server built with express and express-oauth2-jwt-bearer, validating Mayfly's JWT access tokens
 * with DPoP (RFC 9449 §7): once configured through discovery (issuerBaseURL), once with issuer + jwks_uri.
 */

const API = 'https://api.example.com';
const OTHER_API = 'https://other.example.com';

let server: TestServer;
let rs: Listening;
let caller: { id: string; secret: string };

function resourceServer(issuer: string): express.Express {
  const app = express();
  const discovered = auth({ issuerBaseURL: issuer, audience: API, dpop: { required: true } });
  const configured = auth({
    issuer,
    jwksUri: `${issuer}/jwks`,
    audience: API,
    tokenSigningAlg: 'ES256',
    strict: true,
    dpop: { required: true },
  });
  // DPoP enabled but not required: tokens are accepted per their binding.
  const lenient = auth({ issuerBaseURL: issuer, audience: API });
  const answer = (req: Request, res: Response) => {
    res.json({ client_id: req.auth?.payload.client_id, scope: req.auth?.payload.scope });
  };
  app.get('/orders', discovered, requiredScopes('read'), answer);
  app.get('/admin', discovered, requiredScopes('write'), answer);
  app.get('/static/orders', configured, answer);
  app.get('/lenient/orders', lenient, answer);
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (!(error instanceof UnauthorizedError)) throw error;
    res.status(error.status).set(error.headers);
    res.json({ error: (error as UnauthorizedError & { code?: string }).code ?? '', message: error.message });
  });
  return app;
}

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: OTHER_API, scopes: ['read'] });
  const created = await server.createClient({
    name: 'caller',
    grants: [
      { resource: API, scopes: ['read'] },
      { resource: OTHER_API, scopes: ['read'] },
    ],
  });
  caller = { id: created.client.id, secret: created.clientSecret ?? '' };
  const app = resourceServer(server.url);
  rs = await listen((req, res) => {
    app(req, res);
  });
});
afterAll(async () => {
  await rs.close();
  await server.close();
});

async function obtain(key: DpopKey, resource = API): Promise<string> {
  const res = await requestToken(server.url, { clientId: caller.id, secret: caller.secret, resource, key });
  expect(res.status).toBe(200);
  expect(res.body.token_type).toBe('DPoP');
  return res.body.access_token as string;
}

async function call(path: string, authorization: string, proof?: string) {
  const res = await fetch(`${rs.url}${path}`, {
    headers: { authorization, ...(proof ? { dpop: proof } : {}) },
  });
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate') ?? '',
    body: (await res.json()) as Json,
  };
}

const proofFor = (key: DpopKey, path: string, token: string) =>
  createProof(key, { htm: 'GET', htu: `${rs.url}${path}`, ath: accessTokenHash(token) });

describe('express-oauth2-jwt-bearer with dpop.required', () => {
  it('accepts the DPoP token with a fresh proof for this URL, sent by openid-client', async () => {
    const config = await client.discovery(
      new URL(server.url),
      caller.id,
      undefined,
      client.ClientSecretBasic(caller.secret),
      {
        execute: [allowHttp],
      },
    );
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const tokens = await client.clientCredentialsGrant(config, { resource: API }, { DPoP });
    expect(claimsOf(tokens.access_token).cnf).toEqual({ jkt: await thumbprintOf(keyPair.publicKey) });

    for (const path of ['/orders', '/static/orders']) {
      const res = await client.fetchProtectedResource(
        config,
        tokens.access_token,
        new URL(`${rs.url}${path}`),
        'GET',
        null,
        undefined,
        { DPoP },
      );
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ client_id: caller.id, scope: 'read' });
    }
  });

  it('accepts a hand-built proof (htm, htu, ath) on both configurations', async () => {
    const key = await generateDpopKey();
    const token = await obtain(key);
    for (const path of ['/orders', '/static/orders']) {
      const res = await call(path, `DPoP ${token}`, await proofFor(key, path, token));
      expect(res).toMatchObject({ status: 200, body: { client_id: caller.id, scope: 'read' } });
    }
  });

  it('refuses the DPoP token used as a Bearer token, with or without a proof', async () => {
    const key = await generateDpopKey();
    const token = await obtain(key);
    const bare = await call('/orders', `Bearer ${token}`);
    expect(bare.status).toBe(400);
    expect(bare.challenge).toMatch(/^DPoP algs="[^"]*ES256/);
    const withProof = await call('/orders', `Bearer ${token}`, await proofFor(key, '/orders', token));
    expect(withProof).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    expect(withProof.body.message).toBe('DPoP proof requires the DPoP authentication scheme, not Bearer');

    // Where DPoP is optional, the token's cnf.jkt alone marks it as bound and Bearer use is still refused.
    const lenient = await call('/lenient/orders', `Bearer ${token}`);
    expect(lenient).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
    expect(lenient.body.message).toBe(
      'DPoP-bound token requires the DPoP authentication scheme, not Bearer.',
    );
    const lenientOk = await call(
      '/lenient/orders',
      `DPoP ${token}`,
      await proofFor(key, '/lenient/orders', token),
    );
    expect(lenientOk.status).toBe(200);
  });

  it('refuses a request without a proof', async () => {
    const token = await obtain(await generateDpopKey());
    for (const path of ['/orders', '/static/orders']) {
      const res = await call(path, `DPoP ${token}`);
      expect(res.status).toBe(400);
      expect(res.challenge).toMatch(/^DPoP algs="/);
      expect(res.challenge).not.toContain('error=');
    }
  });

  it('refuses a token for another audience', async () => {
    const key = await generateDpopKey();
    const token = await obtain(key, OTHER_API);
    expect(claimsOf(token).aud).toBe(OTHER_API);
    for (const path of ['/orders', '/static/orders']) {
      const res = await call(path, `DPoP ${token}`, await proofFor(key, path, token));
      expect(res).toMatchObject({
        status: 401,
        body: { error: 'invalid_token', message: "Unexpected 'aud' value" },
      });
      expect(res.challenge).toContain('error="invalid_token"');
    }
  });

  it('refuses proofs by another key, for another URL, or for another token', async () => {
    const key = await generateDpopKey();
    const token = await obtain(key);
    const otherKey = await call(
      '/orders',
      `DPoP ${token}`,
      await proofFor(await generateDpopKey(), '/orders', token),
    );
    expect(otherKey).toMatchObject({
      status: 401,
      body: { error: 'invalid_token', message: 'JWT Access Token confirmation mismatch' },
    });
    const otherUrl = await call('/orders', `DPoP ${token}`, await proofFor(key, '/admin', token));
    expect(otherUrl).toMatchObject({
      status: 400,
      body: { error: 'invalid_dpop_proof', message: 'DPoP Proof htu mismatch' },
    });
    const otherToken = await call(
      '/orders',
      `DPoP ${token}`,
      await proofFor(key, '/orders', 'another-token'),
    );
    expect(otherToken).toMatchObject({
      status: 400,
      body: { error: 'invalid_dpop_proof', message: 'DPoP Proof "ath" mismatch' },
    });
  });

  it('enforces scopes with requiredScopes: a read token is refused where write is needed', async () => {
    const key = await generateDpopKey();
    const token = await obtain(key);
    const res = await call('/admin', `DPoP ${token}`, await proofFor(key, '/admin', token));
    expect(res).toMatchObject({ status: 403, body: { error: 'insufficient_scope' } });
  });
});
