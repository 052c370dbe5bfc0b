import { randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import { adminCall, obtainAdminToken, readAdminCredentials, type AdminToken } from '../support/admin.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import {
  basicAuth,
  createClientAssertion,
  JWT_BEARER_ASSERTION,
  postToken,
  requestToken,
} from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The admin API's client operations, and that each change takes effect at the protocol endpoints at once. */

const API = 'https://api.example.com';
const LEDGER = 'https://ledger.example.com';
const SPARE = 'https://spare.example.com';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const SECRET = /^mfy_[A-Za-z0-9_-]{43}$/;
const DAY_MS = 86_400_000;

/** A clock the tests move forward, so that secret overlaps end without sleeping. */
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let admin: AdminToken;
let dpopKey: DpopKey;
/** A resource server that may introspect tokens of API and LEDGER. */
let resourceServer: { id: string; secret: string };

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
const call = (method: Method, path: string, options: Parameters<typeof adminCall>[4] = {}) =>
  adminCall(server, admin, method, path, options);

interface ClientView {
  client_id: string;
  name: string;
  auth_method: string;
  jwks: { keys: JWK[] } | null;
  jwks_uri: string | null;
  grants: { resource: string; scopes: string[] }[];
  introspects: string[];
  bearer_allowed: boolean;
  status: 'enabled' | 'disabled';
  disabled_at: string | null;
  secrets: { id: string; created_at: string; expires_at: string | null }[];
  created_at: string;
  updated_at: string;
  client_secret?: string;
}

beforeAll(async () => {
  server = await startTestServer({ clock });
  admin = await obtainAdminToken(server);
  dpopKey = await generateDpopKey();
  for (const body of [
    { identifier: API, scopes: ['read', 'write', 'delete'] },
    { identifier: LEDGER, scopes: ['post', 'list'], token_format: 'opaque' },
    { identifier: SPARE, scopes: ['x'] },
  ]) {
    expect((await call('POST', '/resources', { body })).status).toBe(201);
  }
  const rs = await createClient({ name: 'resource server', introspects: [API, LEDGER] });
  resourceServer = { id: rs.client_id, secret: rs.client_secret ?? '' };
});
afterAll(() => server.close());

/** A unique name per test, so that tests sharing the server find their own clients with the name filter. */
const unique = (label: string) => `${label} ${randomBytes(4).toString('hex')}`;

async function createClient(body: Record<string, unknown>): Promise<ClientView> {
  const res = await call('POST', '/clients', { body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as ClientView;
}

async function show(clientId: string): Promise<ClientView> {
  const res = await call('GET', `/clients/${encodeURIComponent(clientId)}`);
  expect(res.status).toBe(200);
  return res.body as ClientView;
}

/** Every client whose name contains `name`, through every page. */
async function listByName(name: string, extra = ''): Promise<ClientView[]> {
  const items: ClientView[] = [];
  let cursor: string | null = null;
  do {
    const parts = [`name=${encodeURIComponent(name)}`, 'limit=200', extra];
    if (cursor !== null) parts.push(`cursor=${encodeURIComponent(cursor)}`);
    const res = await call('GET', '/clients', { query: parts.filter(Boolean).join('&') });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    items.push(...(res.body.items as ClientView[]));
    cursor = res.body.next_cursor as string | null;
  } while (cursor !== null);
  return items;
}

async function countClients(): Promise<number> {
  let count = 0;
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? 'limit=200' : `limit=200&cursor=${encodeURIComponent(cursor)}`;
    const res = await call('GET', '/clients', { query });
    expect(res.status).toBe(200);
    count += (res.body.items as unknown[]).length;
    cursor = res.body.next_cursor as string | null;
  } while (cursor !== null);
  return count;
}

function expectRefusal(res: { status: number; body: { code?: string } }, status: number, code: string) {
  expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
}

function expectDetail(res: { body: { details?: unknown } }, path: string, message?: RegExp) {
  expect(res.body.details).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ path, ...(message ? { message: expect.stringMatching(message) } : {}) }),
    ]),
  );
}

/** client_secret_basic with a fresh DPoP proof. */
const tokenBasic = (clientId: string, secret: string, resource = API, scope?: string) =>
  requestToken(server.url, { clientId, secret, resource, scope, key: dpopKey });

/** client_secret_post with a fresh DPoP proof. */
const tokenPost = (clientId: string, secret: string, resource = API) =>
  postToken(
    server.url,
    { grant_type: 'client_credentials', resource, client_id: clientId, client_secret: secret },
    { key: dpopKey },
  );

/** private_key_jwt with a fresh client assertion and DPoP proof. */
async function tokenJwt(clientId: string, key: CryptoKey, resource = API) {
  const assertion = await createClientAssertion({ clientId, audience: server.url, key });
  return postToken(
    server.url,
    {
      grant_type: 'client_credentials',
      resource,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
    },
    { key: dpopKey },
  );
}

async function signingKey(): Promise<{ privateKey: CryptoKey; jwks: { keys: JWK[] } }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwks: { keys: [{ ...jwk, alg: 'ES256', use: 'sig' }] } };
}

const introspect = (token: string) =>
  request(server.url)
    .post('/token/introspection')
    .set('Authorization', basicAuth(resourceServer.id, resourceServer.secret))
    .type('form')
    .send({ token });

async function expectToken(res: { status: number; body: Record<string, unknown> }, scope?: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.token_type).toBe('DPoP');
  if (scope !== undefined) expect(res.body.scope).toBe(scope);
  const introspection = await introspect(res.body.access_token as string);
  expect(introspection.body.active).toBe(true);
  return res.body.access_token as string;
}

function expectInvalidClient(res: { status: number; body: { error?: string } }) {
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
}

