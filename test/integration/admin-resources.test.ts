import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  accessTokenHash,
  ADMIN_PREFIX,
  adminCall,
  obtainAdminToken,
  type AdminToken,
} from '../support/admin.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The admin API's resource operations, over HTTP as any admin tool would call them. */

const MAX_BODY = 64 * 1024;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let server: TestServer;
let admin: AdminToken;
let dpopKey: DpopKey;

beforeAll(async () => {
  server = await startTestServer();
  admin = await obtainAdminToken(server);
  dpopKey = await generateDpopKey();
});
afterAll(() => server.close());

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT';
const call = (method: Method, path: string, options: Parameters<typeof adminCall>[4] = {}) =>
  adminCall(server, admin, method, path, options);

/** A fresh identifier per test, so that tests sharing the server never see each other's resources. */
const unique = (label: string) => `https://${label}-${randomBytes(4).toString('hex')}.example.com`;
const ref = (identifier: string) => `/resources/${encodeURIComponent(identifier)}`;

interface ResourceView {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  token_ttl: number;
  token_format: string;
  reserved: boolean;
  created_at: string;
  updated_at: string;
}

async function createResource(body: Record<string, unknown>): Promise<ResourceView> {
  const res = await call('POST', '/resources', { body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as ResourceView;
}

async function show(identifier: string) {
  return call('GET', ref(identifier));
}

/** Every resource, through every page. */
async function listAll(): Promise<{ identifier: string }[]> {
  const items: { identifier: string }[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? 'limit=200' : `limit=200&cursor=${encodeURIComponent(cursor)}`;
    const res = await call('GET', '/resources', { query });
    expect(res.status).toBe(200);
    items.push(...(res.body.items as { identifier: string }[]));
    cursor = res.body.next_cursor as string | null;
  } while (cursor !== null);
  return items;
}

async function createClient(body: Record<string, unknown>) {
  const res = await call('POST', '/clients', { body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { client_id: string; client_secret: string };
}

function expectRefusal(
  res: { status: number; body: { code?: string; details?: unknown } },
  status: number,
  code: string,
) {
  expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
  expect(typeof (res.body as { message?: unknown }).message).toBe('string');
}

function expectDetail(res: { body: { details?: unknown } }, path: string, message?: RegExp) {
  expect(res.body.details).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ path, ...(message ? { message: expect.stringMatching(message) } : {}) }),
    ]),
  );
}

/** A request with a body sent in chunks and no Content-Length, so the size is only known while reading. */
async function chunkedCall(method: Method, path: string, chunks: string[]) {
  const url = new URL(`${ADMIN_PREFIX}${path}`, server.url);
  const proof = await createProof(admin.key, {
    htm: method,
    htu: url.href,
    ath: accessTokenHash(admin.token),
  });
  return new Promise<{ status: number; body: { code?: string } }>((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      url,
      {
        method,
        headers: {
          authorization: `DPoP ${admin.token}`,
          dpop: proof,
          'content-type': 'application/json',
          'transfer-encoding': 'chunked',
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          answered = true;
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string } });
        });
      },
    );
    // The server may answer and close before the whole body is written; only a failure before any answer counts.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

