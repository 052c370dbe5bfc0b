import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/server.ts';
import {
  fetchJwks,
  insecure,
  recordingFetch,
  thumbprintOf,
  type AccessTokenClaims,
  type Json,
  type SentRequest,
} from './helpers.ts';

/**
 * oauth4webapi as a machine client: RFC 8414 discovery, client_credentials with client_secret_basic and
 * private_key_jwt, DPoP-bound tokens (RFC 9449), and the nonce retry of RFC 9449 §8.
 */

const API = 'https://api.example.com';

interface Party {
  server: TestServer;
  as: oauth.AuthorizationServer;
  basic: { client: oauth.Client; auth: oauth.ClientAuth };
  keyed: { client: oauth.Client; auth: oauth.ClientAuth };
}

/** A Mayfly discovered through RFC 8414, with one client of each authentication method. */
async function setUp(env: Record<string, string> = {}): Promise<Party> {
  const server = await startTestServer({ env });
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  const secretClient = await server.createClient({
    name: 'oauth4webapi basic',
    grants: [{ resource: API, scopes: ['read', 'write'] }],
  });
  const signing = await oauth.generateKeyPair('ES256');
  const publicJwk = { ...(await exportJWK(signing.publicKey)), kty: 'EC' as const, alg: 'ES256' };
  const keyClient = await server.createClient({
    name: 'oauth4webapi private_key_jwt',
    auth_method: 'private_key_jwt',
    jwks: { keys: [publicJwk] },
    grants: [{ resource: API, scopes: ['read'] }],
  });
  const issuer = new URL(server.url);
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
  expect(new URL(response.url).pathname).toBe('/.well-known/oauth-authorization-server');
  return {
    server,
    as: await oauth.processDiscoveryResponse(issuer, response),
    basic: {
      client: { client_id: secretClient.client.id },
      auth: oauth.ClientSecretBasic(secretClient.clientSecret ?? ''),
    },
    keyed: { client: { client_id: keyClient.client.id }, auth: oauth.PrivateKeyJwt(signing.privateKey) },
  };
}

async function grant(
  party: Party,
  who: Party['basic'],
  dpop: oauth.DPoPHandle,
  parameters: Record<string, string>,
  sent: SentRequest[] = [],
): Promise<Response> {
  return oauth.clientCredentialsGrantRequest(party.as, who.client, who.auth, parameters, {
    DPoP: dpop,
    [oauth.customFetch]: recordingFetch(sent),
    ...insecure,
  });
}

