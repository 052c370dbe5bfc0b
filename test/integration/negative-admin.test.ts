import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';

import { importJWK, SignJWT } from 'jose';
import type request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import {
  accessTokenHash,
  adminCall,
  obtainAdminToken,
  readAdminCredentials,
  type AdminCallOptions,
  type AdminToken,
} from '../support/admin.ts';
import { createProof, generateDpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { UNTHROTTLED } from '../support/unthrottled.ts';

/**
 * Negative battery for the admin API (/admin/v1): every input member of the client and resource operations
 * mutated, bodies that are not the JSON asked for, credentials that must not work, and unknown ids. Each
 * refusal must be a 4xx with the stable error code, and must leave every object as it was (read back with GET).
 * admin-clients.test.ts, admin-resources.test.ts and admin-auth.test.ts hold the first cases of each kind.
 */

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
type Response = request.Response;

const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let admin: AdminToken;
let reader: AdminToken;
/** A token of a client that is no admin: a grant on the sentinel resource only. */
let outsider: AdminToken & { id: string; secret: string };

const SENTINEL = 'https://sentinel.example.com';
let sentinelClient: string;
let sentinelKeyed: string;
let signingKid: string;

const EC_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
};

const statuses: number[] = [];

/** A response body for a failure message, never with a secret or a token in it. */
const shown = (body: unknown) =>
  JSON.stringify(body, (key, value: unknown) =>
    ['client_secret', 'access_token', 'refresh_token'].includes(key) ? '<redacted>' : value,
  );

function call(method: Method, path: string, options: AdminCallOptions = {}, as: AdminToken = admin) {
  return adminCall(server, as, method, path, options).then((res) => {
    statuses.push(res.status);
    return res;
  });
}

beforeAll(async () => {
  server = await startTestServer({ clock, env: { ...UNTHROTTLED } });
  [admin, reader] = await Promise.all([
    obtainAdminToken(server),
    obtainAdminToken(server, { scope: 'admin:read' }),
  ]);
  const resource = await call('POST', '/resources', {
    body: {
      identifier: SENTINEL,
      name: 'Sentinel',
      scopes: ['a', 'b'],
      token_ttl: 120,
      token_format: 'opaque',
    },
  });
  expect(resource.status, shown(resource.body)).toBe(201);
  const created = await call('POST', '/clients', {
    body: {
      name: 'Sentinel client',
      grants: [{ resource: SENTINEL, scopes: ['a'] }],
      introspects: [SENTINEL],
      rate_limits: { tokens_per_minute: 100 },
    },
  });
  expect(created.status, shown(created.body)).toBe(201);
  sentinelClient = created.body.client_id as string;
  const keyed = await call('POST', '/clients', {
    body: {
      name: 'Sentinel keyed',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...EC_KEY, kid: 's1' }] },
    },
  });
  expect(keyed.status, shown(keyed.body)).toBe(201);
  sentinelKeyed = keyed.body.client_id as string;
  const keys = await call('GET', '/keys');
  signingKid =
    (keys.body.items as { kid: string; phase: string }[]).find((k) => k.phase === 'active')?.kid ?? '';
  expect(signingKid).not.toBe('');

  const plain = await server.createClient({
    name: 'outsider',
    grants: [{ resource: SENTINEL, scopes: ['a'] }],
  });
  const key = await generateDpopKey();
  const issued = await requestToken(server.url, {
    clientId: plain.client.id,
    secret: plain.clientSecret ?? '',
    resource: SENTINEL,
    key,
  });
  expect(issued.status).toBe(200);
  outsider = {
    token: issued.body.access_token as string,
    key,
    id: plain.client.id,
    secret: plain.clientSecret ?? '',
  };
});
afterAll(() => server.close());

const unique = (label: string) => `${label} ${randomBytes(4).toString('hex')}`;
const clientPath = (id: string) => `/clients/${encodeURIComponent(id)}`;
const resourcePath = (identifier: string) => `/resources/${encodeURIComponent(identifier)}`;

interface Snapshot {
  resource: unknown;
  client: unknown;
  keyed: unknown;
  keys: unknown;
  clients: number;
  resources: number;
}

/** Everything a refused request could have damaged, read back through the API. */
async function snapshot(): Promise<Snapshot> {
  const [resource, client, keyed, keys, clients, resources] = await Promise.all([
    call('GET', resourcePath(SENTINEL)),
    call('GET', clientPath(sentinelClient)),
    call('GET', clientPath(sentinelKeyed)),
    call('GET', '/keys'),
    call('GET', '/clients', { query: 'limit=200' }),
    call('GET', '/resources', { query: 'limit=200' }),
  ]);
  for (const res of [resource, client, keyed, keys, clients, resources]) expect(res.status).toBe(200);
  return {
    resource: resource.body,
    client: client.body,
    keyed: keyed.body,
    keys: keys.body,
    clients: (clients.body.items as unknown[]).length,
    resources: (resources.body.items as unknown[]).length,
  };
}