describe('POST /clients', () => {
  it('creates a client_secret_basic client by default and answers its secret once', async () => {
    const name = unique('basic');
    const res = await call('POST', '/clients', {
      body: {
        name,
        grants: [
          { resource: LEDGER, scopes: ['post'] },
          { resource: API, scopes: ['read', 'write'] },
        ],
      },
    });
    expect(res.status).toBe(201);
    const body = res.body as ClientView;
    expect(body).toEqual({
      client_id: expect.stringMatching(/^[A-Za-z0-9_-]{16,}$/),
      name,
      auth_method: 'client_secret_basic',
      jwks: null,
      jwks_uri: null,
      grants: [
        { resource: API, scopes: ['read', 'write'] },
        { resource: LEDGER, scopes: ['post'] },
      ],
      introspects: [],
      bearer_allowed: false,
      dpop_jkts: [],
      managed_by: null,
      rate_limits: { tokens_per_minute: null, introspections_per_minute: null },
      status: 'enabled',
      disabled_at: null,
      secrets: [{ id: expect.any(String), created_at: expect.stringMatching(ISO), expires_at: null }],
      created_at: expect.stringMatching(ISO),
      updated_at: expect.stringMatching(ISO),
      client_secret: expect.stringMatching(SECRET),
    });
    const secret = body.client_secret ?? '';

    // Never again: neither show nor list carries the secret.
    const shown = await call('GET', `/clients/${body.client_id}`);
    const { client_secret: _secret, ...withoutSecret } = body;
    expect(shown.body).toEqual(withoutSecret);
    expect(shown.text).not.toContain(secret);
    const listed = await call('GET', '/clients', { query: `name=${encodeURIComponent(name)}` });
    expect(listed.body.items).toEqual([withoutSecret]);
    expect(listed.text).not.toContain(secret);
    expect(listed.text).not.toMatch(/"client_secret"/);

    await expectToken(await tokenBasic(body.client_id, secret, API), 'read write');
    await expectToken(await tokenBasic(body.client_id, secret, LEDGER), 'post');
    // oidc-provider treats the two secret methods as one: the secret also works in the form body.
    await expectToken(await tokenPost(body.client_id, secret, API), 'read write');
  });

  it('creates a client_secret_post client whose secret works in the form body (and, as oidc-provider allows, in Basic)', async () => {
    const body = await createClient({
      name: unique('post'),
      auth_method: 'client_secret_post',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    expect(body.auth_method).toBe('client_secret_post');
    expect(body.client_secret).toMatch(SECRET);
    expect(body.secrets).toHaveLength(1);
    const secret = body.client_secret ?? '';
    await expectToken(await tokenPost(body.client_id, secret), 'read');
    await expectToken(await tokenBasic(body.client_id, secret), 'read');
    expect((await call('GET', `/clients/${body.client_id}`)).text).not.toContain(secret);
  });

  it('creates a private_key_jwt client with jwks: no secret, and its key obtains tokens', async () => {
    const { privateKey, jwks } = await signingKey();
    const body = await createClient({
      name: unique('jwt'),
      auth_method: 'private_key_jwt',
      jwks,
      grants: [{ resource: API, scopes: ['delete'] }],
    });
    expect(body).toMatchObject({ auth_method: 'private_key_jwt', jwks, jwks_uri: null, secrets: [] });
    expect(body).not.toHaveProperty('client_secret');
    await expectToken(await tokenJwt(body.client_id, privateKey), 'delete');
    const stranger = await signingKey();
    expectInvalidClient(await tokenJwt(body.client_id, stranger.privateKey));
  });

  it('creates a private_key_jwt client with jwks_uri', async () => {
    const body = await createClient({
      name: unique('jwks uri'),
      auth_method: 'private_key_jwt',
      jwks_uri: 'https://keys.example.com/jwks.json',
    });
    expect(body).toMatchObject({
      auth_method: 'private_key_jwt',
      jwks: null,
      jwks_uri: 'https://keys.example.com/jwks.json',
      secrets: [],
      grants: [],
    });
    expect(body).not.toHaveProperty('client_secret');
    expect(await show(body.client_id)).toEqual(body);
  });

  it('creates a bearer-allowed client, which gets a Bearer token without a DPoP proof', async () => {
    const body = await createClient({
      name: unique('bearer'),
      bearer_allowed: true,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    expect(body.bearer_allowed).toBe(true);
    const res = await requestToken(server.url, {
      clientId: body.client_id,
      secret: body.client_secret ?? '',
      resource: API,
    });
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('Bearer');
  });

  it('creates a resource server that introspects', async () => {
    const body = await createClient({ name: unique('introspector'), introspects: [LEDGER, API] });
    expect(body.introspects).toEqual([API, LEDGER]);
    expect(body.grants).toEqual([]);
  });

  type Case = [string, Record<string, unknown> | unknown[], number, string, string?, RegExp?];
  const ecKey = {
    kty: 'EC',
    crv: 'P-256',
    x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
    y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
  };
  const invalidCreates: Case[] = [
    ['no name', { name: undefined }, 400, 'invalid_input', 'name'],
    ['a blank name', { name: '   ' }, 400, 'invalid_input', 'name'],
    ['a name over 200 characters', { name: 'n'.repeat(201) }, 400, 'invalid_input', 'name'],
    ['a numeric name', { name: 7 }, 400, 'invalid_input', 'name'],
    ['an unknown auth_method', { auth_method: 'none' }, 400, 'invalid_input', 'auth_method'],
    ['auth_method tls_client_auth', { auth_method: 'tls_client_auth' }, 400, 'invalid_input', 'auth_method'],
    ['auth_method null', { auth_method: null }, 400, 'invalid_input', 'auth_method'],
    [
      'jwks with a private key member d',
      {
        auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...ecKey, d: 'jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI' }] },
      },
      400,
      'invalid_input',
      'jwks.keys.0',
      /public keys only/,
    ],
    [
      'jwks for a client_secret_basic client',
      { jwks: { keys: [ecKey] } },
      400,
      'invalid_input',
      'jwks',
      /only used with private_key_jwt/,
    ],
    [
      'jwks_uri for a client_secret_post client',
      { auth_method: 'client_secret_post', jwks_uri: 'https://keys.example.com/jwks' },
      400,
      'invalid_input',
      'jwks_uri',
    ],
    [
      'private_key_jwt without keys',
      { auth_method: 'private_key_jwt' },
      400,
      'invalid_input',
      'jwks',
      /exactly one/,
    ],
    [
      'private_key_jwt with both jwks and jwks_uri',
      { auth_method: 'private_key_jwt', jwks: { keys: [ecKey] }, jwks_uri: 'https://keys.example.com/jwks' },
      400,
      'invalid_input',
      'jwks',
      /exactly one/,
    ],
    [
      'an empty key set',
      { auth_method: 'private_key_jwt', jwks: { keys: [] } },
      400,
      'invalid_input',
      'jwks.keys',
    ],
    [
      'a symmetric key',
      { auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } },
      400,
      'invalid_input',
      'jwks.keys.0.kty',
    ],
    [
      'a key without its public members',
      { auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'EC' }] } },
      400,
      'invalid_input',
      'jwks.keys.0',
    ],
    ['jwks as a string', { auth_method: 'private_key_jwt', jwks: 'keys' }, 400, 'invalid_input', 'jwks'],
    [
      'eleven keys',
      { auth_method: 'private_key_jwt', jwks: { keys: Array.from({ length: 11 }, () => ecKey) } },
      400,
      'invalid_input',
      'jwks.keys',
    ],
    [
      'an ftp jwks_uri',
      { auth_method: 'private_key_jwt', jwks_uri: 'ftp://keys.example.com/jwks' },
      400,
      'invalid_input',
      'jwks_uri',
    ],
    [
      'a jwks_uri that is no URL',
      { auth_method: 'private_key_jwt', jwks_uri: 'keys' },
      400,
      'invalid_input',
      'jwks_uri',
    ],
    [
      'a grant on an unknown resource',
      { grants: [{ resource: 'https://unknown.example.com', scopes: ['read'] }] },
      404,
      'resource_not_found',
    ],
    [
      'a grant on an unknown resource beside a valid one',
      {
        grants: [
          { resource: API, scopes: ['read'] },
          { resource: 'https://unknown.example.com', scopes: ['read'] },
        ],
      },
      404,
      'resource_not_found',
    ],
    [
      'introspection of an unknown resource',
      { introspects: ['https://unknown.example.com'] },
      404,
      'resource_not_found',
    ],
    [
      'a scope the resource does not define',
      { grants: [{ resource: API, scopes: ['read', 'admin'] }] },
      400,
      'scope_not_defined',
    ],
    [
      'the same resource in two grants',
      {
        grants: [
          { resource: API, scopes: ['read'] },
          { resource: API, scopes: ['write'] },
        ],
      },
      400,
      'invalid_input',
      'grants',
      /only one grant/,
    ],
    [
      'a grant without scopes',
      { grants: [{ resource: API, scopes: [] }] },
      400,
      'invalid_input',
      'grants.0.scopes',
    ],
    [
      'a grant with repeated scopes',
      { grants: [{ resource: API, scopes: ['read', 'read'] }] },
      400,
      'invalid_input',
      'grants.0.scopes',
    ],
    [
      'a grant without resource',
      { grants: [{ scopes: ['read'] }] },
      400,
      'invalid_input',
      'grants.0.resource',
    ],
    [
      'a grant with an unknown member',
      { grants: [{ resource: API, scopes: ['read'], ttl: 5 }] },
      400,
      'invalid_input',
      'grants.0',
    ],
    ['grants as an object', { grants: { [API]: ['read'] } }, 400, 'invalid_input', 'grants'],
    ['a repeated introspects entry', { introspects: [API, API] }, 400, 'invalid_input', 'introspects'],
    ['an introspects entry that is no URI', { introspects: ['api'] }, 400, 'invalid_input', 'introspects.0'],
    ['bearer_allowed as a string', { bearer_allowed: 'true' }, 400, 'invalid_input', 'bearer_allowed'],
    ['a chosen client_id', { client_id: 'mine' }, 400, 'invalid_input', '', /client_id/],
    ['a chosen client_secret', { client_secret: 'mfy_mine' }, 400, 'invalid_input', '', /client_secret/],
    ['a status', { status: 'disabled' }, 400, 'invalid_input', '', /status/],
  ];

  it.each(invalidCreates)(
    'refuses %s and creates nothing',
    async (_case, extra, status, code, path, message) => {
      const name = unique('refused');
      const before = await countClients();
      const body = Array.isArray(extra) ? extra : { name, ...extra };
      const res = await call('POST', '/clients', { body: JSON.stringify(body) });
      expectRefusal(res, status, code);
      expect(typeof res.body.message).toBe('string');
      if (path !== undefined) expectDetail(res, path, message);
      expect(await listByName(name)).toEqual([]);
      expect(await countClients()).toBe(before);
    },
  );

  it('refuses a JSON array, malformed JSON, another media type, no body and an oversized body', async () => {
    const name = unique('badbody');
    const before = await countClients();
    expectRefusal(await call('POST', '/clients', { body: '[]' }), 400, 'invalid_input');
    expectRefusal(await call('POST', '/clients', { body: `{"name":"${name}"` }), 400, 'invalid_json');
    expectRefusal(
      await call('POST', '/clients', { body: JSON.stringify({ name }), contentType: 'text/plain' }),
      415,
      'unsupported_media_type',
    );
    expectRefusal(await call('POST', '/clients'), 400, 'invalid_input');
    expectRefusal(
      await call('POST', '/clients', { body: { name, pad: 'x'.repeat(70_000) } }),
      413,
      'payload_too_large',
    );
    expect(await listByName(name)).toEqual([]);
    expect(await countClients()).toBe(before);
  });
});

