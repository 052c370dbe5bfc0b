import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { updateClient } from '../../src/clients/client.service.ts';
import { jwkThumbprint } from '../../src/oidc/dpop-pinning.ts';
import { startCliServer, type CliServer } from '../cli/helpers.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { TEST_ACTOR, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';

let cli: CliServer;
let server: TestServer;
let own: DpopKey;
let spare: DpopKey;
let foreign: DpopKey;

beforeAll(async () => {
  cli = await startCliServer();
  server = cli.server;
  await server.createResource({ identifier: API, scopes: ['read'] });
  [own, spare, foreign] = await Promise.all([generateDpopKey(), generateDpopKey('EdDSA'), generateDpopKey()]);
});
afterAll(() => cli.close());

async function pinnedClient(pins: string[], extra: object = {}) {
  const { client, clientSecret } = await server.createClient({
    name: 'pinned',
    grants: [{ resource: API, scopes: ['read'] }],
    dpop_jkts: pins,
    ...extra,
  });
  return { id: client.id, secret: clientSecret ?? '' };
}

describe('DPoP key pinning', () => {
  it('serves proofs by a pinned key and refuses any other key, with the reason audited', async () => {
    const client = await pinnedClient([own.thumbprint, spare.thumbprint]);
    for (const key of [own, spare]) {
      const res = await requestToken(server.url, {
        clientId: client.id,
        secret: client.secret,
        resource: API,
        key,
      });
      expect(res.status).toBe(200);
      expect(res.body.token_type).toBe('DPoP');
    }
    const refused = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      key: foreign,
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_dpop_proof');
    expect(refused.body.error_description).toContain('not pinned for this client');
    expect(server.logs.audit('token').at(-1)).toMatchObject({
      outcome: 'failure',
      client_id: client.id,
      error: 'invalid_dpop_proof',
      reason: expect.stringContaining('not pinned for this client'),
    });
  });

  it('requires a proof from a pinned client even when it is bearer-allowed', async () => {
    const client = await pinnedClient([own.thumbprint], { bearer_allowed: true });
    const bare = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
    });
    // As for any client bound to DPoP: the proof is missing (RFC 9449 §5.2, §7.1).
    expect(bare.status).toBe(400);
    expect(bare.body.error).toBe('invalid_request');
    expect(bare.body.error_description).toMatch(/DPoP/);
    const proven = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      key: own,
    });
    expect(proven.status).toBe(200);
  });

  it('takes effect on the next request when the pins change, and [] removes the pinning', async () => {
    const client = await pinnedClient([own.thumbprint]);
    const ask = (key: DpopKey) =>
      requestToken(server.url, { clientId: client.id, secret: client.secret, resource: API, key });
    expect((await ask(foreign)).status).toBe(400);
    await updateClient(server.app.admin, TEST_ACTOR, client.id, { dpop_jkts: [foreign.thumbprint] });
    expect((await ask(foreign)).status).toBe(200);
    expect((await ask(own)).status).toBe(400);
    await updateClient(server.app.admin, TEST_ACTOR, client.id, { dpop_jkts: [] });
    expect((await ask(own)).status).toBe(200);
  });

  it('is set and shown through the CLI, and bad thumbprints are refused with the field named', async () => {
    const created = await cli.json<{ client_id: string; dpop_jkts: string[] }>([
      'client',
      'create',
      '--name',
      'cli-pinned',
      '--grant',
      `${API}=read`,
      '--dpop-jkt',
      own.thumbprint,
    ]);
    expect(created.dpop_jkts).toEqual([own.thumbprint]);
    const shown = await cli.run(['client', 'show', created.client_id]);
    expect(shown.stdout).toContain(own.thumbprint);
    const cleared = await cli.json<{ dpop_jkts: string[] }>([
      'client',
      'update',
      created.client_id,
      '--no-dpop-jkts',
    ]);
    expect(cleared.dpop_jkts).toEqual([]);

    const bad = await cli.run(['client', 'update', created.client_id, '--dpop-jkt', 'not-a-thumbprint']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('dpop_jkts');
    expect(bad.stderr).toContain('43 base64url characters');
    await expect(
      updateClient(server.app.admin, TEST_ACTOR, created.client_id, {
        dpop_jkts: [own.thumbprint, own.thumbprint],
      }),
    ).rejects.toMatchObject({ code: 'invalid_input' });
  });

  it('computes RFC 7638 thumbprints as jose does, for EC, OKP and RSA keys', async () => {
    for (const alg of ['ES256', 'EdDSA', 'PS256']) {
      const { publicKey } = await generateKeyPair(alg, { extractable: true });
      const jwk = await exportJWK(publicKey);
      expect(jwkThumbprint({ ...jwk, alg, use: 'sig' })).toBe(await calculateJwkThumbprint(jwk));
    }
    expect(jwkThumbprint({ kty: 'oct', k: 'AAAA' })).toBeUndefined();
    expect(jwkThumbprint({ kty: 'EC', crv: 'P-256', x: 'AA' })).toBeUndefined();
    expect(jwkThumbprint(undefined)).toBeUndefined();
  });

  it('refuses a proof whose header carries a pinned key it was not signed with', async () => {
    const client = await pinnedClient([own.thumbprint]);
    // Signed by the foreign key, claiming the pinned one: the provider's signature check refuses it first.
    const proof = await createProof(foreign, { htu: `${server.url}/token`, header: { jwk: own.publicJwk } });
    const res = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      proof,
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_dpop_proof');
  });
});