function expectRefusal(res: Response, status: number, code: string, detailPath?: string) {
  expect({ status: res.status, code: res.body.code }, shown(res.body)).toEqual({ status, code });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(typeof res.body.message).toBe('string');
  if (detailPath !== undefined) {
    expect(res.body.details).toEqual(expect.arrayContaining([expect.objectContaining({ path: detailPath })]));
  }
}

/** A case: a label, what to send (an object, or the raw JSON text), and the member the error must name. */
type Mutation = [string, Record<string, unknown> | ((name: string) => string), string];

const PKJWT = { auth_method: 'private_key_jwt' };
const tooMany = (n: number, make: (i: number) => unknown) => Array.from({ length: n }, (_, i) => make(i));

const clientCreates: Mutation[] = [
  ['name null', { name: null }, 'name'],
  ['name as an array', { name: ['a'] }, 'name'],
  ['name as an object', { name: { first: 'a' } }, 'name'],
  ['name as a boolean', { name: true }, 'name'],
  ['an empty name', { name: '' }, 'name'],
  ['a name of 10 000 characters', { name: 'n'.repeat(10_000) }, 'name'],
  ['an empty auth_method', { auth_method: '' }, 'auth_method'],
  ['auth_method in another case', { auth_method: 'Client_Secret_Basic' }, 'auth_method'],
  ['auth_method as a list', { auth_method: ['client_secret_basic'] }, 'auth_method'],
  ['auth_method client_secret_jwt (not offered)', { auth_method: 'client_secret_jwt' }, 'auth_method'],
  ['auth_method as a number', { auth_method: 1 }, 'auth_method'],
  ['jwks null', { ...PKJWT, jwks: null }, 'jwks'],
  ['jwks as a bare list of keys', { ...PKJWT, jwks: [EC_KEY] }, 'jwks'],
  ['jwks without keys', { ...PKJWT, jwks: {} }, 'jwks.keys'],
  ['jwks.keys null', { ...PKJWT, jwks: { keys: null } }, 'jwks.keys'],
  ['a null key', { ...PKJWT, jwks: { keys: [null] } }, 'jwks.keys.0'],
  ['a key that is a string', { ...PKJWT, jwks: { keys: ['key'] } }, 'jwks.keys.0'],
  ['a key without kty', { ...PKJWT, jwks: { keys: [{ ...EC_KEY, kty: undefined }] } }, 'jwks.keys.0.kty'],
  [
    'an EC point off the curve',
    { ...PKJWT, jwks: { keys: [{ ...EC_KEY, x: 'AAAA', y: 'AAAA' }] } },
    'jwks.keys.0',
  ],
  ['jwks_uri null', { ...PKJWT, jwks_uri: null }, 'jwks_uri'],
  ['jwks_uri as a number', { ...PKJWT, jwks_uri: 443 }, 'jwks_uri'],
  ['an empty jwks_uri', { ...PKJWT, jwks_uri: '' }, 'jwks_uri'],
  [
    'a jwks_uri over 2048 characters',
    { ...PKJWT, jwks_uri: `https://k.example.com/${'a'.repeat(2050)}` },
    'jwks_uri',
  ],
  ['a javascript: jwks_uri', { ...PKJWT, jwks_uri: 'javascript:alert(1)' }, 'jwks_uri'],
  ['a file: jwks_uri', { ...PKJWT, jwks_uri: 'file:///etc/passwd' }, 'jwks_uri'],
  ['grants null', { grants: null }, 'grants'],
  ['grants as a string', { grants: SENTINEL }, 'grants'],
  ['a null grant', { grants: [null] }, 'grants.0'],
  ['an empty grant', { grants: [{}] }, 'grants.0.resource'],
  ['a grant whose resource is null', { grants: [{ resource: null, scopes: ['a'] }] }, 'grants.0.resource'],
  [
    'a grant whose resource is no URI',
    { grants: [{ resource: 'sentinel', scopes: ['a'] }] },
    'grants.0.resource',
  ],
  ['grant scopes as a string', { grants: [{ resource: SENTINEL, scopes: 'a' }] }, 'grants.0.scopes'],
  ['a grant scope with a space', { grants: [{ resource: SENTINEL, scopes: ['a b'] }] }, 'grants.0.scopes.0'],
  ['a null grant scope', { grants: [{ resource: SENTINEL, scopes: [null] }] }, 'grants.0.scopes.0'],
  [
    '101 grants',
    { grants: tooMany(101, (i) => ({ resource: `https://r${i}.example.com`, scopes: ['a'] })) },
    'grants',
  ],
  ['introspects null', { introspects: null }, 'introspects'],
  ['introspects as a string', { introspects: SENTINEL }, 'introspects'],
  ['a null introspects entry', { introspects: [null] }, 'introspects.0'],
  ['an empty introspects entry', { introspects: [''] }, 'introspects.0'],
  [
    '101 introspects entries',
    { introspects: tooMany(101, (i) => `https://r${i}.example.com`) },
    'introspects',
  ],
  ['bearer_allowed null', { bearer_allowed: null }, 'bearer_allowed'],
  ['bearer_allowed 1', { bearer_allowed: 1 }, 'bearer_allowed'],
  ['bearer_allowed "false"', { bearer_allowed: 'false' }, 'bearer_allowed'],
  ['rate_limits null', { rate_limits: null }, 'rate_limits'],
  ['rate_limits as a number', { rate_limits: 100 }, 'rate_limits'],
  ['tokens_per_minute 0', { rate_limits: { tokens_per_minute: 0 } }, 'rate_limits.tokens_per_minute'],
  [
    'a negative tokens_per_minute',
    { rate_limits: { tokens_per_minute: -5 } },
    'rate_limits.tokens_per_minute',
  ],
  ['a huge tokens_per_minute', { rate_limits: { tokens_per_minute: 1e12 } }, 'rate_limits.tokens_per_minute'],
  [
    'tokens_per_minute as a string',
    { rate_limits: { tokens_per_minute: '60' } },
    'rate_limits.tokens_per_minute',
  ],
  [
    'a fractional introspections_per_minute',
    { rate_limits: { introspections_per_minute: 1.5 } },
    'rate_limits.introspections_per_minute',
  ],
  ['an unknown rate_limits member', { rate_limits: { per_hour: 5 } }, 'rate_limits'],
  ['secrets set by the caller', { secrets: [] }, ''],
  ['created_at set by the caller', { created_at: '2020-01-01T00:00:00Z' }, ''],
  ['disabled_at set by the caller', { disabled_at: null }, ''],
  [
    'a __proto__ member',
    (name) => `{"name":${JSON.stringify(name)},"__proto__":{"bearer_allowed":true}}`,
    '',
  ],
  [
    'a constructor member',
    (name) => `{"name":${JSON.stringify(name)},"constructor":{"prototype":{"bearer_allowed":true}}}`,
    '',
  ],
];

