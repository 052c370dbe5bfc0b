import { createLocalJWKSet, decodeJwt, exportJWK, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/server.ts';
import {
  allowHttp,
  fetchJwks,
  recordingFetch,
  thumbprintOf,
  type AccessTokenClaims,
  type SentRequest,
} from './helpers.ts';

/**
 * openid-client v6 as a machine client: discovery against the issuer, clientCredentialsGrant with a DPoP handle,
 * client_secret_basic and private_key_jwt, with and without server nonces (which the library retries itself).
 */

const API = 'https://api.example.com';

type Method = 'client_secret_basic' | 'private_key_jwt';

interface Registered {
  clientId: string;
  auth: client.ClientAuth;
}

interface Mayfly {
  server: TestServer;
  clients: Record<Method, Registered>;
}

async function setUp(env: Record<string, string> = {}): Promise<Mayfly> {
  const server = await startTestServer({ env });
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  const basic = await server.createClient({
    name: 'openid-client basic',
    auth_method: 'client_secret_basic',
    grants: [{ resource: API, scopes: ['read', 'write'] }],
  });
  const signing = await client.randomDPoPKeyPair('ES256');
  const keyed = await server.createClient({
    name: 'openid-client private_key_jwt',
    auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...(await exportJWK(signing.publicKey)), kty: 'EC', alg: 'ES256' }] },
    grants: [{ resource: API, scopes: ['read'] }],
  });
  return {
    server,
    clients: {
      client_secret_basic: {
        clientId: basic.client.id,
        auth: client.ClientSecretBasic(basic.clientSecret ?? ''),
      },
      private_key_jwt: { clientId: keyed.client.id, auth: client.PrivateKeyJwt(signing.privateKey) },
    },
  };
}

/** Discovery as the library documents it for plain-HTTP development servers; every request is recorded. */
async function configure(mayfly: Mayfly, method: Method, sent: SentRequest[], algorithm?: 'oidc' | 'oauth2') {
  const { clientId, auth } = mayfly.clients[method];
  return client.discovery(new URL(mayfly.server.url), clientId, undefined, auth, {
    execute: [allowHttp],
    [client.customFetch]: recordingFetch(sent),
    ...(algorithm ? { algorithm } : {}),
  });
}

async function verifiedClaims(mayfly: Mayfly, token: string): Promise<AccessTokenClaims> {
  const jwks = createLocalJWKSet(await fetchJwks(`${mayfly.server.url}/jwks`));
  const { payload } = await jwtVerify<AccessTokenClaims>(token, jwks, {
    issuer: mayfly.server.url,
    audience: API,
    typ: 'at+jwt',
    algorithms: ['ES256'],
  });
  return payload;
}

const METHODS: Method[] = ['client_secret_basic', 'private_key_jwt'];

