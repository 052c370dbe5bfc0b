import { exportJWK } from 'jose';
import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, type DpopKey } from '../support/dpop.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { accessTokenHash, insecure, thumbprintOf, type Json } from './helpers.ts';
import {
  startIntrospectingResourceServer,
  type IntrospectingResourceServer,
} from './introspecting-resource-server.ts';

/**
 * Resource servers that validate by introspection (RFC 7662), authenticated as their own Mayfly client, and check
 * the DPoP proof of each request against the introspected cnf.jkt (RFC 9449 §7, §6.2). Callers use oauth4webapi;
 * the resource servers use openid-client. Revocation (RFC 7009) by the owning client ends access at once.
 */

const ORDERS = 'https://orders.example.com'; // JWT access tokens
const LEDGER = 'https://ledger.example.com'; // opaque access tokens

let server: TestServer;
let as: oauth.AuthorizationServer;
let caller: { client: oauth.Client; auth: oauth.ClientAuth };
const resourceServers = new Map<string, IntrospectingResourceServer>();

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: ORDERS, scopes: ['orders:read'] });
  await server.createResource({ identifier: LEDGER, scopes: ['ledger:post'], token_format: 'opaque' });
  const created = await server.createClient({
    name: 'caller',
    grants: [
      { resource: ORDERS, scopes: ['orders:read'] },
      { resource: LEDGER, scopes: ['ledger:post'] },
    ],
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

  // The orders API authenticates with a secret, the ledger with a signed assertion.
  const orders = await server.createClient({ name: 'orders api', introspects: [ORDERS] });
  resourceServers.set(
    ORDERS,
    await startIntrospectingResourceServer({
      issuer: server.url,
      audience: ORDERS,
      clientId: orders.client.id,
      auth: client.ClientSecretBasic(orders.clientSecret ?? ''),
    }),
  );
  const ledgerKey = await client.randomDPoPKeyPair('ES256');
  const ledger = await server.createClient({
    name: 'ledger api',
    auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...(await exportJWK(ledgerKey.publicKey)), kty: 'EC', alg: 'ES256' }] },
    introspects: [LEDGER],
  });
  resourceServers.set(
    LEDGER,
    await startIntrospectingResourceServer({
      issuer: server.url,
      audience: LEDGER,
      clientId: ledger.client.id,
      auth: client.PrivateKeyJwt(ledgerKey.privateKey),
    }),
  );
});
afterAll(async () => {
  for (const rs of resourceServers.values()) await rs.close();
  await server.close();
});

interface Holder {
  key: DpopKey;
  dpop: oauth.DPoPHandle;
}

async function holder(): Promise<Holder> {
  const pair = await oauth.generateKeyPair('ES256');
  const publicJwk = await exportJWK(pair.publicKey);
  return {
    key: {
      privateKey: pair.privateKey,
      publicJwk,
      thumbprint: await thumbprintOf(pair.publicKey),
      alg: 'ES256',
    },
    dpop: oauth.DPoP(caller.client, pair),
  };
}

async function obtain(who: Holder, resource: string): Promise<string> {
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    caller.client,
    caller.auth,
    { resource },
    {
      DPoP: who.dpop,
      ...insecure,
    },
  );
  return (await oauth.processClientCredentialsResponse(as, caller.client, response)).access_token;
}

const rsOf = (audience: string) => resourceServers.get(audience)!;

async function call(audience: string, token: string, proof?: string, scheme = 'DPoP') {
  const res = await fetch(`${rsOf(audience).url}/entries`, {
    headers: { authorization: `${scheme} ${token}`, ...(proof ? { dpop: proof } : {}) },
  });
  return { status: res.status, body: (await res.json()) as Json };
}

const proofAt = (audience: string, who: Holder, token: string) =>
  createProof(who.key, { htm: 'GET', htu: `${rsOf(audience).url}/entries`, ath: accessTokenHash(token) });