const bodyOf = (mutation: Mutation[1], name: string, base: Record<string, unknown>) =>
  typeof mutation === 'function' ? mutation(name) : JSON.stringify({ ...base, ...mutation });

describe('POST /clients with each member mutated', () => {
  let before: Snapshot;
  beforeAll(async () => {
    before = await snapshot();
  });

  it.each(clientCreates)(
    'refuses %s with 400 invalid_input and creates nothing',
    async (_case, mutation, path) => {
      const name = unique('refused');
      const res = await call('POST', '/clients', { body: bodyOf(mutation, name, { name }) });
      expectRefusal(res, 400, 'invalid_input', path);
      expect(Object.keys(res.body ?? {})).not.toContain('client_secret');
      const found = await call('GET', '/clients', { query: `name=${encodeURIComponent(name)}` });
      expect(found.body.items).toEqual([]);
    },
  );

  it('changed nothing else with any of them', async () => {
    expect(await snapshot()).toEqual(before);
  });
});

const clientUpdates: Mutation[] = [
  ['name null', { name: null }, 'name'],
  ['name as an array', { name: ['a'] }, 'name'],
  ['an empty name', { name: '' }, 'name'],
  ['a name of 10 000 characters', { name: 'n'.repeat(10_000) }, 'name'],
  ['grants as a string', { grants: SENTINEL }, 'grants'],
  ['a null grant', { grants: [null] }, 'grants.0'],
  ['an empty grant', { grants: [{}] }, 'grants.0.resource'],
  ['a grant scope with a space', { grants: [{ resource: SENTINEL, scopes: ['a b'] }] }, 'grants.0.scopes.0'],
  ['introspects null', { introspects: null }, 'introspects'],
  ['introspects as a string', { introspects: SENTINEL }, 'introspects'],
  ['a null introspects entry', { introspects: [null] }, 'introspects.0'],
  ['bearer_allowed 1', { bearer_allowed: 1 }, 'bearer_allowed'],
  ['rate_limits null', { rate_limits: null }, 'rate_limits'],
  ['tokens_per_minute 0', { rate_limits: { tokens_per_minute: 0 } }, 'rate_limits.tokens_per_minute'],
  [
    'tokens_per_minute as a string',
    { rate_limits: { tokens_per_minute: '60' } },
    'rate_limits.tokens_per_minute',
  ],
  ['an unknown rate_limits member', { rate_limits: { per_hour: 5 } }, 'rate_limits'],
  ['a change of auth_method', { auth_method: 'private_key_jwt' }, ''],
  ['a change of client_id', { client_id: 'mine' }, ''],
  ['a change of status', { status: 'disabled' }, ''],
  ['secrets set by the caller', { secrets: [] }, ''],
  ['a __proto__ member', () => '{"name":"x","__proto__":{"bearer_allowed":true}}', ''],
  ['a valid change beside an unknown member', { name: 'hijacked', colour: 'blue' }, ''],
];