describe('GET /clients', () => {
  it('lists in name order (then id), pages with limit and next_cursor until null, without secrets', async () => {
    const prefix = `list-${randomBytes(4).toString('hex')}`;
    const created: ClientView[] = [];
    for (const suffix of ['c', 'a', 'b', 'b', 'e', 'd'])
      created.push(await createClient({ name: `${prefix} ${suffix}` }));
    const expected = [...created]
      .sort((x, y) => (x.name === y.name ? (x.client_id < y.client_id ? -1 : 1) : x.name < y.name ? -1 : 1))
      .map((c) => c.client_id);

    const paged: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const parts = [`name=${prefix}`, 'limit=2'];
      if (cursor !== null) parts.push(`cursor=${encodeURIComponent(cursor)}`);
      const res = await call('GET', '/clients', { query: parts.join('&') });
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['items', 'next_cursor']);
      expect(res.body.items.length).toBeLessThanOrEqual(2);
      for (const item of res.body.items as ClientView[]) expect(item).not.toHaveProperty('client_secret');
      paged.push(...(res.body.items as ClientView[]).map((c) => c.client_id));
      cursor = res.body.next_cursor as string | null;
      pages += 1;
      expect(pages).toBeLessThan(10);
    } while (cursor !== null);
    expect(paged).toEqual(expected);
    for (const c of created) {
      const text = JSON.stringify(await listByName(prefix));
      expect(text).not.toContain(c.client_secret ?? 'missing');
    }
  });

  it('filters by name substring, case-insensitively, with % and _ taken literally', async () => {
    const prefix = `filter-${randomBytes(4).toString('hex')}`;
    const percent = await createClient({ name: `${prefix} 100% sure` });
    await createClient({ name: `${prefix} 1000 sure` });
    const underscore = await createClient({ name: `${prefix} a_b` });
    await createClient({ name: `${prefix} axb` });
    expect((await listByName(prefix.toUpperCase())).length).toBe(4);
    expect((await listByName(`${prefix} 100%`)).map((c) => c.client_id)).toEqual([percent.client_id]);
    expect((await listByName(`${prefix} a_b`)).map((c) => c.client_id)).toEqual([underscore.client_id]);
    expect(await listByName(`${prefix} nobody`)).toEqual([]);
  });

  it('filters by status, resource (grant or introspection) and auth_method, alone and together', async () => {
    const prefix = `facets-${randomBytes(4).toString('hex')}`;
    const resource = `https://${prefix}.example.com`;
    expect((await call('POST', '/resources', { body: { identifier: resource, scopes: ['r'] } })).status).toBe(
      201,
    );
    const granted = await createClient({ name: `${prefix} granted`, grants: [{ resource, scopes: ['r'] }] });
    const introspector = await createClient({
      name: `${prefix} introspector`,
      auth_method: 'client_secret_post',
      introspects: [resource],
    });
    const { jwks } = await signingKey();
    const keyed = await createClient({ name: `${prefix} keyed`, auth_method: 'private_key_jwt', jwks });
    const disabled = await createClient({
      name: `${prefix} disabled`,
      grants: [{ resource, scopes: ['r'] }],
    });
    expect((await call('POST', `/clients/${disabled.client_id}/disable`)).status).toBe(200);

    const ids = async (extra: string) => (await listByName(prefix, extra)).map((c) => c.client_id).sort();
    const sorted = (...clients: ClientView[]) => clients.map((c) => c.client_id).sort();
    expect(await ids('status=disabled')).toEqual(sorted(disabled));
    expect(await ids('status=enabled')).toEqual(sorted(granted, introspector, keyed));
    expect(await ids(`resource=${encodeURIComponent(resource)}`)).toEqual(
      sorted(granted, introspector, disabled),
    );
    expect(await ids('auth_method=private_key_jwt')).toEqual(sorted(keyed));
    expect(await ids('auth_method=client_secret_post')).toEqual(sorted(introspector));
    expect(await ids('auth_method=client_secret_basic')).toEqual(sorted(granted, disabled));
    expect(
      await ids(`resource=${encodeURIComponent(resource)}&status=enabled&auth_method=client_secret_basic`),
    ).toEqual(sorted(granted));
    expect(await ids(`resource=${encodeURIComponent('https://nobody.example.com')}`)).toEqual([]);
    // Without the name filter too.
    const byResource = await call('GET', '/clients', { query: `resource=${encodeURIComponent(resource)}` });
    expect((byResource.body.items as ClientView[]).map((c) => c.client_id).sort()).toEqual(
      sorted(granted, introspector, disabled),
    );
  });

  it.each([
    ['an unknown status', 'status=paused', 'status'],
    ['an unknown auth_method', 'auth_method=none', 'auth_method'],
    ['a resource that is no URI', 'resource=api', 'resource'],
    ['an empty name', 'name=', 'name'],
    ['a name over 200 characters', `name=${'n'.repeat(201)}`, 'name'],
    ['a repeated name', 'name=a&name=b', 'name'],
    ['a repeated status', 'status=enabled&status=disabled', 'status'],
    ['limit 0', 'limit=0', 'limit'],
    ['limit 201', 'limit=201', 'limit'],
    ['a fractional limit', 'limit=2.5', 'limit'],
    ['a cursor that is not base64url JSON', 'cursor=%25%25', 'cursor'],
    [
      'a cursor of the resource list',
      `cursor=${Buffer.from('"https://a.example.com"').toString('base64url')}`,
      'cursor',
    ],
    ['a cursor with three members', `cursor=${Buffer.from('["a","b","c"]').toString('base64url')}`, 'cursor'],
    ['an unknown parameter', 'order=name', ''],
  ])('refuses %s with 400 invalid_input', async (_case, query, path) => {
    const res = await call('GET', '/clients', { query });
    expectRefusal(res, 400, 'invalid_input');
    expectDetail(res, path);
  });
});