describe('POST /resources', () => {
  it('creates a resource with the documented defaults: a 300 s JWT resource without a name', async () => {
    const identifier = unique('defaults');
    const res = await call('POST', '/resources', { body: { identifier, scopes: ['orders:read'] } });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({
      id: expect.stringMatching(UUID),
      identifier,
      name: null,
      scopes: ['orders:read'],
      token_ttl: 300,
      token_format: 'jwt',
      managed_by: null,
      reserved: false,
      created_at: expect.stringMatching(ISO),
      updated_at: expect.stringMatching(ISO),
    });
    const shown = await call('GET', `/resources/${res.body.id as string}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual(res.body);
  });

  it('stores every given field: name (trimmed), scopes in order, token_ttl up to the maximum, opaque format', async () => {
    const identifier = unique('full');
    const body = await createResource({
      identifier,
      name: '  Orders API  ',
      scopes: ['write', 'read', 'admin:*'],
      token_ttl: 900,
      token_format: 'opaque',
    });
    expect(body).toMatchObject({
      identifier,
      name: 'Orders API',
      scopes: ['write', 'read', 'admin:*'],
      token_ttl: 900,
      token_format: 'opaque',
      reserved: false,
    });
    expect((await show(identifier)).body).toEqual(body);
  });

  it('accepts any absolute URI as identifier, with a path and a query, and shows it by its encoded form', async () => {
    const identifier = `${unique('path')}/orders/v2?tenant=a&b=c%20d`;
    const body = await createResource({ identifier, scopes: ['a'] });
    expect(body.identifier).toBe(identifier);
    const shown = await show(identifier);
    expect(shown.status).toBe(200);
    expect(shown.body.id).toBe(body.id);
    const urn = `urn:example:${randomUUID()}`;
    expect((await createResource({ identifier: urn, scopes: ['a'] })).identifier).toBe(urn);
    expect((await show(urn)).body.identifier).toBe(urn);
  });

  type Body = (identifier: string) => unknown;
  const invalidCreates: [string, Body, string, RegExp?][] = [
    ['no identifier', () => ({ scopes: ['a'] }), 'identifier'],
    ['an empty identifier', () => ({ identifier: '', scopes: ['a'] }), 'identifier'],
    ['a relative identifier', () => ({ identifier: '/orders', scopes: ['a'] }), 'identifier', /absolute URI/],
    ['an identifier that is no URI', () => ({ identifier: 'orders api', scopes: ['a'] }), 'identifier'],
    ['an identifier with a fragment', (id) => ({ identifier: `${id}/#part`, scopes: ['a'] }), 'identifier'],
    ['an identifier with an empty fragment', (id) => ({ identifier: `${id}#`, scopes: ['a'] }), 'identifier'],
    [
      'an identifier over 2048 characters',
      (id) => ({ identifier: `${id}/${'x'.repeat(2048)}`, scopes: ['a'] }),
      'identifier',
    ],
    ['a numeric identifier', () => ({ identifier: 42, scopes: ['a'] }), 'identifier'],
    ['an identifier with a space', (id) => ({ identifier: `${id}/a b`, scopes: ['a'] }), 'identifier'],
    [
      'an identifier with leading whitespace',
      (id) => ({ identifier: ` ${id}`, scopes: ['a'] }),
      'identifier',
    ],
    ['an identifier with a line break', (id) => ({ identifier: `${id}/\n`, scopes: ['a'] }), 'identifier'],
    ['an identifier with a NUL character', (id) => ({ identifier: `${id}/\u0000`, scopes: ['a'] }), 'body'],
    ['no scopes', (id) => ({ identifier: id }), 'scopes'],
    ['empty scopes', (id) => ({ identifier: id, scopes: [] }), 'scopes', /at least one scope/],
    ['repeated scopes', (id) => ({ identifier: id, scopes: ['a', 'b', 'a'] }), 'scopes', /repeat/],
    ['a scope with a space', (id) => ({ identifier: id, scopes: ['a b'] }), 'scopes.0'],
    ['an empty scope', (id) => ({ identifier: id, scopes: ['a', ''] }), 'scopes.1'],
    ['a scope with a double quote', (id) => ({ identifier: id, scopes: ['a"b'] }), 'scopes.0'],
    ['a scope with a backslash', (id) => ({ identifier: id, scopes: ['a\\b'] }), 'scopes.0'],
    ['a scope with a non-ASCII letter', (id) => ({ identifier: id, scopes: ['lecture:é'] }), 'scopes.0'],
    ['a scope of 129 characters', (id) => ({ identifier: id, scopes: ['s'.repeat(129)] }), 'scopes.0'],
    [
      '101 scopes',
      (id) => ({ identifier: id, scopes: Array.from({ length: 101 }, (_, i) => `s${i}`) }),
      'scopes',
    ],
    ['scopes as a string', (id) => ({ identifier: id, scopes: 'a b' }), 'scopes'],
    ['a numeric scope', (id) => ({ identifier: id, scopes: [1] }), 'scopes.0'],
    ['token_ttl 0', (id) => ({ identifier: id, scopes: ['a'], token_ttl: 0 }), 'token_ttl'],
    ['a negative token_ttl', (id) => ({ identifier: id, scopes: ['a'], token_ttl: -60 }), 'token_ttl'],
    ['a fractional token_ttl', (id) => ({ identifier: id, scopes: ['a'], token_ttl: 30.5 }), 'token_ttl'],
    [
      'token_ttl above MAYFLY_MAX_TOKEN_TTL',
      (id) => ({ identifier: id, scopes: ['a'], token_ttl: 901 }),
      'token_ttl',
      /900/,
    ],
    ['a huge token_ttl', (id) => ({ identifier: id, scopes: ['a'], token_ttl: 1e308 }), 'token_ttl'],
    ['token_ttl as a string', (id) => ({ identifier: id, scopes: ['a'], token_ttl: '300' }), 'token_ttl'],
    ['token_ttl null', (id) => ({ identifier: id, scopes: ['a'], token_ttl: null }), 'token_ttl'],
    [
      'an unknown token_format',
      (id) => ({ identifier: id, scopes: ['a'], token_format: 'paseto' }),
      'token_format',
    ],
    [
      'token_format in capitals',
      (id) => ({ identifier: id, scopes: ['a'], token_format: 'JWT' }),
      'token_format',
    ],
    ['an empty name', (id) => ({ identifier: id, scopes: ['a'], name: '' }), 'name'],
    ['a blank name', (id) => ({ identifier: id, scopes: ['a'], name: '   ' }), 'name'],
    [
      'a name over 200 characters',
      (id) => ({ identifier: id, scopes: ['a'], name: 'n'.repeat(201) }),
      'name',
    ],
    ['a numeric name', (id) => ({ identifier: id, scopes: ['a'], name: 5 }), 'name'],
    ['a name with a NUL character', (id) => ({ identifier: id, scopes: ['a'], name: 'a\u0000b' }), 'body'],
    ['an unknown member', (id) => ({ identifier: id, scopes: ['a'], colour: 'blue' }), '', /colour/],
    [
      'reserved set by the caller',
      (id) => ({ identifier: id, scopes: ['a'], reserved: true }),
      '',
      /reserved/,
    ],
    ['an id set by the caller', (id) => ({ identifier: id, scopes: ['a'], id: randomUUID() }), '', /id/],
    ['a JSON array', () => [], ''],
    ['a JSON string', () => 'https://api.example.com', ''],
  ];

  it.each(invalidCreates)(
    'refuses %s with 400 invalid_input and creates nothing',
    async (_case, body, path, message) => {
      const identifier = unique('invalid');
      const before = await listAll();
      const res = await call('POST', '/resources', { body: JSON.stringify(body(identifier)) });
      expectRefusal(res, 400, 'invalid_input');
      expectDetail(res, path, message);
      expect(await listAll()).toEqual(before);
    },
  );

  it('refuses a JSON null body as invalid input', async () => {
    const res = await call('POST', '/resources', { body: 'null' });
    expectRefusal(res, 400, 'invalid_input');
  });

  it('refuses malformed JSON with 400 invalid_json and creates nothing', async () => {
    const identifier = unique('malformed');
    const before = await listAll();
    for (const text of [
      `{"identifier": "${identifier}", "scopes": ["a"]`,
      "{'identifier': 1}",
      '{"a":1}x',
      '',
    ]) {
      const res = await call('POST', '/resources', { body: text === '' ? ' ' : text });
      expectRefusal(res, 400, 'invalid_json');
    }
    expect(await listAll()).toEqual(before);
    expect((await show(identifier)).status).toBe(404);
  });

  it('refuses a body that is not application/json with 415 and creates nothing', async () => {
    const identifier = unique('media');
    const json = JSON.stringify({ identifier, scopes: ['a'] });
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await call('POST', '/resources', { body: json, contentType });
      expectRefusal(res, 415, 'unsupported_media_type');
    }
    expect((await show(identifier)).status).toBe(404);
    // A charset parameter is still JSON.
    const ok = await call('POST', '/resources', {
      body: json,
      contentType: 'application/json; charset=utf-8',
    });
    expect(ok.status).toBe(201);
  });

  it('refuses a request without a body', async () => {
    const res = await call('POST', '/resources');
    expectRefusal(res, 400, 'invalid_input');
  });

  it('reads a body of exactly 64 KiB and refuses one byte more with 413 payload_too_large', async () => {
    const identifier = unique('size');
    const padded = (size: number) => {
      const head = JSON.stringify({ identifier, scopes: ['a'], pad: '' });
      return head.replace('"pad":""', `"pad":"${'x'.repeat(size - head.length)}"`);
    };
    expect(Buffer.byteLength(padded(MAX_BODY))).toBe(MAX_BODY);
    const atLimit = await call('POST', '/resources', { body: padded(MAX_BODY) });
    // Read and parsed: refused for its unknown member, not for its size.
    expectRefusal(atLimit, 400, 'invalid_input');
    expectDetail(atLimit, '', /pad/);
    const over = await call('POST', '/resources', { body: padded(MAX_BODY + 1) });
    expectRefusal(over, 413, 'payload_too_large');
    const large = await call('POST', '/resources', {
      body: { identifier, scopes: ['a'], name: 'n'.repeat(200), pad: 'x'.repeat(200_000) },
    });
    expectRefusal(large, 413, 'payload_too_large');
    expect((await show(identifier)).status).toBe(404);
  });

  it('refuses a chunked body over 64 KiB (no Content-Length) with 413 and creates nothing', async () => {
    const identifier = unique('chunked');
    const body = JSON.stringify({ identifier, scopes: ['a'], name: 'x', pad: 'y'.repeat(80_000) });
    const chunks = body.match(/[\s\S]{1,8192}/g) ?? [];
    const errorsBefore = server.logs.records().filter((r) => r.level === 'error').length;
    const res = await chunkedCall('POST', '/resources', chunks);
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('payload_too_large');
    expect((await show(identifier)).status).toBe(404);
    // Refused like any other request: one admin_request failure line, no internal error.
    expect(server.logs.records().filter((r) => r.level === 'error')).toHaveLength(errorsBefore);
    expect(server.logs.audit('admin_request').at(-2)).toMatchObject({
      outcome: 'failure',
      status: 413,
      error: 'payload_too_large',
    });
    // A small chunked body is read normally.
    const small = await chunkedCall('POST', '/resources', [
      `{"identifier":"${identifier}",`,
      '"scopes":["a"]}',
    ]);
    expect(small.status).toBe(201);
  });

  it('refuses a second resource with the same identifier with 409 resource_exists and keeps the first', async () => {
    const identifier = unique('dup');
    const first = await createResource({ identifier, scopes: ['a'], name: 'first' });
    const res = await call('POST', '/resources', {
      body: { identifier, scopes: ['b'], name: 'second', token_ttl: 60, token_format: 'opaque' },
    });
    expectRefusal(res, 409, 'resource_exists');
    expect(res.body.message).toContain(identifier);
    expect((await show(identifier)).body).toEqual(first);
    expect((await listAll()).filter((r) => r.identifier === identifier)).toHaveLength(1);
  });

  it('refuses a second admin resource', async () => {
    const res = await call('POST', '/resources', {
      body: { identifier: `${server.url}/admin`, scopes: ['x'] },
    });
    expectRefusal(res, 409, 'resource_exists');
  });
});

describe('GET /resources', () => {
  it('answers the page envelope, with the reserved admin resource among the items', async () => {
    const res = await call('GET', '/resources');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['items', 'next_cursor']);
    expect(Array.isArray(res.body.items)).toBe(true);
    const adminResource = (res.body.items as { identifier: string }[]).find(
      (r) => r.identifier === `${server.url}/admin`,
    );
    expect(adminResource).toMatchObject({
      reserved: true,
      scopes: ['admin:read', 'admin:write'],
      token_format: 'jwt',
    });
  });

  it('lists in identifier order and pages with limit and next_cursor until null', async () => {
    const prefix = `https://order-${randomBytes(4).toString('hex')}`;
    const labels = ['m', 'b', 'z', 'a', 'k', 'c', 'y'];
    for (const label of labels)
      await createResource({ identifier: `${prefix}-${label}.example.com`, scopes: ['a'] });

    const all = (await listAll()).map((r) => r.identifier);
    expect(all).toEqual([...all].sort());
    expect(all.filter((i) => i.startsWith(prefix))).toEqual(
      [...labels].sort().map((label) => `${prefix}-${label}.example.com`),
    );

    const paged: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? 'limit=2' : `limit=2&cursor=${encodeURIComponent(cursor)}`;
      const res = await call('GET', '/resources', { query });
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeLessThanOrEqual(2);
      paged.push(...(res.body.items as { identifier: string }[]).map((r) => r.identifier));
      cursor = res.body.next_cursor as string | null;
      if (cursor !== null) expect(res.body.items).toHaveLength(2);
      pages += 1;
      expect(pages).toBeLessThan(200);
    } while (cursor !== null);
    expect(paged).toEqual(all);
    expect(pages).toBeGreaterThanOrEqual(Math.ceil(all.length / 2));
  });

  it('pages with limit=1 and limit=200', async () => {
    const one = await call('GET', '/resources', { query: 'limit=1' });
    expect(one.status).toBe(200);
    expect(one.body.items).toHaveLength(1);
    expect(typeof one.body.next_cursor).toBe('string');
    const second = await call('GET', '/resources', {
      query: `limit=1&cursor=${encodeURIComponent(one.body.next_cursor as string)}`,
    });
    expect(second.body.items).toHaveLength(1);
    expect(second.body.items[0].identifier > one.body.items[0].identifier).toBe(true);
    const max = await call('GET', '/resources', { query: 'limit=200' });
    expect(max.status).toBe(200);
    expect(max.body.next_cursor).toBeNull();
  });

  it('filters by identifier (URL-encoded in the query)', async () => {
    const identifier = `${unique('filter')}/v1?x=1`;
    const created = await createResource({ identifier, scopes: ['a'] });
    await createResource({ identifier: `${identifier}0`, scopes: ['a'] });
    const res = await call('GET', '/resources', { query: `identifier=${encodeURIComponent(identifier)}` });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ items: [created], next_cursor: null });
    const none = await call('GET', '/resources', {
      query: `identifier=${encodeURIComponent(unique('nothing'))}`,
    });
    expect(none.body).toEqual({ items: [], next_cursor: null });
  });

  it.each([
    ['limit 0', 'limit=0', 'limit'],
    ['limit 201', 'limit=201', 'limit'],
    ['a negative limit', 'limit=-1', 'limit'],
    ['a fractional limit', 'limit=1.5', 'limit'],
    ['a word as limit', 'limit=ten', 'limit'],
    ['an empty limit', 'limit=', 'limit'],
    ['a repeated limit', 'limit=1&limit=2', 'limit'],
    ['a cursor that is not base64url JSON', 'cursor=%21%21%21', 'cursor'],
    ['a cursor holding a number', `cursor=${Buffer.from('42').toString('base64url')}`, 'cursor'],
    ['a cursor holding an object', `cursor=${Buffer.from('{"a":1}').toString('base64url')}`, 'cursor'],
    ['a cursor over 4096 characters', `cursor=${'a'.repeat(5000)}`, 'cursor'],
    ['an identifier that is no URI', 'identifier=not%20a%20uri', 'identifier'],
    ['an identifier with a fragment', 'identifier=https%3A%2F%2Fa.example.com%23f', 'identifier'],
    [
      'a repeated identifier',
      'identifier=https%3A%2F%2Fa.example.com&identifier=https%3A%2F%2Fb.example.com',
      'identifier',
    ],
    ['an unknown parameter', 'sort=identifier', ''],
  ])('refuses %s with 400 invalid_input', async (_case, query, path) => {
    const res = await call('GET', '/resources', { query });
    expectRefusal(res, 400, 'invalid_input');
    expectDetail(res, path);
  });
});