describe('PATCH /clients/{client_id} with each member mutated', () => {
  let before: Snapshot;
  beforeAll(async () => {
    before = await snapshot();
  });
  afterAll(async () => {
    // Checked here too: a refusal must not have touched any other object.
    expect(await snapshot()).toEqual(before);
  });

  it.each(clientUpdates)(
    'refuses %s with 400 invalid_input and changes nothing',
    async (_case, mutation, path) => {
      const before = await call('GET', clientPath(sentinelClient));
      const res = await call('PATCH', clientPath(sentinelClient), { body: bodyOf(mutation, 'x', {}) });
      expectRefusal(res, 400, 'invalid_input', path);
      expect((await call('GET', clientPath(sentinelClient))).body).toEqual(before.body);
    },
  );

  it('refuses jwks and jwks_uri changes that are not keys, on a private_key_jwt client, and changes nothing', async () => {
    const before = await call('GET', clientPath(sentinelKeyed));
    for (const [body, path] of [
      [{ jwks: { keys: [null] } }, 'jwks.keys.0'],
      [{ jwks: [EC_KEY] }, 'jwks'],
      [{ jwks_uri: 'javascript:alert(1)' }, 'jwks_uri'],
      [{ jwks_uri: 42 }, 'jwks_uri'],
    ] as const) {
      expectRefusal(await call('PATCH', clientPath(sentinelKeyed), { body }), 400, 'invalid_input', path);
    }
    expect((await call('GET', clientPath(sentinelKeyed))).body).toEqual(before.body);
  });
});

const resourceCreates: Mutation[] = [
  ['identifier null', { identifier: null }, 'identifier'],
  ['identifier as a list', { identifier: [SENTINEL] }, 'identifier'],
  ['identifier as an object', { identifier: { href: SENTINEL } }, 'identifier'],
  ['an identifier without scheme', { identifier: 'api.example.com' }, 'identifier'],
  ['an identifier with an empty host', { identifier: 'https://' }, 'identifier'],
  ['scopes null', { scopes: null }, 'scopes'],
  ['scopes as an object', { scopes: { a: true } }, 'scopes'],
  ['a null scope', { scopes: [null] }, 'scopes.0'],
  ['name null (only an update may clear it)', { name: null }, 'name'],
  ['name as a list', { name: ['a'] }, 'name'],
  ['token_format null', { token_format: null }, 'token_format'],
  ['an empty token_format', { token_format: '' }, 'token_format'],
  ['token_ttl as a boolean', { token_ttl: true }, 'token_ttl'],
  ['a token_ttl of -2^53', { token_ttl: -9007199254740992 }, 'token_ttl'],
  ['created_at set by the caller', { created_at: '2020-01-01T00:00:00Z' }, ''],
  [
    'a __proto__ member',
    (id) => `{"identifier":${JSON.stringify(id)},"scopes":["a"],"__proto__":{"reserved":true}}`,
    '',
  ],
];

describe('POST /resources with each member mutated', () => {
  let before: Snapshot;
  beforeAll(async () => {
    before = await snapshot();
  });
  afterAll(async () => {
    // Checked here too: a refusal must not have touched any other object.
    expect(await snapshot()).toEqual(before);
  });

  it.each(resourceCreates)(
    'refuses %s with 400 invalid_input and creates nothing',
    async (_case, mutation, path) => {
      const identifier = `https://${randomBytes(4).toString('hex')}.refused.example.com`;
      const res = await call('POST', '/resources', {
        body: bodyOf(mutation, identifier, { identifier, scopes: ['a'] }),
      });
      expectRefusal(res, 400, 'invalid_input', path);
      expectRefusal(await call('GET', resourcePath(identifier)), 404, 'resource_not_found');
    },
  );
});