describe('without nonces', () => {
  let party: Party;
  beforeAll(async () => {
    party = await setUp();
  });
  afterAll(() => party.server.close());

  it('discovers the server through RFC 8414 metadata', () => {
    const url = party.server.url;
    expect(party.as).toMatchObject({
      issuer: url,
      token_endpoint: `${url}/token`,
      jwks_uri: `${url}/jwks`,
      introspection_endpoint: `${url}/token/introspection`,
      revocation_endpoint: `${url}/token/revocation`,
      grant_types_supported: ['client_credentials'],
    });
    expect(party.as.token_endpoint_auth_methods_supported).toEqual(
      expect.arrayContaining(['client_secret_basic', 'private_key_jwt']),
    );
    expect(party.as.dpop_signing_alg_values_supported).toContain('ES256');
  });

  it.each([
    ['client_secret_basic', 'basic', 'read', 'read'],
    ['client_secret_basic, scope omitted', 'basic', undefined, 'read write'],
    ['private_key_jwt', 'keyed', 'read', 'read'],
  ] as const)('obtains a DPoP-bound RFC 9068 token with %s', async (_case, who, scope, granted) => {
    const keyPair = await oauth.generateKeyPair('ES256');
    const dpop = oauth.DPoP(party.basic.client, keyPair);
    const sent: SentRequest[] = [];
    const response = await grant(
      party,
      party[who],
      dpop,
      { resource: API, ...(scope ? { scope } : {}) },
      sent,
    );
    expect(response.status).toBe(200);
    expect(((await response.clone().json()) as Json).token_type).toBe('DPoP');
    const result = await oauth.processClientCredentialsResponse(party.as, party[who].client, response);
    expect(result).toMatchObject({ token_type: 'dpop', expires_in: 300, scope: granted });

    // What went on the wire: one request, authenticated as asked, with a proof for POST /token.
    expect(sent).toHaveLength(1);
    const [request] = sent;
    if (who === 'basic') {
      expect(request?.headers.get('authorization')).toMatch(/^Basic /);
    } else {
      expect(request?.headers.get('authorization')).toBeNull();
      expect(request?.body.get('client_assertion_type')).toBe(
        'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      );
    }
    const proof = request?.headers.get('dpop') ?? '';
    expect(decodeProtectedHeader(proof)).toMatchObject({ typ: 'dpop+jwt', alg: 'ES256' });
    expect(decodeJwt(proof)).toMatchObject({ htm: 'POST', htu: `${party.server.url}/token` });

    const jkt = await thumbprintOf(keyPair.publicKey);
    expect(await dpop.calculateThumbprint()).toBe(jkt);
    const jwks = createLocalJWKSet(await fetchJwks(party.as.jwks_uri ?? ''));
    const { payload, protectedHeader } = await jwtVerify<AccessTokenClaims>(result.access_token, jwks, {
      issuer: party.server.url,
      audience: API,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    expect(protectedHeader.typ).toBe('at+jwt');
    const clientId = party[who].client.client_id;
    expect(payload).toMatchObject({ client_id: clientId, sub: clientId, scope: granted, cnf: { jkt } });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300);
  });

  it('surfaces Mayfly refusals as OAuth errors the library understands', async () => {
    const dpop = oauth.DPoP(party.basic.client, await oauth.generateKeyPair('ES256'));
    const failure = async (who: Party['basic'], parameters: Record<string, string>) => {
      const response = await grant(party, who, dpop, parameters);
      return oauth.processClientCredentialsResponse(party.as, who.client, response).then(
        () => expect.unreachable('the grant should fail'),
        (error: unknown) => error,
      );
    };
    const noResource = await failure(party.basic, { scope: 'read' });
    expect(noResource).toBeInstanceOf(oauth.ResponseBodyError);
    expect(noResource).toMatchObject({ status: 400, error: 'invalid_target' });

    const notHeld = await failure(party.keyed, { resource: API, scope: 'write' });
    expect(notHeld).toMatchObject({ status: 400, error: 'invalid_scope' });
    expect(oauth.isDPoPNonceError(notHeld)).toBe(false);

    const wrongSecret = { client: party.basic.client, auth: oauth.ClientSecretBasic('not-the-secret') };
    const badClient = await failure(wrongSecret, { resource: API });
    // RFC 6749 §5.2: a client that used the Authorization header gets 401 with a Basic challenge.
    expect(badClient).toBeInstanceOf(oauth.WWWAuthenticateChallengeError);
    expect(badClient).toMatchObject({
      status: 401,
      cause: [{ scheme: 'basic', parameters: { error: 'invalid_client' } }],
    });
  });
});

describe('with MAYFLY_DPOP_REQUIRE_NONCE', () => {
  let party: Party;
  beforeAll(async () => {
    party = await setUp({ MAYFLY_DPOP_REQUIRE_NONCE: 'true' });
  });
  afterAll(() => party.server.close());

  it.each(['basic', 'keyed'] as const)(
    'answers use_dpop_nonce first, then accepts the retry carrying the nonce (%s)',
    async (who) => {
      const keyPair = await oauth.generateKeyPair('ES256');
      const dpop = oauth.DPoP(party[who].client, keyPair);
      const sent: SentRequest[] = [];
      const parameters = { resource: API, scope: 'read' };

      // The retry pattern of the library's DPoP documentation: the handle has cached the nonce.
      let response = await grant(party, party[who], dpop, parameters, sent);
      let nonceError: unknown;
      const result = await oauth
        .processClientCredentialsResponse(party.as, party[who].client, response)
        .catch(async (error: unknown) => {
          nonceError = error;
          if (!oauth.isDPoPNonceError(error)) throw error;
          response = await grant(party, party[who], dpop, parameters, sent);
          return oauth.processClientCredentialsResponse(party.as, party[who].client, response);
        });

      expect(oauth.isDPoPNonceError(nonceError)).toBe(true);
      expect(nonceError).toMatchObject({ status: 400, error: 'use_dpop_nonce' });
      expect(sent.map((r) => r.status)).toEqual([400, 200]);
      const [first, second] = sent;
      const nonce = first?.responseHeaders.get('dpop-nonce');
      expect(nonce).toMatch(/^[\w-]+$/);
      expect(decodeJwt(first?.headers.get('dpop') ?? '').nonce).toBeUndefined();
      expect(decodeJwt(second?.headers.get('dpop') ?? '').nonce).toBe(nonce);

      const jkt = await thumbprintOf(keyPair.publicKey);
      expect(result).toMatchObject({ token_type: 'dpop', scope: 'read' });
      expect(decodeJwt<AccessTokenClaims>(result.access_token).cnf).toEqual({ jkt });

      // The cached nonce is still fresh: the next grant succeeds at the first attempt.
      const again = await grant(party, party[who], dpop, parameters, sent);
      expect(again.status).toBe(200);
      expect(sent).toHaveLength(3);

      // Every attempt is in the audit trail, the refused one with its reason.
      const client_id = party[who].client.client_id;
      expect(party.server.logs.audit('token').slice(-3)).toMatchObject([
        { outcome: 'failure', client_id, error: 'use_dpop_nonce', resource: API },
        { outcome: 'success', client_id, jkt, token_type: 'DPoP', token_format: 'jwt', scopes: ['read'] },
        { outcome: 'success', client_id, jkt, token_type: 'DPoP' },
      ]);
    },
  );
});