describe('GET /resources/{ref}', () => {
  it('shows a resource by id and by URL-encoded identifier', async () => {
    const identifier = `${unique('show')}/api`;
    const created = await createResource({ identifier, scopes: ['a', 'b'], name: 'Shown' });
    const byId = await call('GET', `/resources/${created.id}`);
    const byIdentifier = await show(identifier);
    expect(byId.status).toBe(200);
    expect(byIdentifier.status).toBe(200);
    expect(byId.body).toEqual(created);
    expect(byIdentifier.body).toEqual(created);
    // An upper-case id names the same resource.
    expect((await call('GET', `/resources/${created.id.toUpperCase()}`)).body).toEqual(created);
  });

  it.each([
    ['an unknown id', () => `/resources/${randomUUID()}`],
    ['an unknown identifier', () => ref(unique('unknown'))],
    ['a ref that is neither', () => '/resources/orders'],
    ['an identifier differing only by a trailing slash', () => ref(`${server.url}/admin/`)],
  ])('answers 404 resource_not_found for %s', async (_case, path) => {
    const res = await call('GET', path());
    expectRefusal(res, 404, 'resource_not_found');
  });

  it('refuses a malformed percent-encoding in the path with 400', async () => {
    const res = await call('GET', '/resources/https%3A%2F%2F%E0%A4%A');
    expectRefusal(res, 400, 'invalid_input');
  });

  it('refuses a NUL character in the path or the query with 400', async () => {
    expectRefusal(await call('GET', '/resources/https%3A%2F%2Fa.example.com%00'), 400, 'invalid_input');
    expectRefusal(
      await call('GET', '/resources', { query: 'identifier=https%3A%2F%2Fa.example.com%00' }),
      400,
      'invalid_input',
    );
  });

  it('answers 405 with Allow for a method the path does not have', async () => {
    const created = await createResource({ identifier: unique('method'), scopes: ['a'] });
    const res = await call('PUT', `/resources/${created.id}`, { body: { name: 'x' } });
    expectRefusal(res, 405, 'method_not_allowed');
    expect(res.headers.allow).toBe('GET, PATCH, DELETE');
  });
});

