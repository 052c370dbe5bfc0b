import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { ClientInput } from '../../src/clients/client.schemas.ts';
import type { ResourceInput } from '../../src/clients/resource.schemas.ts';
import { MayflyError } from '../../src/errors.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The service layer that the admin API will expose: every bad input is a specific error and writes nothing. */

const API = 'https://api.example.com';
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
});
afterAll(() => server.close());

async function rejection(promise: Promise<unknown>): Promise<MayflyError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MayflyError);
  return error as MayflyError;
}

const counts = async () => ({
  clients: (await server.app.db.selectFrom('client').select('id').execute()).length,
  resources: (await server.app.db.selectFrom('resource').select('id').execute()).length,
  grants: (await server.app.db.selectFrom('client_grant').select('client_id').execute()).length,
  secrets: (await server.app.db.selectFrom('client_secret').select('id').execute()).length,
});

describe('resources', () => {
  it('defaults to a 300 s JWT resource', async () => {
    const row = await server.createResource({ identifier: 'https://defaults.example.com', scopes: ['a'] });
    expect(row).toMatchObject({ token_ttl: 300, token_format: 'jwt', scopes: ['a'], name: null });
  });

  it.each<[string, ResourceInput, string, RegExp]>([
    [
      'a relative identifier',
      { identifier: '/api', scopes: ['a'] },
      'invalid_input',
      /identifier: expected an absolute URI/,
    ],
    [
      'a fragment',
      { identifier: 'https://x.example.com#f', scopes: ['a'] },
      'invalid_input',
      /without a fragment/,
    ],
    ['no scopes', { identifier: 'https://x.example.com', scopes: [] }, 'invalid_input', /at least one scope/],
    [
      'a scope with a space',
      { identifier: 'https://x.example.com', scopes: ['a b'] },
      'invalid_input',
      /scopes\.0: a scope is/,
    ],
    [
      'a repeated scope',
      { identifier: 'https://x.example.com', scopes: ['a', 'a'] },
      'invalid_input',
      /must not repeat/,
    ],
    [
      'a TTL over the maximum',
      { identifier: 'https://x.example.com', scopes: ['a'], token_ttl: 901 },
      'invalid_input',
      /at most 900/,
    ],
    [
      'a negative TTL',
      { identifier: 'https://x.example.com', scopes: ['a'], token_ttl: -5 },
      'invalid_input',
      /positive/,
    ],
    [
      'an unknown format',
      { identifier: 'https://x.example.com', scopes: ['a'], token_format: 'paseto' as 'jwt' },
      'invalid_input',
      /expected jwt or opaque/,
    ],
    ['a duplicate identifier', { identifier: API, scopes: ['a'] }, 'resource_exists', /exists/],
  ])('refuses %s', async (_case, input, code, message) => {
    const before = await counts();
    const error = await rejection(server.createResource(input));
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
    expect(await counts()).toEqual(before);
  });
});

describe('clients', () => {
  it('creates a secret client whose secret is returned once and stored hashed', async () => {
    const { client, clientSecret } = await server.createClient({
      name: 'svc',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    expect(client).toMatchObject({
      name: 'svc',
      auth_method: 'client_secret_basic',
      bearer_allowed: false,
      disabled_at: null,
    });
    expect(clientSecret).toMatch(/^mfy_/);
    const stored = await server.app.db
      .selectFrom('client_secret')
      .selectAll()
      .where('client_id', '=', client.id)
      .execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]?.secret_hash).not.toContain(clientSecret);
  });

  it.each<[string, () => Promise<ClientInput>, string, RegExp]>([
    ['an empty name', () => Promise.resolve({ name: '  ' }), 'invalid_input', /name: a name is required/],
    [
      'an unknown auth method',
      () => Promise.resolve({ name: 'x', auth_method: 'none' as 'private_key_jwt' }),
      'invalid_input',
      /auth_method/,
    ],
    [
      'private_key_jwt without keys',
      () => Promise.resolve({ name: 'x', auth_method: 'private_key_jwt' }),
      'invalid_input',
      /exactly one of jwks or jwks_uri/,
    ],
    [
      'a private key in the JWKS',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        return {
          name: 'x',
          auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...(await exportJWK(privateKey)), kty: 'EC' }] },
        };
      },
      'invalid_input',
      /public keys only/,
    ],
    [
      'keys on a secret client',
      () => Promise.resolve({ name: 'x', jwks_uri: 'https://keys.example.com/jwks.json' }),
      'invalid_input',
      /only used with private_key_jwt/,
    ],
    [
      'a non-http jwks_uri',
      () => Promise.resolve({ name: 'x', auth_method: 'private_key_jwt', jwks_uri: 'file:///etc/passwd' }),
      'invalid_input',
      /jwks_uri/,
    ],
    [
      'a grant on an unknown resource',
      () => Promise.resolve({ name: 'x', grants: [{ resource: 'https://nope.example.com', scopes: ['a'] }] }),
      'resource_not_found',
      /nope/,
    ],
    [
      'a scope the resource does not define',
      () => Promise.resolve({ name: 'x', grants: [{ resource: API, scopes: ['delete'] }] }),
      'scope_not_defined',
      /does not define delete/,
    ],
    [
      'two grants on one resource',
      () =>
        Promise.resolve({
          name: 'x',
          grants: [
            { resource: API, scopes: ['read'] },
            { resource: API, scopes: ['write'] },
          ],
        }),
      'invalid_input',
      /only one grant/,
    ],
    [
      'introspection of an unknown resource',
      () => Promise.resolve({ name: 'x', introspects: ['https://nope.example.com'] }),
      'resource_not_found',
      /nope/,
    ],
  ])('refuses %s and writes nothing', async (_case, input, code, message) => {
    const before = await counts();
    const error = await rejection(server.createClient(await input()));
    expect(error.code).toBe(code);
    expect(error.status).toBeGreaterThanOrEqual(400);
    expect(error.status).toBeLessThan(500);
    expect(error.message).toMatch(message);
    expect(JSON.stringify(error.toJSON())).not.toMatch(/"d":/);
    expect(await counts()).toEqual(before);
  });
});