describe('resource identifiers that are not URIs', () => {
  // RFC 8707 §2: a resource is "an absolute URI, as specified by Section 4.3 of RFC 3986"; RFC 3986 §2 allows
  // neither < > " { } | \ ^ ` nor a % that is not followed by two hex digits.
  it('refuses an identifier with characters RFC 3986 does not allow in a URI', async () => {
    const identifiers = [
      'https://x.example.com/<script>alert(1)</script>',
      'https://x.example.com/a"b',
      'https://x.example.com/{a}',
      'https://x.example.com/a|b',
      'https://x.example.com/a\\b',
      'https://x.example.com/a^b',
      'https://x.example.com/`a`',
      'https://x.example.com/%zz',
    ];
    const answers: string[] = [];
    for (const identifier of identifiers) {
      const res = await call('POST', '/resources', { body: { identifier, scopes: ['a'] } });
      answers.push(`${identifier} → ${res.status} ${String(res.body.code ?? '')}`);
    }
    expect(answers).toEqual(identifiers.map((identifier) => `${identifier} → 400 invalid_input`));
  });
});

const resourceUpdates: Mutation[] = [
  ['scopes as an object', { scopes: { a: true } }, 'scopes'],
  ['a null scope', { scopes: [null, 'b'] }, 'scopes.0'],
  ['an empty token_format', { token_format: '' }, 'token_format'],
  ['token_format as a number', { token_format: 1 }, 'token_format'],
  ['token_ttl as a boolean', { token_ttl: true }, 'token_ttl'],
  ['token_ttl as an object', { token_ttl: { seconds: 60 } }, 'token_ttl'],
  ['name as a list', { name: ['a'] }, 'name'],
  ['a name of 201 characters', { name: 'n'.repeat(201) }, 'name'],
  ['created_at set by the caller', { created_at: '2020-01-01T00:00:00Z' }, ''],
  ['a __proto__ member', () => '{"name":"x","__proto__":{"reserved":true}}', ''],
  ['a valid change beside an unknown member', { token_ttl: 60, colour: 'blue' }, ''],
];

describe('PATCH /resources/{resource} with each member mutated', () => {
  let before: Snapshot;
  beforeAll(async () => {
    before = await snapshot();
  });
  afterAll(async () => {
    // Checked here too: a refusal must not have touched any other object.
    expect(await snapshot()).toEqual(before);
  });

  it.each(resourceUpdates)(
    'refuses %s with 400 invalid_input and changes nothing',
    async (_case, mutation, path) => {
      const before = await call('GET', resourcePath(SENTINEL));
      const res = await call('PATCH', resourcePath(SENTINEL), { body: bodyOf(mutation, 'x', {}) });
      expectRefusal(res, 400, 'invalid_input', path);
      expect((await call('GET', resourcePath(SENTINEL))).body).toEqual(before.body);
    },
  );
});