describe('PATCH /resources/{ref}', () => {
  it('changes the name, scopes, token_ttl and token_format, one at a time and together', async () => {
    const identifier = unique('update');
    const created = await createResource({ identifier, scopes: ['a'], name: 'Before' });

    const renamed = await call('PATCH', ref(identifier), { body: { name: '  After  ' } });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ id: created.id, identifier, name: 'After', scopes: ['a'] });
    expect(Date.parse(renamed.body.updated_at as string)).toBeGreaterThanOrEqual(
      Date.parse(created.updated_at),
    );
    expect(renamed.body.created_at).toBe(created.created_at);

    const scoped = await call('PATCH', `/resources/${created.id}`, {
      body: { scopes: ['b', 'a', 'c'] },
    });
    expect(scoped.body.scopes).toEqual(['b', 'a', 'c']);
    const ttl = await call('PATCH', ref(identifier), { body: { token_ttl: 900 } });
    expect(ttl.body.token_ttl).toBe(900);
    const format = await call('PATCH', ref(identifier), { body: { token_format: 'opaque' } });
    expect(format.body.token_format).toBe('opaque');
    const cleared = await call('PATCH', ref(identifier), { body: { name: null } });
    expect(cleared.body.name).toBeNull();

    const together = await call('PATCH', ref(identifier), {
      body: { name: 'Together', scopes: ['z'], token_ttl: 30, token_format: 'jwt' },
    });
    expect(together.status).toBe(200);
    expect(together.body).toEqual({
      ...created,
      name: 'Together',
      scopes: ['z'],
      token_ttl: 30,
      token_format: 'jwt',
      updated_at: expect.stringMatching(ISO),
    });
    expect((await show(identifier)).body).toEqual(together.body);
  });

  it('takes effect at /token at once: the new lifetime and format', async () => {
    const identifier = unique('effect');
    await createResource({ identifier, scopes: ['read'], token_ttl: 120 });
    const client = await createClient({
      name: 'effect',
      grants: [{ resource: identifier, scopes: ['read'] }],
    });
    const token = () =>
      requestToken(server.url, {
        clientId: client.client_id,
        secret: client.client_secret,
        resource: identifier,
        key: dpopKey,
      });
    const first = await token();
    expect(first.status).toBe(200);
    expect(first.body.expires_in).toBe(120);
    expect((first.body.access_token as string).split('.')).toHaveLength(3);

    expect(
      (await call('PATCH', ref(identifier), { body: { token_ttl: 45, token_format: 'opaque' } })).status,
    ).toBe(200);
    const second = await token();
    expect(second.status).toBe(200);
    expect(second.body.expires_in).toBe(45);
    expect((second.body.access_token as string).split('.')).toHaveLength(1);
  });

  const invalidUpdates: [string, unknown, string, RegExp?][] = [
    ['an empty object', {}, '', /nothing to update/],
    ['empty scopes', { scopes: [] }, 'scopes'],
    ['repeated scopes', { scopes: ['a', 'a'] }, 'scopes'],
    ['a scope with a space', { scopes: ['a', 'b c'] }, 'scopes.1'],
    ['scopes null', { scopes: null }, 'scopes'],
    ['token_ttl 0', { token_ttl: 0 }, 'token_ttl'],
    ['a negative token_ttl', { token_ttl: -1 }, 'token_ttl'],
    ['a fractional token_ttl', { token_ttl: 299.9 }, 'token_ttl'],
    ['token_ttl above the maximum', { token_ttl: 901 }, 'token_ttl', /900/],
    ['token_ttl as a string', { token_ttl: '60' }, 'token_ttl'],
    ['an unknown token_format', { token_format: 'xml' }, 'token_format'],
    ['token_format null', { token_format: null }, 'token_format'],
    ['an empty name', { name: '' }, 'name'],
    ['a numeric name', { name: 7 }, 'name'],
    ['a new identifier', { identifier: 'https://moved.example.com' }, '', /identifier/],
    ['reserved', { reserved: true }, '', /reserved/],
    ['an unknown member beside a valid one', { name: 'ok', colour: 'blue' }, '', /colour/],
    ['a JSON array', [], ''],
    ['a JSON number', 5, ''],
  ];

  it.each(invalidUpdates)(
    'refuses %s with 400 invalid_input and changes nothing',
    async (_case, body, path, message) => {
      const identifier = unique('badupdate');
      const created = await createResource({ identifier, scopes: ['a', 'b'], name: 'Kept', token_ttl: 120 });
      const res = await call('PATCH', ref(identifier), { body: JSON.stringify(body) });
      expectRefusal(res, 400, 'invalid_input');
      expectDetail(res, path, message);
      expect((await show(identifier)).body).toEqual(created);
    },
  );

  it('refuses malformed JSON, another media type, a missing body and an oversized body, and changes nothing', async () => {
    const identifier = unique('badbody');
    const created = await createResource({ identifier, scopes: ['a'] });
    expectRefusal(await call('PATCH', ref(identifier), { body: '{"name": "x"' }), 400, 'invalid_json');
    expectRefusal(
      await call('PATCH', ref(identifier), { body: '{"name":"x"}', contentType: 'text/plain' }),
      415,
      'unsupported_media_type',
    );
    expectRefusal(await call('PATCH', ref(identifier)), 400, 'invalid_input');
    expectRefusal(
      await call('PATCH', ref(identifier), { body: { name: 'x', pad: 'p'.repeat(MAX_BODY) } }),
      413,
      'payload_too_large',
    );
    expect((await show(identifier)).body).toEqual(created);
  });

  it('answers 404 resource_not_found for an unknown resource, by id or identifier', async () => {
    expectRefusal(
      await call('PATCH', `/resources/${randomUUID()}`, { body: { name: 'x' } }),
      404,
      'resource_not_found',
    );
    const identifier = unique('ghost');
    expectRefusal(await call('PATCH', ref(identifier), { body: { name: 'x' } }), 404, 'resource_not_found');
    expect((await show(identifier)).status).toBe(404);
  });

  it('refuses to remove a scope a client holds with 409 scope_in_use, atomically, and allows every other change', async () => {
    const identifier = unique('inuse');
    const created = await createResource({ identifier, scopes: ['read', 'write', 'spare'], name: 'In use' });
    const holder = await createClient({
      name: 'holder',
      grants: [{ resource: identifier, scopes: ['write'] }],
    });

    const res = await call('PATCH', ref(identifier), { body: { name: 'Renamed', scopes: ['read'] } });
    expectRefusal(res, 409, 'scope_in_use');
    expect(res.body.message).toContain('write');
    expect(res.body.message).toContain(holder.client_id);
    // Nothing of the refused update was applied, not even the name.
    expect((await show(identifier)).body).toEqual(created);
    const client = await call('GET', `/clients/${holder.client_id}`);
    expect(client.body.grants).toEqual([{ resource: identifier, scopes: ['write'] }]);

    // Removing scopes nobody holds, and adding scopes, are fine.
    const narrowed = await call('PATCH', ref(identifier), { body: { scopes: ['write', 'extra'] } });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.scopes).toEqual(['write', 'extra']);
  });

  it('refuses to change the reserved admin resource with 409 resource_reserved, by identifier or id', async () => {
    const identifier = `${server.url}/admin`;
    const before = (await show(identifier)).body;
    expect(before.reserved).toBe(true);
    for (const body of [
      { name: 'Mine now' },
      { scopes: ['admin:read'] },
      { token_ttl: 900 },
      { token_format: 'opaque' },
    ]) {
      expectRefusal(await call('PATCH', ref(identifier), { body }), 409, 'resource_reserved');
      expectRefusal(
        await call('PATCH', `/resources/${before.id as string}`, { body }),
        409,
        'resource_reserved',
      );
    }
    expect((await show(identifier)).body).toEqual(before);
  });
});