describe('without nonces', () => {
  let mayfly: Mayfly;
  beforeAll(async () => {
    mayfly = await setUp();
  });
  afterAll(() => mayfly.server.close());

  it.each(['oidc', 'oauth2'] as const)('discovers the issuer (%s well-known location)', async (algorithm) => {
    const sent: SentRequest[] = [];
    const config = await configure(mayfly, 'client_secret_basic', sent, algorithm);
    const path = algorithm === 'oidc' ? 'openid-configuration' : 'oauth-authorization-server';
    expect(sent.map((r) => r.url)).toEqual([`${mayfly.server.url}/.well-known/${path}`]);
    expect(config.serverMetadata()).toMatchObject({
      issuer: mayfly.server.url,
      token_endpoint: `${mayfly.server.url}/token`,
      dpop_signing_alg_values_supported: expect.arrayContaining(['ES256']),
    });
  });

  it.each(METHODS)('obtains a DPoP-bound token with %s', async (method) => {
    const sent: SentRequest[] = [];
    const config = await configure(mayfly, method, sent);
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const tokens = await client.clientCredentialsGrant(config, { resource: API, scope: 'read' }, { DPoP });

    expect(tokens).toMatchObject({ token_type: 'dpop', scope: 'read', expires_in: 300 });
    expect(tokens.expiresIn()).toBeGreaterThan(295);
    const jkt = await thumbprintOf(keyPair.publicKey);
    expect(await verifiedClaims(mayfly, tokens.access_token)).toMatchObject({
      aud: API,
      client_id: mayfly.clients[method].clientId,
      scope: 'read',
      cnf: { jkt },
    });

    const tokenRequests = sent.filter((r) => r.url.endsWith('/token'));
    expect(tokenRequests.map((r) => r.status)).toEqual([200]);
    const [request] = tokenRequests;
    expect(request?.body.get('resource')).toBe(API);
    expect(request?.headers.get('authorization')?.startsWith('Basic ') ?? false).toBe(
      method === 'client_secret_basic',
    );
    expect(request?.body.has('client_assertion')).toBe(method === 'private_key_jwt');
    expect(decodeJwt(request?.headers.get('dpop') ?? '')).toMatchObject({
      htm: 'POST',
      htu: `${mayfly.server.url}/token`,
    });
  });

  it('gives every scope the client holds when scope is omitted', async () => {
    const config = await configure(mayfly, 'client_secret_basic', []);
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair());
    const tokens = await client.clientCredentialsGrant(config, { resource: API }, { DPoP });
    expect(tokens.scope).toBe('read write');
    expect((await verifiedClaims(mayfly, tokens.access_token)).scope).toBe('read write');
  });

  it('rejects with the OAuth error of the refusal', async () => {
    const config = await configure(mayfly, 'private_key_jwt', []);
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair());
    const refusal = (parameters: Record<string, string>) =>
      client.clientCredentialsGrant(config, parameters, { DPoP }).then(
        () => expect.unreachable('the grant should fail'),
        (error: unknown) => error,
      );
    const notHeld = await refusal({ resource: API, scope: 'read write' });
    expect(notHeld).toBeInstanceOf(client.ResponseBodyError);
    expect(notHeld).toMatchObject({ status: 400, error: 'invalid_scope' });
    expect((notHeld as client.ResponseBodyError).error_description).toContain('write');
    expect(await refusal({ resource: 'https://unknown.example.com' })).toMatchObject({
      status: 400,
      error: 'invalid_target',
    });
  });
});

describe('with MAYFLY_DPOP_REQUIRE_NONCE', () => {
  let mayfly: Mayfly;
  beforeAll(async () => {
    mayfly = await setUp({ MAYFLY_DPOP_REQUIRE_NONCE: 'true' });
  });
  afterAll(() => mayfly.server.close());

  it.each(METHODS)('retries once with the server nonce, then reuses it (%s)', async (method) => {
    const sent: SentRequest[] = [];
    const config = await configure(mayfly, method, sent);
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);

    const tokens = await client.clientCredentialsGrant(config, { resource: API, scope: 'read' }, { DPoP });
    expect(tokens.token_type).toBe('dpop');
    expect((await verifiedClaims(mayfly, tokens.access_token)).cnf).toEqual({
      jkt: await thumbprintOf(keyPair.publicKey),
    });

    const tokenRequests = () => sent.filter((r) => r.url.endsWith('/token'));
    const [refused, retried] = tokenRequests();
    expect(tokenRequests().map((r) => r.status)).toEqual([400, 200]);
    const nonce = refused?.responseHeaders.get('dpop-nonce');
    expect(nonce).toMatch(/^[\w-]+$/);
    expect(decodeJwt(refused?.headers.get('dpop') ?? '').nonce).toBeUndefined();
    expect(decodeJwt(retried?.headers.get('dpop') ?? '').nonce).toBe(nonce);

    // The handle keeps the nonce: a second grant needs a single request.
    await client.clientCredentialsGrant(config, { resource: API }, { DPoP });
    expect(tokenRequests().map((r) => r.status)).toEqual([400, 200, 200]);
  });

  it('refuses a proof without a nonce with use_dpop_nonce and a fresh DPoP-Nonce header', async () => {
    const sent: SentRequest[] = [];
    const config = await configure(mayfly, 'client_secret_basic', sent);
    // A handle that never learns the nonce: every proof goes without one, so the library's retry fails too.
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair(), {
      [client.modifyAssertion]: (_header, payload) => {
        delete payload.nonce;
      },
    });
    const error = await client.clientCredentialsGrant(config, { resource: API }, { DPoP }).then(
      () => expect.unreachable('the grant should fail'),
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ status: 400, error: 'use_dpop_nonce' });
    const tokenRequests = sent.filter((r) => r.url.endsWith('/token'));
    expect(tokenRequests.map((r) => r.status)).toEqual([400, 400]);
    for (const r of tokenRequests) expect(r.responseHeaders.get('dpop-nonce')).toMatch(/^[\w-]+$/);
  });
});