describe.each([
  ['JWT', ORDERS, LEDGER, 'orders:read'],
  ['opaque', LEDGER, ORDERS, 'ledger:post'],
])('%s access tokens at an introspecting resource server', (format, audience, otherAudience, scope) => {
  it('are introspected as active, DPoP-bound, for this audience; the caller is served', async () => {
    const me = await holder();
    const token = await obtain(me, audience);
    expect(token.split('.')).toHaveLength(format === 'JWT' ? 3 : 1);

    const info = await client.tokenIntrospection(rsOf(audience).config, token);
    expect(info).toMatchObject({
      active: true,
      aud: audience,
      iss: server.url,
      client_id: caller.client.client_id,
      sub: caller.client.client_id,
      scope,
      token_type: 'DPoP',
      cnf: { jkt: me.key.thumbprint },
    });
    expect((info.exp ?? 0) - (info.iat ?? 0)).toBe(300);

    const url = new URL(`${rsOf(audience).url}/entries`);
    const res = await oauth.protectedResourceRequest(token, 'GET', url, undefined, null, {
      DPoP: me.dpop,
      ...insecure,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ client_id: caller.client.client_id, scope });
  });

  it('are refused without the holder key: no proof, Bearer use, another key, a replayed proof', async () => {
    const me = await holder();
    const token = await obtain(me, audience);
    const refusal = (description: string) => ({
      status: 401,
      body: { error: 'invalid_token', error_description: description },
    });
    expect(await call(audience, token)).toEqual(refusal('DPoP proof required'));
    expect(await call(audience, token, await proofAt(audience, me, token), 'Bearer')).toEqual(
      refusal('DPoP authorization required'),
    );
    const stranger = await holder();
    expect(await call(audience, token, await proofAt(audience, stranger, token))).toEqual(
      refusal('proof key is not the token key'),
    );
    const proof = await proofAt(audience, me, token);
    expect((await call(audience, token, proof)).status).toBe(200);
    expect(await call(audience, token, proof)).toEqual(refusal('proof replayed'));
  });

  it('are refused at the resource server of another audience, which learns nothing from introspection', async () => {
    const me = await holder();
    const token = await obtain(me, audience);
    const info = await client.tokenIntrospection(rsOf(otherAudience).config, token);
    expect({ ...info }).toEqual({ active: false });
    expect(await call(otherAudience, token, await proofAt(otherAudience, me, token))).toMatchObject({
      status: 401,
      body: { error_description: 'token inactive' },
    });
  });

  it('are inactive and refused once revoked by the client that obtained them', async () => {
    const me = await holder();
    const token = await obtain(me, audience);
    expect((await call(audience, token, await proofAt(audience, me, token))).status).toBe(200);

    // Another client's revocation attempt is refused and changes nothing (RFC 7009 §2.1).
    const { config: rsConfig } = rsOf(audience);
    await expect(client.tokenRevocation(rsConfig, token)).rejects.toMatchObject({
      error: 'unauthorized_client',
      status: 400,
    });
    expect(server.logs.audit('revocation').at(-1)).toMatchObject({
      outcome: 'failure',
      revoked: false,
      error: 'unauthorized_client',
      client_id: rsConfig.clientMetadata().client_id,
    });
    expect((await client.tokenIntrospection(rsConfig, token)).active).toBe(true);

    const revocation = await oauth.revocationRequest(as, caller.client, caller.auth, token, {
      additionalParameters: { token_type_hint: 'access_token' },
      ...insecure,
    });
    expect(revocation.status).toBe(200);
    await expect(oauth.processRevocationResponse(revocation)).resolves.toBeUndefined();
    expect(server.logs.audit('revocation').at(-1)).toMatchObject({
      outcome: 'success',
      revoked: true,
      client_id: caller.client.client_id,
      resource: audience,
    });

    expect({ ...(await client.tokenIntrospection(rsConfig, token)) }).toEqual({ active: false });
    expect(await call(audience, token, await proofAt(audience, me, token))).toEqual({
      status: 401,
      body: { error: 'invalid_token', error_description: 'token inactive' },
    });
  });
});
