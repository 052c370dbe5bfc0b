import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { UNTHROTTLED } from '../support/unthrottled.ts';

/**
 * Negative battery at the HTTP level of the protocol endpoints: body and header sizes, media types, repeated
 * and misplaced parameters, methods, grant types, paths and message framing. OAuth errors per RFC 6749 §5.2
 * (token), RFC 7662 §2.3 (introspection), RFC 7009 §2.2.1 (revocation); HTTP semantics per RFC 9110 and
 * framing per RFC 9112.
 */

const API = 'https://api.example.com';
/** The form body limit of the protocol endpoints (oidc-provider's and Mayfly's readers alike). */
const BODY_LIMIT = 56 * 1024;
/** Node's default --max-http-header-size, which the test server (test/support/server.ts) keeps. */
const HEADER_LIMIT = 16 * 1024;

let server: TestServer;
let client: { id: string; secret: string };
let other: { id: string; secret: string };
let key: DpopKey;

const statuses: number[] = [];

/** A response body for a failure message, never with a secret or a token in it. */
const shown = (body: unknown) =>
  JSON.stringify(body, (key, value: unknown) =>
    ['client_secret', 'access_token', 'refresh_token'].includes(key) ? '<redacted>' : value,
  );

beforeAll(async () => {
  server = await startTestServer({ env: { ...UNTHROTTLED } });
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  const grants = [{ resource: API, scopes: ['read', 'write'] }];
  const [c, o, k] = await Promise.all([
    server.createClient({ name: 'svc', grants, introspects: [API] }),
    server.createClient({ name: 'other', grants }),
    generateDpopKey(),
  ]);
  client = { id: c.client.id, secret: c.clientSecret ?? '' };
  other = { id: o.client.id, secret: o.clientSecret ?? '' };
  key = k;
});
afterAll(() => server.close());

type Response = request.Response;

interface Endpoint {
  label: string;
  path: string;
  /** A complete, valid form for this endpoint (without client authentication). */
  form: () => Record<string, string>;
  expectOk: (res: Response) => void;
}

const TOKEN: Endpoint = {
  label: 'token endpoint',
  path: '/token',
  form: () => ({ grant_type: 'client_credentials', resource: API }),
  expectOk(res) {
    expect(res.status, shown(res.body)).toBe(200);
    expect(res.body.token_type).toBe('DPoP');
  },
};
const INTROSPECTION: Endpoint = {
  label: 'introspection endpoint',
  path: '/token/introspection',
  form: () => ({ token: 'not-a-token-of-this-server' }),
  expectOk(res) {
    expect(res.status, shown(res.body)).toBe(200);
    expect(res.body).toEqual({ active: false });
  },
};
const REVOCATION: Endpoint = {
  label: 'revocation endpoint',
  path: '/token/revocation',
  form: () => ({ token: 'not-a-token-of-this-server' }),
  expectOk(res) {
    expect(res.status, shown(res.body)).toBe(200);
  },
};
const ENDPOINTS = [TOKEN, INTROSPECTION, REVOCATION];

const auth = () => basicAuth(client.id, client.secret);
const proof = (path = '/token') => createProof(key, { htu: `${server.url}${path}` });
const encode = (form: Record<string, string>) => new URLSearchParams(form).toString();

/** POST with Basic credentials, a DPoP proof at /token, and the body as given. */
async function post(
  endpoint: Endpoint,
  body: string,
  options: { contentType?: string | null; headers?: Record<string, string>; path?: string } = {},
): Promise<Response> {
  let call = request(server.url)
    .post(options.path ?? endpoint.path)
    .set('Authorization', auth());
  if (endpoint === TOKEN) call = call.set('DPoP', await proof());
  const contentType =
    options.contentType === undefined ? 'application/x-www-form-urlencoded' : options.contentType;
  if (contentType !== null) call = call.set('Content-Type', contentType);
  for (const [name, value] of Object.entries(options.headers ?? {})) call = call.set(name, value);
  const res = await call.send(body);
  statuses.push(res.status);
  return res;
}