describe('GET /clients/{client_id} and unknown clients', () => {
  it('answers 404 client_not_found on every client endpoint for an unknown client', async () => {
    const ghost = 'no-such-client';
    const calls: [Method, string, Record<string, unknown>?][] = [
      ['GET', `/clients/${ghost}`],
      ['PATCH', `/clients/${ghost}`, { name: 'x' }],
      ['DELETE', `/clients/${ghost}`],
      ['POST', `/clients/${ghost}/disable`],
      ['POST', `/clients/${ghost}/enable`],
      ['POST', `/clients/${ghost}/secrets`],
      ['POST', `/clients/${ghost}/secrets`, { previous_secret_expires_in: 0 }],
    ];
    for (const [method, path, body] of calls) {
      const res = await call(method, path, body ? { body } : {});
      expectRefusal(res, 404, 'client_not_found');
      expect(res.body.message).toContain(ghost);
    }
  });

  it('refuses a client_id over 255 characters with 400 invalid_input', async () => {
    expectRefusal(await call('GET', `/clients/${'c'.repeat(256)}`), 400, 'invalid_input');
  });
});

describe('PATCH /clients/{client_id}', () => {
  it('changes the name, replaces grants and introspection rights, and sets bearer_allowed', async () => {
    const created = await createClient({
      name: unique('patch'),
      grants: [
        { resource: API, scopes: ['read'] },
        { resource: LEDGER, scopes: ['post'] },
      ],
      introspects: [API],
    });
    const renamed = await call('PATCH', `/clients/${created.client_id}`, { body: { name: '  Renamed  ' } });
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe('Renamed');
    expect(renamed.body.grants).toEqual(created.grants);
    expect(renamed.body).not.toHaveProperty('client_secret');

    const regranted = await call('PATCH', `/clients/${created.client_id}`, {
      body: { grants: [{ resource: SPARE, scopes: ['x'] }], introspects: [LEDGER, SPARE] },
    });
    expect(regranted.status).toBe(200);
    expect(regranted.body.grants).toEqual([{ resource: SPARE, scopes: ['x'] }]);
    expect(regranted.body.introspects).toEqual([LEDGER, SPARE]);

    const bearer = await call('PATCH', `/clients/${created.client_id}`, { body: { bearer_allowed: true } });
    expect(bearer.body.bearer_allowed).toBe(true);
    const cleared = await call('PATCH', `/clients/${created.client_id}`, {
      body: { grants: [], introspects: [] },
    });
    expect(cleared.body).toMatchObject({
      grants: [],
      introspects: [],
      bearer_allowed: true,
      name: 'Renamed',
    });

    const final = await show(created.client_id);
    expect(final).toEqual(cleared.body);
    expect(final.created_at).toBe(created.created_at);
    expect(Date.parse(final.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.updated_at));
    expect(final.secrets).toEqual(created.secrets);
  });

  it('applies a change of grants at /token at once: a removed scope is refused, an added scope granted', async () => {
    const created = await createClient({
      name: unique('effect'),
      grants: [{ resource: API, scopes: ['read', 'write'] }],
    });
    const secret = created.client_secret ?? '';
    await expectToken(await tokenBasic(created.client_id, secret, API, 'write'), 'write');

    const narrowed = await call('PATCH', `/clients/${created.client_id}`, {
      body: { grants: [{ resource: API, scopes: ['read'] }] },
    });
    expect(narrowed.status).toBe(200);
    const refused = await tokenBasic(created.client_id, secret, API, 'write');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_scope');
    await expectToken(await tokenBasic(created.client_id, secret, API), 'read');
    const ungranted = await tokenBasic(created.client_id, secret, LEDGER);
    expect(ungranted.body.error).toBe('invalid_target');

    const widened = await call('PATCH', `/clients/${created.client_id}`, {
      body: {
        grants: [
          { resource: API, scopes: ['read', 'delete'] },
          { resource: LEDGER, scopes: ['list'] },
        ],
      },
    });
    expect(widened.status).toBe(200);
    await expectToken(await tokenBasic(created.client_id, secret, API, 'delete'), 'delete');
    await expectToken(await tokenBasic(created.client_id, secret, API), 'read delete');
    await expectToken(await tokenBasic(created.client_id, secret, LEDGER), 'list');
  });

  it('replaces the keys of a private_key_jwt client: the new key works at once, the old one no more', async () => {
    const first = await signingKey();
    const second = await signingKey();
    const created = await createClient({
      name: unique('rekey'),
      auth_method: 'private_key_jwt',
      jwks: first.jwks,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    await expectToken(await tokenJwt(created.client_id, first.privateKey));
    const rekeyed = await call('PATCH', `/clients/${created.client_id}`, { body: { jwks: second.jwks } });
    expect(rekeyed.status).toBe(200);
    expect(rekeyed.body.jwks).toEqual(second.jwks);
    await expectToken(await tokenJwt(created.client_id, second.privateKey));
    expectInvalidClient(await tokenJwt(created.client_id, first.privateKey));

    const toUri = await call('PATCH', `/clients/${created.client_id}`, {
      body: { jwks_uri: 'https://keys.example.com/rekey.json' },
    });
    expect(toUri.body).toMatchObject({ jwks: null, jwks_uri: 'https://keys.example.com/rekey.json' });
    const back = await call('PATCH', `/clients/${created.client_id}`, { body: { jwks: first.jwks } });
    expect(back.body).toMatchObject({ jwks: first.jwks, jwks_uri: null });
  });

  type Case = [string, Record<string, unknown> | unknown[] | number, number, string, string?];
  const invalidSecretClientUpdates: Case[] = [
    ['an empty object', {}, 400, 'invalid_input', ''],
    ['an empty name', { name: '' }, 400, 'invalid_input', 'name'],
    ['a name over 200 characters', { name: 'n'.repeat(201) }, 400, 'invalid_input', 'name'],
    ['a new auth_method', { auth_method: 'client_secret_post' }, 400, 'invalid_input', ''],
    ['a new client_id', { client_id: 'mine' }, 400, 'invalid_input', ''],
    ['a status', { status: 'disabled' }, 400, 'invalid_input', ''],
    ['a secret', { client_secret: 'mfy_x' }, 400, 'invalid_input', ''],
    ['a name and an unknown member', { name: 'New', colour: 'red' }, 400, 'invalid_input', ''],
    [
      'a grant on an unknown resource, beside a new name',
      { name: 'New', grants: [{ resource: 'https://unknown.example.com', scopes: ['read'] }] },
      404,
      'resource_not_found',
    ],
    [
      'introspection of an unknown resource, beside a new name',
      { name: 'New', introspects: [API, 'https://unknown.example.com'] },
      404,
      'resource_not_found',
    ],
    [
      'a scope the resource does not define, beside a new name',
      { name: 'New', grants: [{ resource: LEDGER, scopes: ['post', 'burn'] }] },
      400,
      'scope_not_defined',
    ],
    [
      'the same resource in two grants',
      {
        grants: [
          { resource: LEDGER, scopes: ['post'] },
          { resource: LEDGER, scopes: ['list'] },
        ],
      },
      400,
      'invalid_input',
      'grants',
    ],
    ['grants null', { grants: null }, 400, 'invalid_input', 'grants'],
    [
      'a grant with empty scopes',
      { grants: [{ resource: API, scopes: [] }] },
      400,
      'invalid_input',
      'grants.0.scopes',
    ],
    ['a repeated introspects entry', { introspects: [API, API] }, 400, 'invalid_input', 'introspects'],
    ['bearer_allowed as a string', { bearer_allowed: 'yes' }, 400, 'invalid_input', 'bearer_allowed'],
    ['bearer_allowed null', { bearer_allowed: null }, 400, 'invalid_input', 'bearer_allowed'],
    [
      'jwks for a secret client',
      {
        jwks: {
          keys: [
            {
              kty: 'EC',
              crv: 'P-256',
              x: '7TyHzbfyk_EJhX3qTCKhd1S2e5HE3nyGyHYx-V59tpY',
              y: 'LLl6lz1MWWI-g3pIx2f05cw6NJNWlbVF-ZkFjbVcZRg',
            },
          ],
        },
      },
      400,
      'invalid_input',
      'jwks',
    ],
    [
      'jwks_uri for a secret client',
      { jwks_uri: 'https://keys.example.com/x' },
      400,
      'invalid_input',
      'jwks_uri',
    ],
    ['a JSON array', [], 400, 'invalid_input', ''],
    ['a JSON number', 3, 400, 'invalid_input', ''],
  ];

  it.each(invalidSecretClientUpdates)(
    'refuses %s and changes nothing',
    async (_case, body, status, code, path) => {
      const created = await createClient({
        name: unique('kept'),
        grants: [{ resource: API, scopes: ['read'] }],
        introspects: [LEDGER],
      });
      const before = await show(created.client_id);
      const res = await call('PATCH', `/clients/${created.client_id}`, { body: JSON.stringify(body) });
      expectRefusal(res, status, code);
      if (path !== undefined) expectDetail(res, path);
      expect(await show(created.client_id)).toEqual(before);
      await expectToken(await tokenBasic(created.client_id, created.client_secret ?? '', API), 'read');
    },
  );

  it('refuses bad keys for a private_key_jwt client and keeps the old key working', async () => {
    const { privateKey, jwks } = await signingKey();
    const created = await createClient({
      name: unique('badkeys'),
      auth_method: 'private_key_jwt',
      jwks,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const before = await show(created.client_id);
    const other = await signingKey();
    const privateJwk = await exportJWK(other.privateKey);
    const bodies: [Record<string, unknown>, string][] = [
      [{ jwks: other.jwks, jwks_uri: 'https://keys.example.com/x' }, 'jwks'],
      [{ jwks: { keys: [privateJwk] } }, 'jwks.keys.0'],
      [{ jwks: { keys: [] } }, 'jwks.keys'],
      [{ jwks: null }, 'jwks'],
      [{ jwks_uri: 'http://' }, 'jwks_uri'],
    ];
    for (const [body, path] of bodies) {
      const res = await call('PATCH', `/clients/${created.client_id}`, { body });
      expectRefusal(res, 400, 'invalid_input');
      expectDetail(res, path);
    }
    expect(await show(created.client_id)).toEqual(before);
    await expectToken(await tokenJwt(created.client_id, privateKey));
  });

  it('refuses malformed JSON, another media type and no body', async () => {
    const created = await createClient({ name: unique('badbody') });
    const before = await show(created.client_id);
    const path = `/clients/${created.client_id}`;
    expectRefusal(await call('PATCH', path, { body: '{"name":' }), 400, 'invalid_json');
    expectRefusal(
      await call('PATCH', path, { body: '{"name":"x"}', contentType: 'application/merge-patch+json' }),
      415,
      'unsupported_media_type',
    );
    expectRefusal(await call('PATCH', path), 400, 'invalid_input');
    expect(await show(created.client_id)).toEqual(before);
  });
});

describe('disable, enable and delete', () => {
  it('disable: /token refuses the client and its earlier tokens (JWT and opaque) are inactive at once, and stay so after enable', async () => {
    const created = await createClient({
      name: unique('switch'),
      grants: [
        { resource: API, scopes: ['read'] },
        { resource: LEDGER, scopes: ['post'] },
      ],
    });
    const secret = created.client_secret ?? '';
    const jwt = await expectToken(await tokenBasic(created.client_id, secret, API));
    const opaque = await expectToken(await tokenBasic(created.client_id, secret, LEDGER));

    const disabled = await call('POST', `/clients/${created.client_id}/disable`);
    expect(disabled.status).toBe(200);
    expect(disabled.body).toMatchObject({ client_id: created.client_id, status: 'disabled' });
    expect(disabled.body.disabled_at).toMatch(ISO);
    expect(disabled.body).not.toHaveProperty('client_secret');
    expect(await show(created.client_id)).toEqual(disabled.body);

    expectInvalidClient(await tokenBasic(created.client_id, secret, API));
    expect((await introspect(jwt)).body).toEqual({ active: false });
    expect((await introspect(opaque)).body).toEqual({ active: false });

    // Disabling twice is harmless and keeps the first time.
    const again = await call('POST', `/clients/${created.client_id}/disable`);
    expect(again.status).toBe(200);
    expect(again.body.disabled_at).toBe(disabled.body.disabled_at);

    const enabled = await call('POST', `/clients/${created.client_id}/enable`);
    expect(enabled.status).toBe(200);
    expect(enabled.body).toMatchObject({ status: 'enabled', disabled_at: null });
    const fresh = await expectToken(await tokenBasic(created.client_id, secret, API));
    // Enabling does not revive what disabling ended: tokens issued before stay inactive, new ones work.
    expect((await introspect(jwt)).body).toEqual({ active: false });
    expect((await introspect(opaque)).body).toEqual({ active: false });
    expect((await introspect(fresh)).body.active).toBe(true);
    expect((await call('POST', `/clients/${created.client_id}/enable`)).body.status).toBe('enabled');
  });

  it('disable refuses a private_key_jwt client too', async () => {
    const { privateKey, jwks } = await signingKey();
    const created = await createClient({
      name: unique('switch jwt'),
      auth_method: 'private_key_jwt',
      jwks,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const token = await expectToken(await tokenJwt(created.client_id, privateKey));
    expect((await call('POST', `/clients/${created.client_id}/disable`)).status).toBe(200);
    expectInvalidClient(await tokenJwt(created.client_id, privateKey));
    expect((await introspect(token)).body).toEqual({ active: false });
  });

  it('delete: 204, then 404 everywhere, /token refuses it and its earlier token is inactive at once', async () => {
    const resource = `https://deleted-${randomBytes(4).toString('hex')}.example.com`;
    expect((await call('POST', '/resources', { body: { identifier: resource, scopes: ['r'] } })).status).toBe(
      201,
    );
    const created = await createClient({
      name: unique('doomed'),
      grants: [
        { resource: API, scopes: ['read'] },
        { resource, scopes: ['r'] },
      ],
    });
    const secret = created.client_secret ?? '';
    const token = await expectToken(await tokenBasic(created.client_id, secret, API));

    const res = await call('DELETE', `/clients/${created.client_id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expectRefusal(await call('GET', `/clients/${created.client_id}`), 404, 'client_not_found');
    expect(await listByName(created.name)).toEqual([]);
    expect((await introspect(token)).body).toEqual({ active: false });
    expectInvalidClient(await tokenBasic(created.client_id, secret, API));
    expectRefusal(await call('DELETE', `/clients/${created.client_id}`), 404, 'client_not_found');
    // Its grants went with it: the resource has no dependents left.
    expect((await call('DELETE', `/resources/${encodeURIComponent(resource)}`)).status).toBe(204);
  });

  it('ignores the body of disable and enable', async () => {
    const created = await createClient({ name: unique('body') });
    const res = await call('POST', `/clients/${created.client_id}/disable`, { body: { reason: 'x' } });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('disabled');
  });
});

describe('POST /clients/{client_id}/secrets', () => {
  async function secretClient(authMethod = 'client_secret_basic') {
    const created = await createClient({
      name: unique('rotate'),
      auth_method: authMethod,
      grants: [{ resource: API, scopes: ['read'] }],
    });
    return { created, secret: created.client_secret ?? '' };
  }
  const tokenWith = (method: string) => (method === 'client_secret_post' ? tokenPost : tokenBasic);

  it.each(['client_secret_basic', 'client_secret_post'])(
    'rotates a %s secret with the default overlap: both work, the old one until about 24 h from now',
    async (method) => {
      const { created, secret: old } = await secretClient(method);
      const rotated = await call('POST', `/clients/${created.client_id}/secrets`);
      expect(rotated.status).toBe(201);
      const fresh = rotated.body.client_secret as string;
      expect(fresh).toMatch(SECRET);
      expect(fresh).not.toBe(old);
      const secrets = rotated.body.secrets as ClientView['secrets'];
      expect(secrets).toHaveLength(2);
      const previous = secrets.find((s) => s.id === created.secrets[0]?.id);
      const next = secrets.find((s) => s.id !== created.secrets[0]?.id);
      expect(previous?.expires_at).toMatch(ISO);
      expect(Math.abs(Date.parse(previous?.expires_at ?? '') - (Date.now() + DAY_MS))).toBeLessThan(60_000);
      expect(next?.expires_at).toBeNull();

      const token = tokenWith(method);
      await expectToken(await token(created.client_id, old));
      await expectToken(await token(created.client_id, fresh));
      const shown = await call('GET', `/clients/${created.client_id}`);
      expect(shown.body.secrets).toEqual(secrets);
      expect(shown.text).not.toContain(fresh);
      expect(shown.body).not.toHaveProperty('client_secret');
    },
  );

  it('ends the old secret at once with previous_secret_expires_in 0', async () => {
    const { created, secret: old } = await secretClient();
    const rotated = await call('POST', `/clients/${created.client_id}/secrets`, {
      body: { previous_secret_expires_in: 0 },
    });
    expect(rotated.status).toBe(201);
    const fresh = rotated.body.client_secret as string;
    expectInvalidClient(await tokenBasic(created.client_id, old));
    await expectToken(await tokenBasic(created.client_id, fresh));
    expect((rotated.body.secrets as ClientView['secrets']).map((s) => s.expires_at)).toEqual([null]);
    expect((await show(created.client_id)).secrets).toHaveLength(1);
  });

  it('keeps the old secret for a short overlap and refuses it once the clock passes it', async () => {
    const { created, secret: old } = await secretClient('client_secret_post');
    const rotated = await call('POST', `/clients/${created.client_id}/secrets`, {
      body: { previous_secret_expires_in: 60 },
    });
    expect(rotated.status).toBe(201);
    const fresh = rotated.body.client_secret as string;
    try {
      clock.offsetMs = 55_000;
      await expectToken(await tokenPost(created.client_id, old));
      expect((await show(created.client_id)).secrets).toHaveLength(2);
      clock.offsetMs = 61_000;
      expectInvalidClient(await tokenPost(created.client_id, old));
      await expectToken(await tokenPost(created.client_id, fresh));
      expect((await show(created.client_id)).secrets.map((s) => s.expires_at)).toEqual([null]);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it('a second rotation with 0 ends every earlier secret, including one still in its overlap', async () => {
    const { created, secret: first } = await secretClient();
    const second = (await call('POST', `/clients/${created.client_id}/secrets`)).body.client_secret as string;
    const third = await call('POST', `/clients/${created.client_id}/secrets`, {
      body: { previous_secret_expires_in: 0 },
    });
    expect(third.status).toBe(201);
    expectInvalidClient(await tokenBasic(created.client_id, first));
    expectInvalidClient(await tokenBasic(created.client_id, second));
    await expectToken(await tokenBasic(created.client_id, third.body.client_secret as string));
  });

  it('a rotation with a long overlap does not extend a previous secret that ends sooner', async () => {
    const { created, secret: first } = await secretClient();
    const short = await call('POST', `/clients/${created.client_id}/secrets`, {
      body: { previous_secret_expires_in: 30 },
    });
    const firstExpiry = (short.body.secrets as ClientView['secrets']).find(
      (s) => s.id === created.secrets[0]?.id,
    )?.expires_at;
    const long = await call('POST', `/clients/${created.client_id}/secrets`, {
      body: { previous_secret_expires_in: 2_592_000 },
    });
    expect(long.status).toBe(201);
    const after = (long.body.secrets as ClientView['secrets']).find((s) => s.id === created.secrets[0]?.id);
    expect(after?.expires_at).toBe(firstExpiry);
    await expectToken(await tokenBasic(created.client_id, first));
  });

  it('refuses to rotate a private_key_jwt client with 400 invalid_input', async () => {
    const { jwks } = await signingKey();
    const created = await createClient({ name: unique('no secret'), auth_method: 'private_key_jwt', jwks });
    const res = await call('POST', `/clients/${created.client_id}/secrets`);
    expectRefusal(res, 400, 'invalid_input');
    expect(res.body).not.toHaveProperty('client_secret');
    expect(await show(created.client_id)).toEqual(created);
  });

  it.each<[string, unknown, string]>([
    ['a negative overlap', { previous_secret_expires_in: -1 }, 'previous_secret_expires_in'],
    ['an overlap over 30 days', { previous_secret_expires_in: 2_592_001 }, 'previous_secret_expires_in'],
    ['a fractional overlap', { previous_secret_expires_in: 0.5 }, 'previous_secret_expires_in'],
    ['an overlap as a string', { previous_secret_expires_in: '60' }, 'previous_secret_expires_in'],
    ['an overlap of null', { previous_secret_expires_in: null }, 'previous_secret_expires_in'],
    ['an unknown member', { previous_secret_expires_in: 60, force: true }, ''],
    ['a JSON array', [], ''],
  ])('refuses %s with 400 invalid_input; the old secret keeps working alone', async (_case, body, path) => {
    const { created, secret } = await secretClient();
    const res = await call('POST', `/clients/${created.client_id}/secrets`, { body: JSON.stringify(body) });
    expectRefusal(res, 400, 'invalid_input');
    expectDetail(res, path);
    expect(res.body).not.toHaveProperty('client_secret');
    expect((await show(created.client_id)).secrets).toEqual(created.secrets);
    await expectToken(await tokenBasic(created.client_id, secret));
  });

  it('refuses malformed JSON and another media type, and rotates nothing', async () => {
    const { created, secret } = await secretClient();
    const path = `/clients/${created.client_id}/secrets`;
    expectRefusal(
      await call('POST', path, { body: '{"previous_secret_expires_in": 0' }),
      400,
      'invalid_json',
    );
    expectRefusal(
      await call('POST', path, { body: '{"previous_secret_expires_in":0}', contentType: 'text/plain' }),
      415,
      'unsupported_media_type',
    );
    expect((await show(created.client_id)).secrets).toEqual(created.secrets);
    await expectToken(await tokenBasic(created.client_id, secret));
  });
});

describe('the last admin client', () => {
  it('cannot be disabled, deleted or lose admin:write (409 last_admin_client) until another admin exists', async () => {
    // Its own server: a failure here must not lock the rest of this file out.
    const own = await startTestServer();
    try {
      const credentials = await readAdminCredentials(own);
      const first = await obtainAdminToken(own);
      const asFirst = (method: Method, path: string, options: Parameters<typeof adminCall>[4] = {}) =>
        adminCall(own, first, method, path, options);
      const adminResource = `${own.url}/admin`;
      const path = `/clients/${credentials.client_id}`;
      const before = (await asFirst('GET', path)).body as ClientView;
      expect(before.grants).toEqual([{ resource: adminResource, scopes: ['admin:read', 'admin:write'] }]);

      const refusals: [Method, string, Record<string, unknown>?][] = [
        ['POST', `${path}/disable`],
        ['DELETE', path],
        ['PATCH', path, { grants: [{ resource: adminResource, scopes: ['admin:read'] }] }],
        ['PATCH', path, { grants: [], name: 'renamed too' }],
      ];
      for (const [method, target, body] of refusals) {
        const res = await asFirst(method, target, body ? { body } : {});
        expectRefusal(res, 409, 'last_admin_client');
      }
      expect((await asFirst('GET', path)).body).toEqual(before);
      // Changes that keep admin:write are fine.
      const renamed = await asFirst('PATCH', path, {
        body: {
          name: 'Operator',
          grants: [{ resource: adminResource, scopes: ['admin:write', 'admin:read'] }],
        },
      });
      expect(renamed.status).toBe(200);

      // With a second admin client, the first may go; then the second is the last one.
      const { privateKey, jwks } = await signingKey();
      const second = await asFirst('POST', '/clients', {
        body: {
          name: 'second admin',
          auth_method: 'private_key_jwt',
          jwks,
          grants: [{ resource: adminResource, scopes: ['admin:read', 'admin:write'] }],
        },
      });
      expect(second.status).toBe(201);
      const disabled = await asFirst('POST', `${path}/disable`);
      expect(disabled.status).toBe(200);
      expect(disabled.body.status).toBe('disabled');
      const locked = await asFirst('GET', '/clients');
      expect(locked.status).toBe(401);
      expect(locked.body.code).toBe('invalid_token');

      const secondToken = await obtainAdminToken(own, {
        credentials: {
          issuer: own.url,
          client_id: (second.body as ClientView).client_id,
          private_jwk: await exportJWK(privateKey),
        },
      });
      const self = `/clients/${(second.body as ClientView).client_id}`;
      expectRefusal(await adminCall(own, secondToken, 'POST', `${self}/disable`), 409, 'last_admin_client');
      expectRefusal(await adminCall(own, secondToken, 'DELETE', self), 409, 'last_admin_client');
      expect((await adminCall(own, secondToken, 'POST', `${path}/enable`)).body.status).toBe('enabled');
    } finally {
      await own.close();
    }
  });
});