describe('DELETE /resources/{ref}', () => {
  it('deletes a resource nobody depends on with 204 and no body; it is gone from show and list', async () => {
    const identifier = unique('delete');
    const created = await createResource({ identifier, scopes: ['a'] });
    const res = await call('DELETE', ref(identifier));
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expectRefusal(await show(identifier), 404, 'resource_not_found');
    expectRefusal(await call('GET', `/resources/${created.id}`), 404, 'resource_not_found');
    expect((await listAll()).some((r) => r.identifier === identifier)).toBe(false);
    expectRefusal(await call('DELETE', ref(identifier)), 404, 'resource_not_found');
  });

  it('deletes by id too', async () => {
    const created = await createResource({ identifier: unique('deleteid'), scopes: ['a'] });
    expect((await call('DELETE', `/resources/${created.id}`)).status).toBe(204);
    expect((await call('GET', `/resources/${created.id}`)).status).toBe(404);
  });

  it('refuses to delete a resource a client holds a grant on (409 resource_in_use) until force=true, which ends the grant', async () => {
    const identifier = unique('granted');
    const other = unique('other');
    const created = await createResource({ identifier, scopes: ['read'] });
    await createResource({ identifier: other, scopes: ['read'] });
    const client = await createClient({
      name: 'dependent',
      grants: [
        { resource: identifier, scopes: ['read'] },
        { resource: other, scopes: ['read'] },
      ],
    });
    const token = () =>
      requestToken(server.url, {
        clientId: client.client_id,
        secret: client.client_secret,
        resource: identifier,
        key: dpopKey,
      });
    expect((await token()).status).toBe(200);

    for (const query of [undefined, 'force=false']) {
      const res = await call('DELETE', ref(identifier), query ? { query } : {});
      expectRefusal(res, 409, 'resource_in_use');
      expect(res.body.message).toContain(client.client_id);
    }
    expect((await show(identifier)).body).toEqual(created);
    expect((await call('GET', `/clients/${client.client_id}`)).body.grants).toHaveLength(2);

    const forced = await call('DELETE', ref(identifier), { query: 'force=true' });
    expect(forced.status).toBe(204);
    expect((await show(identifier)).status).toBe(404);
    const after = await call('GET', `/clients/${client.client_id}`);
    expect(after.body.grants).toEqual([{ resource: other, scopes: ['read'] }]);
    const refused = await token();
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_target');
  });

  it('refuses to delete a resource a client introspects until force=true, which ends the right', async () => {
    const identifier = unique('introspected');
    await createResource({ identifier, scopes: ['read'] });
    const rs = await createClient({ name: 'resource server', introspects: [identifier] });
    expectRefusal(await call('DELETE', ref(identifier)), 409, 'resource_in_use');
    expect((await show(identifier)).status).toBe(200);
    expect((await call('DELETE', ref(identifier), { query: 'force=true' })).status).toBe(204);
    expect((await call('GET', `/clients/${rs.client_id}`)).body.introspects).toEqual([]);
  });

  it.each(['force=yes', 'force=1', 'force=true&force=true', 'forced=true'])(
    'refuses the query %s with 400 and deletes nothing',
    async (query) => {
      const identifier = unique('badforce');
      await createResource({ identifier, scopes: ['a'] });
      expectRefusal(await call('DELETE', ref(identifier), { query }), 400, 'invalid_input');
      expect((await show(identifier)).status).toBe(200);
    },
  );

  it('answers 404 resource_not_found for an unknown resource', async () => {
    expectRefusal(await call('DELETE', `/resources/${randomUUID()}`), 404, 'resource_not_found');
    expectRefusal(
      await call('DELETE', ref(unique('ghost')), { query: 'force=true' }),
      404,
      'resource_not_found',
    );
  });

  it('refuses to delete the reserved admin resource with 409 resource_reserved, even with force', async () => {
    const identifier = `${server.url}/admin`;
    const before = (await show(identifier)).body;
    for (const query of [undefined, 'force=true']) {
      expectRefusal(await call('DELETE', ref(identifier), query ? { query } : {}), 409, 'resource_reserved');
      expectRefusal(
        await call('DELETE', `/resources/${before.id as string}`, query ? { query } : {}),
        409,
        'resource_reserved',
      );
    }
    expect((await show(identifier)).body).toEqual(before);
    // The admin API still works, so the admin grant survived.
    expect((await call('GET', '/resources', { query: 'limit=1' })).status).toBe(200);
  });
});