describe('bodies that are not the JSON asked for', () => {
  const targets: [string, Method, () => string][] = [
    ['POST /clients', 'POST', () => '/clients'],
    ['PATCH /clients/{id}', 'PATCH', () => clientPath(sentinelClient)],
    ['POST /clients/{id}/secrets', 'POST', () => `${clientPath(sentinelClient)}/secrets`],
    ['POST /resources', 'POST', () => '/resources'],
    ['PATCH /resources/{id}', 'PATCH', () => resourcePath(SENTINEL)],
    ['POST /keys/rotate', 'POST', () => '/keys/rotate'],
  ];

  it.each(targets)(
    '%s refuses malformed JSON with 400 invalid_json and changes nothing',
    async (_l, method, path) => {
      const before = await snapshot();
      for (const text of [
        '{"name": "x",}',
        "{'name': 'x'}",
        '{"name": NaN}',
        '{"name": "x"} // comment',
        '{"name": "x"}{"name": "y"}',
        '\u{FEFF}{"name": "x"}', // RFC 8259 §8.1: a parser MAY ignore a BOM; refusing it is as valid.
        '{"name": "\\x41"}',
      ]) {
        expectRefusal(await call(method, path(), { body: text }), 400, 'invalid_json');
      }
      expect(await snapshot()).toEqual(before);
    },
  );

  it.each(targets)(
    '%s refuses another media type with 415 unsupported_media_type and changes nothing',
    async (_l, method, path) => {
      const before = await snapshot();
      for (const contentType of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json-patch+json',
        'application/jsonx',
      ]) {
        expectRefusal(
          await call(method, path(), { body: '{"name":"x"}', contentType }),
          415,
          'unsupported_media_type',
        );
      }
      expect(await snapshot()).toEqual(before);
    },
  );

  // RFC 8259 §9: "An implementation may set limits on the maximum depth of nesting"; whatever the limit, the
  // answer is a client error, never a server error.
  it('refuses deeply nested JSON with 400 at every operation, never a server error, and changes nothing', async () => {
    const before = await snapshot();
    const answers: string[] = [];
    for (const [label, method, path] of targets) {
      for (const text of [
        `{"name":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
        `{"name":"x","scopes":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`,
      ]) {
        const res = await call(method, path(), { body: text });
        // Refused by a depth limit (invalid_json) or by the schema (invalid_input): either is a stable code.
        const refused =
          res.status === 400 && ['invalid_input', 'invalid_json'].includes(res.body.code as string);
        answers.push(`${label}: ${refused ? 'refused' : `${res.status} ${shown(res.body)}`}`);
      }
    }
    expect(answers).toEqual(targets.flatMap(([label]) => [`${label}: refused`, `${label}: refused`]));
    expect(await snapshot()).toEqual(before);
  });

  it('refuses text that cannot be stored as sent: unpaired UTF-16 surrogates (RFC 8259 §8.2), like NUL', async () => {
    const before = await snapshot();
    const name = unique('surrogate');
    for (const [path, text] of [
      ['/clients', `{"name":"${name} \\ud800"}`],
      ['/resources', `{"identifier":"https://s.example.com","scopes":["a"],"name":"\\udfff ${name}"}`],
      [clientPath(sentinelClient), '{"name":"\\ud83d"}'],
    ] as const) {
      const res = await call(path.startsWith('/clients/') ? 'PATCH' : 'POST', path, { body: text });
      expectRefusal(res, 400, 'invalid_input');
    }
    expect(await snapshot()).toEqual(before);
  });
});

describe('text that looks like an attack is data, stored and answered verbatim', () => {
  it('stores names and scopes holding SQL, markup and shell syntax exactly, and changes nothing else', async () => {
    const before = await snapshot();
    const name = `x'); DROP TABLE client; -- <script>alert(1)</script> $(rm -rf /) ${randomUUID()}`;
    const created = await call('POST', '/clients', { body: { name } });
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toMatch(/^application\/json/);
    expect((await call('GET', clientPath(created.body.client_id as string))).body.name).toBe(name);
    // RFC 6749 §3.3: ' ( ) ; are scope-token characters.
    const identifier = `https://inj-${randomBytes(4).toString('hex')}.example.com/';--`;
    const resource = await call('POST', '/resources', { body: { identifier, scopes: ["read');DROP"] } });
    expect(resource.status, shown(resource.body)).toBe(201);
    expect((await call('GET', resourcePath(identifier))).body).toMatchObject({
      identifier,
      scopes: ["read');DROP"],
    });
    const after = await snapshot();
    expect({ ...after, clients: after.clients - 1, resources: after.resources - 1 }).toEqual(before);
  });

  it.each([
    ["' OR '1'='1", 404, 'client_not_found'],
    ['1; DELETE FROM client', 404, 'client_not_found'],
    ['%', 404, 'client_not_found'],
  ])('treats the client id %j literally (%i %s)', async (id, status, code) => {
    const before = await snapshot();
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const res = await call(method, clientPath(id), method === 'PATCH' ? { body: { name: 'x' } } : {});
      expectRefusal(res, status, code);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('treats filters literally: a name filter that reads as SQL matches no client', async () => {
    for (const name of ["%' OR 1=1 --", "' OR ''='", '*']) {
      const res = await call('GET', '/clients', { query: `name=${encodeURIComponent(name)}` });
      expect(res.status).toBe(200);
      expect(res.body.items).toEqual([]);
    }
  });
});

describe('keys: refused operations rotate and revoke nothing', () => {
  it.each<[string, string, number, string]>([
    ['immediate as a string', '{"immediate":"yes"}', 400, 'invalid_input'],
    ['immediate null', '{"immediate":null}', 400, 'invalid_input'],
    ['immediate as a number', '{"immediate":1}', 400, 'invalid_input'],
    ['an unknown member', '{"immediate":true,"alg":"HS256"}', 400, 'invalid_input'],
    ['a JSON array', '[true]', 400, 'invalid_input'],
    ['a JSON string', '"now"', 400, 'invalid_input'],
  ])('POST /keys/rotate with %s: %i %s', async (_case, body, status, code) => {
    const before = await call('GET', '/keys');
    expectRefusal(await call('POST', '/keys/rotate', { body }), status, code);
    expect((await call('GET', '/keys')).body).toEqual(before.body);
  });

  it('answers an unknown kid with 404 key_not_found and an overlong one with 400 invalid_input', async () => {
    const before = await call('GET', '/keys');
    expectRefusal(await call('POST', '/keys/no-such-kid/revoke'), 404, 'key_not_found');
    expectRefusal(await call('POST', `/keys/${signingKid.toLowerCase()}x/revoke`), 404, 'key_not_found');
    expectRefusal(await call('POST', `/keys/${'k'.repeat(256)}/revoke`), 400, 'invalid_input', 'kid');
    expect((await call('GET', '/keys')).body).toEqual(before.body);
  });
});

describe('unknown ids', () => {
  it('answers unknown resources, however spelled, with 404 resource_not_found', async () => {
    for (const ref of [
      randomUUID(),
      'r'.repeat(3_000),
      `${SENTINEL}/`,
      SENTINEL.toUpperCase(),
      'resources',
    ]) {
      expectRefusal(await call('GET', resourcePath(ref)), 404, 'resource_not_found');
      expectRefusal(
        await call('PATCH', resourcePath(ref), { body: { name: 'x' } }),
        404,
        'resource_not_found',
      );
      expectRefusal(await call('DELETE', resourcePath(ref)), 404, 'resource_not_found');
    }
  });

  it('answers a client id of exactly 255 characters that does not exist with 404 client_not_found', async () => {
    expectRefusal(await call('GET', clientPath('c'.repeat(255))), 404, 'client_not_found');
    expectRefusal(await call('POST', `${clientPath('c'.repeat(255))}/secrets`), 404, 'client_not_found');
  });
});

describe('credentials that must not administer anything', () => {
  const operations: [Method, () => string, unknown?][] = [
    ['POST', () => '/clients', { name: 'intruder' }],
    ['PATCH', () => clientPath(sentinelClient), { name: 'hijacked', bearer_allowed: true }],
    ['POST', () => `${clientPath(sentinelClient)}/disable`],
    ['POST', () => `${clientPath(sentinelClient)}/secrets`, { previous_secret_expires_in: 0 }],
    ['DELETE', () => clientPath(sentinelClient)],
    ['POST', () => '/resources', { identifier: 'https://intruder.example.com', scopes: ['a'] }],
    ['PATCH', () => resourcePath(SENTINEL), { scopes: ['x'] }],
    ['DELETE', () => resourcePath(SENTINEL)],
    ['POST', () => '/keys/rotate', { immediate: true }],
    ['POST', () => `/keys/${encodeURIComponent(signingKid)}/revoke`],
  ];

  /** A JWT access token for the admin audience that this server did not sign, bound to the admin key. */
  async function forged(alg: 'none' | 'ES256'): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: server.url,
      aud: `${server.url}/admin`,
      client_id: (await readAdminCredentials(server)).client_id,
      sub: (await readAdminCredentials(server)).client_id,
      scope: 'admin:read admin:write',
      cnf: { jkt: admin.key.thumbprint },
      jti: randomUUID(),
      iat: now,
      exp: now + 300,
    };
    if (alg === 'none') {
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      return `${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(claims)}.`;
    }
    // Signed with the admin client's own private key: a client cannot mint its own access tokens.
    const credentials = await readAdminCredentials(server);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: credentials.private_jwk.kid ?? 'k' })
      .sign(await importJWK(credentials.private_jwk, 'ES256'));
  }

  type Attempt = (method: Method, path: string, body: unknown) => Promise<Response>;
  const withBody = (body: unknown): AdminCallOptions => (body === undefined ? {} : { body });

  const credentials: [string, number, string, () => Promise<Attempt> | Attempt][] = [
    [
      'no Authorization header',
      401,
      'token_required',
      () => (m, p, b) => call(m, p, { ...withBody(b), authorization: null, proof: null }),
    ],
    [
      'the admin token under the Bearer scheme',
      401,
      'invalid_token',
      () => (m, p, b) => call(m, p, { ...withBody(b), authorization: `Bearer ${admin.token}`, proof: null }),
    ],
    [
      'a token that is not a JWT',
      401,
      'invalid_token',
      () => (m, p, b) => call(m, p, withBody(b), { token: 'opaque-guess', key: admin.key }),
    ],
    [
      'an unsigned token (alg none)',
      401,
      'invalid_token',
      async () => {
        const token = await forged('none');
        return (m, p, b) => call(m, p, withBody(b), { token, key: admin.key });
      },
    ],
    [
      'a token the admin client signed itself',
      401,
      'invalid_token',
      async () => {
        const token = await forged('ES256');
        return (m, p, b) => call(m, p, withBody(b), { token, key: admin.key });
      },
    ],
    [
      'a token of a client that is no admin (another audience)',
      401,
      'invalid_token',
      () => (m, p, b) => call(m, p, withBody(b), outsider),
    ],
    [
      'the admin token with a proof by another key',
      401,
      'invalid_dpop_proof',
      async () => {
        const thief = await generateDpopKey();
        return (m, p, b) => call(m, p, withBody(b), { token: admin.token, key: thief });
      },
    ],
    [
      'the admin token without a proof',
      401,
      'invalid_dpop_proof',
      () => (m, p, b) => call(m, p, { ...withBody(b), proof: null }),
    ],
    [
      'a read-only admin token',
      403,
      'insufficient_scope',
      () => (m, p, b) => call(m, p, withBody(b), reader),
    ],
  ];

  it.each(credentials)(
    'refuses every change made with %s (%i %s) and changes nothing',
    async (_case, status, code, prepare) => {
      const before = await snapshot();
      const attempt = await prepare();
      for (const [method, path, body] of operations) {
        const res = await attempt(method, path(), body);
        expect({ operation: `${method} ${path()}`, status: res.status, code: res.body.code }).toEqual({
          operation: `${method} ${path()}`,
          status,
          code,
        });
        expect(res.headers['www-authenticate']).toMatch(/^DPoP /);
      }
      expect(await snapshot()).toEqual(before);
    },
  );

  it('refuses every change made with an expired admin token (401 invalid_token) and changes nothing', async () => {
    const before = await snapshot();
    clock.offsetMs = 320_000;
    try {
      for (const [method, path, body] of operations) {
        const res = await call(method, path(), {
          ...withBody(body),
          proofOptions: { claims: { iat: Math.floor(clock.now().getTime() / 1000) } },
        });
        expectRefusal(res, 401, 'invalid_token');
        expect(res.body.message).toMatch(/expired/);
      }
    } finally {
      clock.offsetMs = 0;
    }
    expect(await snapshot()).toEqual(before);
  });

  it('gives a client that is no admin no token for the admin API (RFC 8707 §2 invalid_target)', async () => {
    const res = await requestToken(server.url, {
      clientId: outsider.id,
      secret: outsider.secret,
      resource: `${server.url}/admin`,
      scope: 'admin:write',
      key: outsider.key,
    });
    statuses.push(res.status);
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_target' });
    expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  });

  it('accepts the DPoP scheme name in any case (RFC 9110 §11.1), control for the cases above', async () => {
    const res = await call('GET', '/clients', { authorization: `dpop ${admin.token}`, query: 'limit=1' });
    expect(res.status).toBe(200);
  });

  it('refuses a proof whose ath is for the forged token while the real token is presented', async () => {
    const proof = await createProof(admin.key, {
      htm: 'PATCH',
      htu: `${server.url}/admin/v1${clientPath(sentinelClient)}`,
      ath: accessTokenHash(await forged('none')),
    });
    const res = await call('PATCH', clientPath(sentinelClient), { body: { name: 'hijacked' }, proof });
    expectRefusal(res, 401, 'invalid_dpop_proof');
    expect((await call('GET', clientPath(sentinelClient))).body.name).toBe('Sentinel client');
  });
});

describe('client keys that can never verify a signature', () => {
  // RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms" (RS256, PS256 …).
  // Refused at registration, as Mayfly does for every unusable key, rather than at the first token request.
  it('refuses RSA public keys shorter than 2048 bits with 400 invalid_input and creates nothing', async () => {
    const before = await snapshot();
    const lengths = [512, 1024, 2047];
    const answers: string[] = [];
    for (const modulusLength of lengths) {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength });
      const name = unique(`rsa${modulusLength}`);
      const res = await call('POST', '/clients', {
        body: { name, auth_method: 'private_key_jwt', jwks: { keys: [publicKey.export({ format: 'jwk' })] } },
      });
      answers.push(`${modulusLength} bits → ${res.status} ${String(res.body.code ?? '')}`);
    }
    expect(answers).toEqual(lengths.map((length) => `${length} bits → 400 invalid_input`));
    expect(await snapshot()).toEqual(before);
  });
});

describe('the whole battery', () => {
  it('answered no request with a server error and logged none', () => {
    expect(statuses.filter((status) => status >= 500)).toEqual([]);
    expect(server.logs.records().filter((r) => typeof r.level === 'number' && r.level >= 50)).toEqual([]);
  });
});