function expectOAuthError(res: Response, status: number, error: string, reason?: RegExp) {
  expect({ status: res.status, error: res.body.error }).toEqual({ status, error });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  expect(Object.keys(res.body ?? {})).not.toContain('active');
  if (reason) expect(res.body.error_description).toMatch(reason);
}

/** A body of exactly `size` bytes: the endpoint's valid form, padded with an unrecognised parameter. */
function paddedForm(endpoint: Endpoint, size: number): string {
  const head = `${encode(endpoint.form())}&pad=`;
  return `${head}${'x'.repeat(size - head.length)}`;
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request written byte for byte on a fresh connection, for what HTTP clients refuse to send. */
async function raw(head: string[], body = ''): Promise<RawResponse> {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write(`${head.join('\r\n')}\r\n\r\n${body}`);
  await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, 5_000))]);
  socket.destroy();
  const text = Buffer.concat(chunks).toString('utf8');
  const [headText = '', ...rest] = text.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = headText.split('\r\n');
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  const status = Number(statusLine.split(' ')[1]);
  statuses.push(status);
  return { status, headers, body: rest.join('\r\n\r\n') };
}

const host = () => `Host: 127.0.0.1:${new URL(server.url).port}`;

/** A body sent in chunks without Content-Length, so its size is only known while it is read. */
async function chunked(
  endpoint: Endpoint,
  body: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {
    authorization: auth(),
    'content-type': 'application/x-www-form-urlencoded',
    'transfer-encoding': 'chunked',
  };
  if (endpoint === TOKEN) headers.dpop = await proof();
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(new URL(endpoint.path, server.url), { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        answered = true;
        statuses.push(res.statusCode ?? 0);
        // A revocation answers 200 with no body (RFC 7009 §2.2).
        resolve({
          status: res.statusCode ?? 0,
          body: (text ? JSON.parse(text) : {}) as Record<string, unknown>,
        });
      });
    });
    // The server may answer and close before the whole body is written; only a failure before any answer counts.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    for (let offset = 0; offset < body.length; offset += 8192) req.write(body.slice(offset, offset + 8192));
    req.end();
  });
}

describe.each(ENDPOINTS)('$label: body size', (endpoint) => {
  it('reads a body of exactly 56 KiB (control)', async () => {
    const body = paddedForm(endpoint, BODY_LIMIT);
    expect(Buffer.byteLength(body)).toBe(BODY_LIMIT);
    endpoint.expectOk(await post(endpoint, body));
  });

  // Latitude (RFC 9110 §15.5.14 describes 413, nothing requires it): Mayfly's own reader answers 413 at
  // introspection and revocation; oidc-provider's reader at /token answers 400. Both are OAuth errors.
  it('refuses one byte more with an OAuth invalid_request', async () => {
    const res = await post(endpoint, paddedForm(endpoint, BODY_LIMIT + 1));
    expectOAuthError(res, 413, 'invalid_request');
  });

  it('refuses a chunked body over 56 KiB (no Content-Length) with an OAuth invalid_request', async () => {
    const res = await chunked(endpoint, paddedForm(endpoint, BODY_LIMIT * 2));
    expect({ status: res.status, error: res.body.error }).toEqual({
      status: 413,
      error: 'invalid_request',
    });
  });

  it('reads a chunked body under the limit (control)', async () => {
    const res = await chunked(endpoint, paddedForm(endpoint, 20_000));
    expect(res.status, shown(res.body)).toBe(200);
  });
});