describe('authorization of resource operations', () => {
  it('needs admin:write for writes; a read-only token can list but not create, update or delete', async () => {
    const reader = await obtainAdminToken(server, { scope: 'admin:read' });
    const identifier = unique('readonly');
    const created = await createResource({ identifier, scopes: ['a'] });
    const asReader = (method: Method, path: string, options: Parameters<typeof adminCall>[4] = {}) =>
      adminCall(server, reader, method, path, options);
    expect((await asReader('GET', ref(identifier))).status).toBe(200);
    for (const [method, path, body] of [
      ['POST', '/resources', { identifier: unique('nope'), scopes: ['a'] }],
      ['PATCH', ref(identifier), { name: 'nope' }],
      ['DELETE', ref(identifier), undefined],
    ] as const) {
      const res = await asReader(method, path, body ? { body } : {});
      expectRefusal(res, 403, 'insufficient_scope');
      expect(res.headers['www-authenticate']).toMatch(/^DPoP error="insufficient_scope"/);
    }
    expect((await show(identifier)).body).toEqual(created);
  });
});

describe('concurrent changes', () => {
  it('creates a contested identifier exactly once', async () => {
    const identifier = unique('contested');
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        call('POST', '/resources', { body: { identifier, scopes: [`s${i}`] } }),
      ),
    );
    expect(answers.map((res) => res.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
    const winner = answers.find((res) => res.status === 201);
    expect((await show(identifier)).body).toEqual(winner?.body);
  });

  // Postgres runs the two transactions concurrently (PGlite serialises them): the scope check of the update and
  // the scope check of the new grant must not both pass.
  it('never leaves a grant on a scope the resource no longer defines when a removal races a new grant', async () => {
    const broken: string[] = [];
    for (let round = 0; round < 8; round += 1) {
      const identifier = unique('race');
      await createResource({ identifier, scopes: ['a', 'b'] });
      const [narrowed, granted] = await Promise.all([
        call('PATCH', ref(identifier), { body: { scopes: ['a'] } }),
        call('POST', '/clients', {
          body: { name: 'racer', grants: [{ resource: identifier, scopes: ['b'] }] },
        }),
      ]);
      expect([200, 409]).toContain(narrowed.status);
      expect([201, 400]).toContain(granted.status);
      const defined = (await show(identifier)).body.scopes as string[];
      if (granted.status === 201) {
        const client = await call('GET', `/clients/${granted.body.client_id as string}`);
        const held = (client.body.grants as { scopes: string[] }[]).flatMap((g) => g.scopes);
        if (!held.every((scope) => defined.includes(scope))) {
          broken.push(
            `round ${round}: resource defines ${defined.join(' ')}, client holds ${held.join(' ')}`,
          );
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('never answers 500 nor silently drops a new grant when a plain delete races it', async () => {
    const outcomes: string[] = [];
    for (let round = 0; round < 8; round += 1) {
      const identifier = unique('race-delete');
      await createResource({ identifier, scopes: ['a'] });
      const [deleted, granted] = await Promise.all([
        call('DELETE', ref(identifier)),
        call('POST', '/clients', {
          body: { name: 'racer', grants: [{ resource: identifier, scopes: ['a'] }] },
        }),
      ]);
      let outcome = `DELETE ${deleted.status}, POST ${granted.status}`;
      if (granted.status === 201) {
        const client = await call('GET', `/clients/${granted.body.client_id as string}`);
        outcome += `, grants kept ${(client.body.grants as unknown[]).length}`;
      }
      outcomes.push(outcome);
    }
    // Either the delete wins (the grant is refused: 404) or the grant wins (the delete is refused: 409).
    for (const outcome of outcomes) {
      expect(['DELETE 204, POST 404', 'DELETE 409, POST 201, grants kept 1']).toContain(outcome);
    }
  });
});