describe('header size', () => {
  it('refuses header fields over 16 KiB with 431 before any endpoint runs (RFC 6585 §5)', async () => {
    const big = 'x'.repeat(HEADER_LIMIT + 1024);
    const responses = [
      await post(TOKEN, encode(TOKEN.form()), { headers: { DPoP: big } }),
      await post(INTROSPECTION, encode(INTROSPECTION.form()), { headers: { Authorization: `Basic ${big}` } }),
      await post(REVOCATION, encode(REVOCATION.form()), { headers: { 'X-Padding': big } }),
      await request(server.url).get('/admin/v1/clients').set('Authorization', `DPoP ${big}`),
    ];
    statuses.push(responses[3]?.status ?? 0);
    expect(responses.map((res) => res.status)).toEqual([431, 431, 431, 431]);
  });

  it('reads a 12 KiB DPoP header, under the limit, and judges the proof it holds', async () => {
    const res = await post(TOKEN, encode(TOKEN.form()), { headers: { DPoP: 'x'.repeat(12 * 1024) } });
    expectOAuthError(res, 400, 'invalid_dpop_proof');
  });
});

describe.each(ENDPOINTS)('$label: media types', (endpoint) => {
  // RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1: application/x-www-form-urlencoded only.
  it.each<[string, string, (endpoint: Endpoint) => string]>([
    ['JSON', 'application/json', (e) => JSON.stringify(e.form())],
    [
      'multipart/form-data',
      'multipart/form-data; boundary=XyZ',
      (e) =>
        Object.entries(e.form())
          .map(
            ([name, value]) => `--XyZ\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
          )
          .join('') + '--XyZ--\r\n',
    ],
    ['text/plain', 'text/plain', (e) => encode(e.form())],
    ['XML', 'application/xml', () => '<request><grant_type>client_credentials</grant_type></request>'],
  ])('refuses a %s body with 400 invalid_request', async (_case, contentType, body) => {
    const res = await post(endpoint, body(endpoint), { contentType });
    expectOAuthError(res, 400, 'invalid_request', /x-www-form-urlencoded/);
  });

  it('refuses a body without Content-Type with 400 invalid_request: it is not read as a form', async () => {
    const body = encode(endpoint.form());
    const head = [
      `POST ${endpoint.path} HTTP/1.1`,
      host(),
      `Authorization: ${auth()}`,
      ...(endpoint === TOKEN ? [`DPoP: ${await proof()}`] : []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
    ];
    const res = await raw(head, body);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const parsed = JSON.parse(res.body) as { error?: string; error_description?: string };
    expect(parsed.error).toBe('invalid_request');
    expect(parsed.error_description).toMatch(/missing required parameter/);
  });

  it('accepts the form media type with a charset parameter (control)', async () => {
    endpoint.expectOk(
      await post(endpoint, encode(endpoint.form()), {
        contentType: 'application/x-www-form-urlencoded; charset=utf-8',
      }),
    );
  });
});

describe('repeated parameters (RFC 6749 §3.2: "MUST NOT be included more than once")', () => {
  it.each<[string, Endpoint, string]>([
    ['token endpoint', TOKEN, 'scope'],
    ['token endpoint', TOKEN, 'grant_type'],
    ['introspection endpoint', INTROSPECTION, 'token'],
    ['introspection endpoint', INTROSPECTION, 'token_type_hint'],
    ['revocation endpoint', REVOCATION, 'token'],
    ['revocation endpoint', REVOCATION, 'token_type_hint'],
  ])('refuses, at the %s, a repeated %s with 400 invalid_request', async (_label, endpoint, name) => {
    const form = new URLSearchParams({ ...endpoint.form(), token_type_hint: 'access_token', scope: 'read' });
    if (endpoint !== TOKEN) form.delete('scope');
    else form.delete('token_type_hint');
    const first = form.get(name) ?? '';
    form.append(name, name === 'grant_type' ? 'password' : first);
    const res = await post(endpoint, form.toString());
    expectOAuthError(
      res,
      400,
      'invalid_request',
      new RegExp(`'${name}' parameter must not be provided twice`),
    );
  });

  // RFC 8707 §2 lets a client name several resources; a server that issues single-audience tokens refuses
  // them with invalid_target (latitude: Mayfly does so even when the values are equal).
  it('refuses two resource parameters, equal or not, with 400 invalid_target (RFC 8707 §2)', async () => {
    for (const second of [API, 'https://other.example.com']) {
      const res = await post(TOKEN, `${encode(TOKEN.form())}&resource=${encodeURIComponent(second)}`);
      expectOAuthError(res, 400, 'invalid_target', /exactly one resource/);
    }
  });

  it('refuses a repeated parameter even after a thousand others (RFC 6749 §5.2: "repeats a parameter")', async () => {
    const padding = Array.from({ length: 1_000 }, (_, i) => `p${i}=1`).join('&');
    const res = await post(TOKEN, `${encode(TOKEN.form())}&${padding}&grant_type=password`);
    expectOAuthError(res, 400, 'invalid_request', /grant_type/);
  });

  it('ignores two thousand unrecognised parameters, as RFC 6749 §3.2 requires, and reads those it knows', async () => {
    const padding = Array.from({ length: 2_000 }, (_, i) => `p${i}=1`).join('&');
    TOKEN.expectOk(await post(TOKEN, `${padding}&${encode(TOKEN.form())}`));
  });

  it('treats a parameter sent without a value as omitted (RFC 6749 §3.2)', async () => {
    const res = await post(TOKEN, `${encode(TOKEN.form())}&scope=`);
    TOKEN.expectOk(res);
    expect(res.body.scope).toBe('read write');
    // An empty client_secret beside Basic credentials is no second authentication method.
    TOKEN.expectOk(await post(TOKEN, `${encode(TOKEN.form())}&client_secret=`));
    const noGrant = await post(TOKEN, `grant_type=&resource=${encodeURIComponent(API)}`);
    expectOAuthError(noGrant, 400, 'invalid_request', /grant_type/);
  });
});

describe('parameters in the query string of a POST', () => {
  it('does not read the request parameters from the query (RFC 6749 §3.2: the request body)', async () => {
    const res = await post(TOKEN, '', { path: `/token?${encode(TOKEN.form())}` });
    expectOAuthError(res, 400, 'invalid_request', /grant_type/);
  });

  it('never authenticates with credentials in the query (RFC 6749 §2.3.1: "MUST NOT be included in the request URI")', async () => {
    const res = await post(TOKEN, encode(TOKEN.form()), {
      path: `/token?${encode({ client_id: other.id, client_secret: other.secret })}`,
    });
    TOKEN.expectOk(res);
    expect(decodeJwt(res.body.access_token as string).client_id).toBe(client.id);
  });
});

describe('methods', () => {
  // RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1: POST only. RFC 9110 §9.1: a method "recognized and
  // implemented, but not allowed for the target resource, SHOULD" get 405, which "MUST" carry Allow (§15.5.6).
  it.each(ENDPOINTS)(
    'answers any method but POST at the $label with 405 and Allow: POST',
    async (endpoint) => {
      for (const method of ['get', 'put', 'patch', 'delete', 'head'] as const) {
        const res = await request(server.url)[method](endpoint.path).set('Authorization', auth());
        statuses.push(res.status);
        expect({ method, status: res.status, allow: res.headers.allow }).toEqual({
          method,
          status: 405,
          allow: 'POST',
        });
      }
    },
  );
});

describe('grant types (RFC 6749 §5.2 unsupported_grant_type)', () => {
  it.each([
    'refresh_token',
    'authorization_code',
    'implicit',
    'urn:ietf:params:oauth:grant-type:jwt-bearer',
    'urn:ietf:params:oauth:grant-type:token-exchange',
    'urn:ietf:params:oauth:grant-type:device_code',
    'urn:openid:params:grant-type:ciba',
    // Grant types are compared exactly: no case folding, no trimming.
    'CLIENT_CREDENTIALS',
    'client_credentials ',
    ' client_credentials',
  ])('refuses %j with 400 unsupported_grant_type', async (grantType) => {
    const res = await post(TOKEN, encode({ ...TOKEN.form(), grant_type: grantType }));
    expectOAuthError(res, 400, 'unsupported_grant_type');
  });

  it('refuses a request without grant_type with 400 invalid_request', async () => {
    expectOAuthError(await post(TOKEN, encode({ resource: API })), 400, 'invalid_request', /grant_type/);
  });
});

describe('paths', () => {
  it.each(['/token/', '/TOKEN', '/Token', '/token%2F', '/token;x', '/token/introspection/', '/token/x'])(
    'answers POST %s with 404 not_found: only the exact endpoint paths exist',
    async (path) => {
      const res = await post(TOKEN, encode(TOKEN.form()), { path });
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 404, error: 'not_found' });
      expect(Object.keys(res.body ?? {})).not.toContain('access_token');
    },
  );

  it('refuses POST //token with 400 invalid_request: a path starting with // reads as another host', async () => {
    const res = await post(TOKEN, encode(TOKEN.form()), { path: '//token' });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  });
});

describe('malformed form values', () => {
  it.each([
    ['an invalid percent-encoding', 'resource=%zz'],
    ['bytes that are not UTF-8', 'resource=%FF%FE'],
    ['a NUL character', `resource=${encodeURIComponent(API)}%00`],
    ['a line break', `resource=${encodeURIComponent(API)}%0D%0AX-Injected:%201`],
  ])('refuses a resource with %s with 400 invalid_target, not a server error', async (_case, resource) => {
    const res = await post(TOKEN, `grant_type=client_credentials&${resource}`);
    expectOAuthError(res, 400, 'invalid_target');
    expect(res.headers['x-injected']).toBeUndefined();
  });
});

describe('message framing (RFC 9112)', () => {
  const body = () => encode(TOKEN.form());

  it('refuses Content-Length beside Transfer-Encoding with 400 and closes (RFC 9112 §6.1)', async () => {
    const res = await raw(
      [
        'POST /token HTTP/1.1',
        host(),
        `Authorization: ${auth()}`,
        'Content-Type: application/x-www-form-urlencoded',
        'Content-Length: 5',
        'Transfer-Encoding: chunked',
      ],
      `${body().length.toString(16)}\r\n${body()}\r\n0\r\n\r\n`,
    );
    expect(res.status).toBe(400);
  });

  it('refuses two different Content-Length values with 400 (RFC 9112 §6.3)', async () => {
    const res = await raw(
      [
        'POST /token HTTP/1.1',
        host(),
        'Content-Type: application/x-www-form-urlencoded',
        `Content-Length: ${body().length}`,
        `Content-Length: ${body().length + 1}`,
      ],
      body(),
    );
    expect(res.status).toBe(400);
  });

  it('refuses an HTTP/1.1 request without Host, or with two, with 400 (RFC 9112 §3.2)', async () => {
    const common = [
      'Content-Type: application/x-www-form-urlencoded',
      'Content-Length: 0',
      'Connection: close',
    ];
    expect((await raw(['POST /token HTTP/1.1', ...common])).status).toBe(400);
    expect((await raw(['POST /token HTTP/1.1', host(), 'Host: evil.example', ...common])).status).toBe(400);
  });
});

describe('the whole battery', () => {
  it('answered no request with a server error and logged none', () => {
    expect(statuses.filter((status) => status >= 500 || Number.isNaN(status))).toEqual([]);
    expect(server.logs.records().filter((r) => typeof r.level === 'number' && r.level >= 50)).toEqual([]);
  });
});

describe('requests the HTTP parser refuses', () => {
  it('answers headers over 16 KiB with 431 and a JSON error, as every other refusal', async () => {
    const res = await raw([
      'POST /token HTTP/1.1',
      host(),
      'Content-Type: application/x-www-form-urlencoded',
      `Authorization: Basic ${'a'.repeat(17_000)}`,
      'Content-Length: 0',
    ]);
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(res.body)).toEqual({
      error: 'invalid_request',
      error_description: 'the request line and headers are larger than 16 KiB',
    });
  });

  it('answers a malformed request line with 400 and a JSON error', async () => {
    const res = await raw(['POST /token HTTP/1.1 extra', host()]);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' });
  });
});
