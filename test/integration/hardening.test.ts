import type * as NodeCrypto from 'node:crypto';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, relative } from 'node:path';

import { exportJWK, generateKeyPair, importJWK, type CryptoKey } from 'jose';
import ts from 'typescript';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

import { AdminNonces } from '../../src/admin/admin-auth.ts';
import { hashClientSecret, matchesSecretHash } from '../../src/clients/client-secret.ts';
import type { ClientInput } from '../../src/clients/client.schemas.ts';
import { ADMIN_PREFIX, obtainAdminToken, readAdminCredentials, type AdminToken } from '../support/admin.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, createClientAssertion, JWT_BEARER_ASSERTION, postToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import {
  findInternalMarker,
  FUZZ_SERVER_ENV,
  SecretRegistry,
  WireClient,
  type WireRequest,
  type WireResponse,
} from '../fuzz/arbitraries.ts';

/**
 * Hardening: body size limits, security headers, no stack trace or internal message in any answer, constant-time
 * comparison of every secret, and nothing sensitive in the logs.
 *
 * `timingSafeEqual` is observed through a pass-through spy on node:crypto, so the tests can tell that a comparison
 * went through it (and how often) without changing what it does.
 */
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof NodeCrypto>();
  const spy = vi.fn(actual.timingSafeEqual);
  return { ...actual, timingSafeEqual: spy, default: { ...actual, timingSafeEqual: spy } };
});
const timingSafeEqualSpy = vi.mocked(timingSafeEqual);

const API = 'https://api.example.com';
const BILLING = 'https://billing.example.com';
const FORM = 'application/x-www-form-urlencoded';

let server: TestServer;
let wire: WireClient;
let dpopKey: DpopKey;
let admin: AdminToken;
let client: { id: string; secret: string };
let postClient: { id: string; secret: string };
let resourceServer: { id: string; secret: string };
let jwtClient: { id: string; key: CryptoKey; d: string };
/** Every secret, token, proof, assertion and private key the file uses: none may reach a log line. */
const secrets = new SecretRegistry();
const cleanup: (() => unknown)[] = [];

/** A proof for `POST <path>`, remembered as a credential. */
async function proofFor(path: string, method = 'POST', extra: { ath?: string; key?: DpopKey } = {}) {
  const proof = await createProof(extra.key ?? dpopKey, {
    htm: method,
    htu: `${server.url}${path}`,
    ...(extra.ath ? { ath: extra.ath } : {}),
  });
  secrets.add('a DPoP proof', proof);
  return proof;
}

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

function form(params: Record<string, string>): Buffer {
  return Buffer.from(new URLSearchParams(params).toString());
}

async function tokenRequest(params: Record<string, string>, headers: Record<string, string> = {}) {
  return wire.send({
    method: 'POST',
    path: '/token',
    headers: { 'content-type': FORM, dpop: await proofFor('/token'), ...headers },
    body: form(params),
  });
}

async function issueToken(resource = API): Promise<string> {
  const response = await tokenRequest(
    { grant_type: 'client_credentials', resource },
    { authorization: basicAuth(client.id, client.secret) },
  );
  expect(response.status, secrets.redact(response.text)).toBe(200);
  const token = (response.json as { access_token: string }).access_token;
  secrets.add('an access token', token);
  return token;
}

async function adminRequest(method: string, path: string, body?: unknown, token = admin.token) {
  const url = `${ADMIN_PREFIX}${path}`;
  return wire.send({
    method,
    path: url,
    headers: {
      authorization: `DPoP ${token}`,
      dpop: await proofFor(url, method, { ath: ath(token), key: admin.key }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body:
      body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
  });
}

beforeAll(async () => {
  server = await startTestServer({ env: { ...FUZZ_SERVER_ENV } });
  cleanup.push(() => server.close());
  wire = new WireClient(server.url);
  cleanup.push(() => {
    wire.close();
  });
  dpopKey = await generateDpopKey();
  secrets.add('the DPoP private key', String((await exportJWK(dpopKey.privateKey)).d));
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: BILLING, scopes: ['bill'], token_format: 'opaque' });
  const basic = await server.createClient({
    name: 'basic',
    grants: [
      { resource: API, scopes: ['read'] },
      { resource: BILLING, scopes: ['bill'] },
    ],
  });
  client = { id: basic.client.id, secret: basic.clientSecret ?? '' };
  const post = await server.createClient({
    name: 'post',
    auth_method: 'client_secret_post',
    grants: [{ resource: API, scopes: ['read'] }],
  });
  postClient = { id: post.client.id, secret: post.clientSecret ?? '' };
  const rs = await server.createClient({ name: 'rs', introspects: [API, BILLING] });
  resourceServer = { id: rs.client.id, secret: rs.clientSecret ?? '' };
  const pair = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1' };
  const created = await server.createClient({
    name: 'jwt',
    auth_method: 'private_key_jwt',
    jwks: { keys: [jwk] } as NonNullable<ClientInput['jwks']>,
    grants: [{ resource: API, scopes: ['read'] }],
  });
  jwtClient = {
    id: created.client.id,
    key: pair.privateKey,
    d: String((await exportJWK(pair.privateKey)).d),
  };
  for (const [label, value] of [
    ['secret of basic', client.secret],
    ['secret of post', postClient.secret],
    ['secret of rs', resourceServer.secret],
    ['private key of the jwt client', jwtClient.d],
    ['Basic credentials of basic', basicAuth(client.id, client.secret).slice(6)],
    ['Basic credentials of rs', basicAuth(resourceServer.id, resourceServer.secret).slice(6)],
    ['KEK', server.database.kek],
    ['DPoP nonce secret', server.app.secrets.dpopNonceSecret.toString('base64url')],
    ['signing private key', String(server.app.keys.current.signer.privateJwk.d)],
  ] as const) {
    secrets.add(label, value);
  }
  const credentials = await readAdminCredentials(server);
  secrets.add('admin private key', String(credentials.private_jwk.d));
  admin = await obtainAdminToken(server);
  secrets.add('the admin token', admin.token);
  secrets.add('the admin DPoP private key', String((await exportJWK(admin.key.privateKey)).d));
});

afterAll(async () => {
  for (const undo of cleanup.reverse()) await undo();
});

// ---------------------------------------------------------------------------------------------------------------

describe('security headers', () => {
  /** One answer of each kind the server gives, gathered once. */
  const answers = new Map<string, WireResponse>();

  beforeAll(async () => {
    const token = await issueToken();
    const rsAuth = basicAuth(resourceServer.id, resourceServer.secret);
    answers.set(
      'POST /token (200)',
      await tokenRequest(
        { grant_type: 'client_credentials', resource: API },
        { authorization: basicAuth(client.id, client.secret) },
      ),
    );
    answers.set(
      'POST /token (400)',
      await tokenRequest(
        { grant_type: 'client_credentials' },
        { authorization: basicAuth(client.id, client.secret) },
      ),
    );
    answers.set(
      'POST /token (401)',
      await tokenRequest(
        { grant_type: 'client_credentials', resource: API },
        { authorization: basicAuth(client.id, 'wrong-secret-0123456789') },
      ),
    );
    answers.set(
      'POST /token/introspection (200)',
      await wire.send({
        method: 'POST',
        path: '/token/introspection',
        headers: { 'content-type': FORM, authorization: rsAuth },
        body: form({ token }),
      }),
    );
    answers.set(
      'POST /token/introspection (401)',
      await wire.send({
        method: 'POST',
        path: '/token/introspection',
        headers: {
          'content-type': FORM,
          authorization: basicAuth(resourceServer.id, 'wrong-secret-0123456789'),
        },
        body: form({ token }),
      }),
    );
    answers.set(
      'POST /token/revocation (200)',
      await wire.send({
        method: 'POST',
        path: '/token/revocation',
        headers: { 'content-type': FORM, authorization: basicAuth(client.id, client.secret) },
        body: form({ token }),
      }),
    );
    answers.set(
      'POST /token/revocation (400)',
      await wire.send({
        method: 'POST',
        path: '/token/revocation',
        headers: { 'content-type': FORM, authorization: basicAuth(client.id, client.secret) },
        body: form({}),
      }),
    );
    for (const path of [
      '/jwks',
      '/.well-known/oauth-authorization-server',
      '/.well-known/openid-configuration',
      '/healthz',
      '/readyz',
      '/no-such-endpoint',
      `${ADMIN_PREFIX}/openapi.json`,
    ]) {
      answers.set(`GET ${path}`, await wire.send({ method: 'GET', path }));
    }
    answers.set(`GET ${ADMIN_PREFIX}/clients (200)`, await adminRequest('GET', '/clients'));
    answers.set(
      `GET ${ADMIN_PREFIX}/clients (401)`,
      await wire.send({ method: 'GET', path: `${ADMIN_PREFIX}/clients` }),
    );
    answers.set(`POST ${ADMIN_PREFIX}/clients (400)`, await adminRequest('POST', '/clients', { name: '' }));
    for (const [what, response] of answers) {
      expect(response.status, `${what}: ${secrets.redact(response.text)}`).toBe(
        Number(/\((\d+)\)/.exec(what)?.[1] ?? (what.includes('no-such') ? 404 : 200)),
      );
    }
  });

  const every = () => [...answers.keys()];
  const header = (what: string, name: string) => {
    const value = answers.get(what)?.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };

  it.each([
    'POST /token (200)',
    'POST /token (400)',
    'POST /token (401)',
    'POST /token/introspection (200)',
    'POST /token/introspection (401)',
    `GET ${ADMIN_PREFIX}/clients (200)`,
    `GET ${ADMIN_PREFIX}/clients (401)`,
    `POST ${ADMIN_PREFIX}/clients (400)`,
    'GET /healthz',
  ])('%s is never stored by a cache: Cache-Control: no-store (RFC 6749 §5.1, RFC 7662 §4)', (what) => {
    expect(header(what, 'cache-control')).toMatch(/\bno-store\b/);
  });

  it('every answer tells browsers not to sniff its type: X-Content-Type-Options: nosniff', () => {
    const missing = every().filter((what) => header(what, 'x-content-type-options') !== 'nosniff');
    expect(missing, 'answers without X-Content-Type-Options: nosniff').toEqual([]);
  });

  it("every answer forbids framing and active content: Content-Security-Policy default-src 'none'; frame-ancestors 'none'", () => {
    const missing = every().filter((what) => {
      const csp = header(what, 'content-security-policy') ?? '';
      return !/default-src 'none'/.test(csp) || !/frame-ancestors 'none'/.test(csp);
    });
    expect(missing, "answers without a CSP of default-src 'none' and frame-ancestors 'none'").toEqual([]);
  });

  it('every answer keeps its URL out of Referer headers: Referrer-Policy: no-referrer', () => {
    const missing = every().filter((what) => header(what, 'referrer-policy') !== 'no-referrer');
    expect(missing, 'answers without Referrer-Policy: no-referrer').toEqual([]);
  });

  it('no answer names the software behind it (X-Powered-By, Server)', () => {
    for (const what of every()) {
      expect(header(what, 'x-powered-by'), what).toBeUndefined();
      expect(header(what, 'server'), what).toBeUndefined();
    }
  });

  it('every JSON answer says so, with its charset', () => {
    // An empty answer (a successful revocation, RFC 7009 §2.2) has no type to state.
    for (const what of every().filter((w) => answers.get(w)?.text !== '')) {
      if (what.startsWith('GET /jwks')) {
        expect(header(what, 'content-type'), what).toBe('application/jwk-set+json');
        continue;
      }
      expect(header(what, 'content-type'), what).toMatch(/^application\/json; charset=utf-8$/);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** Sends raw bytes on a new connection; resolves with the status line and how long the answer took. */
function rawExchange(bytes: string | Buffer, options: { keepOpenMs?: number } = {}) {
  return new Promise<{ statusLine: string; text: string; elapsedMs: number }>((resolve, reject) => {
    const { port } = new URL(server.url);
    const started = performance.now();
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ statusLine: text.split('\r\n')[0] ?? '', text, elapsedMs: performance.now() - started });
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const [head, body = ''] = text.split('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(head ?? '')?.[1];
      if (length !== undefined && Buffer.byteLength(body, 'latin1') >= Number(length)) finish();
    });
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', (error) => {
      if (text) finish();
      else reject(error);
    });
    socket.write(bytes);
    setTimeout(finish, options.keepOpenMs ?? 5_000);
  });
}

describe('body size limits', () => {
  const padded = (params: Record<string, string>, size: number) => {
    const base = new URLSearchParams(params).toString();
    return Buffer.from(`${base}&padding=${'x'.repeat(Math.max(0, size - base.length - 9))}`);
  };

  it('a token request within 56 KiB is served; one beyond is refused with 413 and an OAuth error', async () => {
    const auth = { authorization: basicAuth(client.id, client.secret) };
    const within = await wire.send({
      method: 'POST',
      path: '/token',
      headers: { 'content-type': FORM, dpop: await proofFor('/token'), ...auth },
      body: padded({ grant_type: 'client_credentials', resource: API }, 50 * 1024),
    });
    expect(within.status, secrets.redact(within.text)).toBe(200);
    secrets.add('an access token', (within.json as { access_token?: string }).access_token);
    const beyond = await wire.send({
      method: 'POST',
      path: '/token',
      headers: { 'content-type': FORM, dpop: await proofFor('/token'), ...auth },
      body: padded({ grant_type: 'client_credentials', resource: API }, 57 * 1024),
    });
    expect(beyond.status).toBe(413);
    expect(beyond.json).toMatchObject({ error: 'invalid_request' });
  });

  it.each(['/token', '/token/introspection', '/token/revocation'])(
    'POST %s beyond 56 KiB is refused with 413, with Content-Length or chunked',
    async (path) => {
      for (const chunked of [false, true]) {
        const response = await wire.send({
          method: 'POST',
          path,
          headers: {
            'content-type': FORM,
            authorization: basicAuth(resourceServer.id, resourceServer.secret),
          },
          body: padded({ token: 'x' }, 60 * 1024),
          chunked,
        });
        expect(response.status, `chunked=${String(chunked)}`).toBe(413);
        expect(response.json, `chunked=${String(chunked)}`).toMatchObject({ error: 'invalid_request' });
      }
    },
  );

  it.each(['/token', '/token/introspection', `${ADMIN_PREFIX}/clients`])(
    'a body announced far beyond the limit on POST %s is refused at once (413), without waiting for it',
    async (path) => {
      const headers = path.startsWith(ADMIN_PREFIX)
        ? `Content-Type: application/json\r\nAuthorization: DPoP ${admin.token}\r\n` +
          `DPoP: ${await proofFor(path, 'POST', { ath: ath(admin.token), key: admin.key })}\r\n`
        : `Content-Type: ${FORM}\r\n`;
      const answer = await rawExchange(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Content-Length: 104857600\r\n\r\ntoken=`,
      );
      expect(answer.statusLine).toMatch(/^HTTP\/1\.1 413 /);
      expect(answer.elapsedMs).toBeLessThan(3_000);
    },
  );

  it('an admin body of 64 KiB is read; one byte more is refused with 413 payload_too_large', async () => {
    const limit = 64 * 1024;
    const json = (size: number) => {
      const base = JSON.stringify({ name: 'limit' });
      return `${base.slice(0, -1)}${' '.repeat(size - base.length)}}`;
    };
    const within = await adminRequest('POST', '/clients', json(limit));
    expect(within.status, secrets.redact(within.text)).toBe(201);
    secrets.add('a client secret', (within.json as { client_secret?: string }).client_secret);
    const beyond = await adminRequest('POST', '/clients', json(limit + 1));
    expect(beyond.status).toBe(413);
    expect(beyond.json).toMatchObject({ code: 'payload_too_large' });
  });

  it('an admin body beyond 64 KiB sent chunked is refused with 413 too', async () => {
    const url = `${ADMIN_PREFIX}/clients`;
    const response = await wire.send({
      method: 'POST',
      path: url,
      headers: {
        authorization: `DPoP ${admin.token}`,
        dpop: await proofFor(url, 'POST', { ath: ath(admin.token), key: admin.key }),
        'content-type': 'application/json',
      },
      body: Buffer.from(`{"name":"x"${' '.repeat(70 * 1024)}}`),
      chunked: true,
    });
    expect(response.status).toBe(413);
    expect(response.json).toMatchObject({ code: 'payload_too_large' });
  });

  it('headers beyond 16 KiB are refused (431) and the server goes on serving', async () => {
    const answer = await rawExchange(
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
    );
    expect(answer.statusLine).toMatch(/^HTTP\/1\.1 431 /);
    const after = await wire.send({ method: 'GET', path: '/healthz' });
    expect(after.status).toBe(200);
  });

  it('a request line beyond 16 KiB is refused (414 or 431) and the server goes on serving', async () => {
    const answer = await rawExchange(
      `GET /token?x=${'a'.repeat(20 * 1024)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
    );
    expect(answer.statusLine).toMatch(/^HTTP\/1\.1 (414|431) /);
    expect((await wire.send({ method: 'GET', path: '/healthz' })).status).toBe(200);
  });

  it.each([
    ['arrays', (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`],
    ['objects', (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`],
  ])(
    'deeply nested JSON %s within the size limit are refused with 400, not a server error',
    async (_kind, nest) => {
      for (const depth of [100, 5_000, 10_000]) {
        const body = nest(depth);
        expect(body.length).toBeLessThanOrEqual(64 * 1024);
        const response = await adminRequest('POST', '/resources', body);
        expect(response.status, `depth ${depth}: ${response.text}`).toBe(400);
        expect(response.json, `depth ${depth}`).toMatchObject({ code: 'invalid_input' });
      }
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------

describe('no stack trace or internal message in any answer', () => {
  /** Requests chosen to reach error paths: malformed input of every kind, at every endpoint. */
  async function battery(): Promise<[string, WireRequest][]> {
    const token = await issueToken();
    const adminReq = (method: string, path: string, body?: string, extra: Record<string, string> = {}) =>
      (async (): Promise<WireRequest> => {
        const url = `${ADMIN_PREFIX}${path}`;
        return {
          method,
          path: url,
          headers: {
            authorization: `DPoP ${adminToken()}`,
            dpop: await proofFor(url.split('?')[0] ?? url, method, {
              ath: ath(adminToken()),
              key: adminKey(),
            }),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...extra,
          },
          body: body === undefined ? undefined : Buffer.from(body),
        };
      })();
    const formPost = (path: string, body: string, headers: Record<string, string> = {}): WireRequest => ({
      method: 'POST',
      path,
      headers: { 'content-type': FORM, ...headers },
      body: Buffer.from(body),
    });
    const basic = { authorization: basicAuth(client.id, client.secret) };
    const rs = { authorization: basicAuth(resourceServer.id, resourceServer.secret) };
    return [
      ['token: no body', { method: 'POST', path: '/token' }],
      [
        'token: invalid JSON as JSON',
        {
          method: 'POST',
          path: '/token',
          headers: { 'content-type': 'application/json' },
          body: Buffer.from('{'),
        },
      ],
      ['token: broken percent-encoding', formPost('/token', 'grant_type=%zz&resource=%E0%A4%A', basic)],
      [
        'token: NUL bytes',
        formPost('/token', 'grant_type=client_credentials&resource=https%3A%2F%2Fa%00b&scope=%00', basic),
      ],
      [
        'token: unknown charset',
        formPost('/token', 'grant_type=client_credentials', {
          ...basic,
          'content-type': `${FORM}; charset=bogus`,
        }),
      ],
      [
        'token: UTF-16 charset',
        formPost('/token', 'grant_type=client_credentials', {
          ...basic,
          'content-type': `${FORM}; charset=utf-16le`,
        }),
      ],
      [
        'token: random bytes',
        {
          method: 'POST',
          path: '/token',
          headers: { 'content-type': FORM, ...basic },
          body: randomBytes(512),
        },
      ],
      [
        'token: Basic not base64',
        formPost('/token', 'grant_type=client_credentials', { authorization: 'Basic %%%' }),
      ],
      [
        'token: Basic with bad percent-encoding',
        formPost('/token', 'grant_type=client_credentials', {
          authorization: `Basic ${Buffer.from('%zz:%zz').toString('base64')}`,
        }),
      ],
      [
        'token: garbage DPoP',
        formPost('/token', `grant_type=client_credentials&resource=${encodeURIComponent(API)}`, {
          ...basic,
          dpop: 'a.b.c',
        }),
      ],
      [
        'token: garbage assertion',
        formPost(
          '/token',
          `grant_type=client_credentials&client_assertion_type=${encodeURIComponent(JWT_BEARER_ASSERTION)}&client_assertion=eyJhbGciOiJub25lIn0.e30.`,
        ),
      ],
      [
        'token: assertion with a huge JSON payload',
        formPost(
          '/token',
          `grant_type=client_credentials&client_assertion_type=${encodeURIComponent(JWT_BEARER_ASSERTION)}&client_assertion=e30.${Buffer.from(JSON.stringify({ sub: 'x'.repeat(40_000) })).toString('base64url')}.e30`,
        ),
      ],
      ['token: GET', { method: 'GET', path: '/token' }],
      ['introspection: garbage token', formPost('/token/introspection', 'token=eyJ.eyJ.x', rs)],
      [
        'introspection: forged JWT header',
        formPost(
          '/token/introspection',
          `token=${Buffer.from('{"alg":"ES256","kid":"../../etc"}').toString('base64url')}.e30.AAAA`,
          rs,
        ),
      ],
      ['introspection: no token', formPost('/token/introspection', '', rs)],
      ['revocation: bad hint', formPost('/token/revocation', `token=${token}&token_type_hint=%00`, basic)],
      ['revocation: token of another client', formPost('/token/revocation', `token=${token}`, rs)],
      ['admin: invalid JSON', await adminReq('POST', '/clients', '{"name":')],
      ['admin: JSON with NUL', await adminReq('POST', '/clients', '{"name":"a\\u0000b"}')],
      [
        'admin: wrong content type',
        await adminReq('POST', '/clients', 'name=x', { 'content-type': 'text/plain' }),
      ],
      ['admin: bad percent-encoding in the path', await adminReq('GET', '/clients/%E0%A4%A')],
      ['admin: NUL in the path', await adminReq('GET', '/resources/%00')],
      [
        'admin: malformed cursor',
        await adminReq('GET', `/clients?cursor=${Buffer.from('["a\\u0000",1]').toString('base64url')}`),
      ],
      ['admin: repeated query parameter', await adminReq('GET', '/clients?limit=1&limit=2')],
      [
        'admin: huge token_ttl',
        await adminReq(
          'POST',
          '/resources',
          JSON.stringify({ identifier: 'https://x.example', scopes: ['a'], token_ttl: 1e308 }),
        ),
      ],
      [
        'admin: private key offered as a client key',
        await adminReq(
          'POST',
          '/clients',
          JSON.stringify({
            name: 'x',
            auth_method: 'private_key_jwt',
            jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' }] },
          }),
        ),
      ],
      [
        'admin: audit events since year 0',
        await adminReq('GET', '/audit-events?since=0000-01-01T00%3A00%3A00Z'),
      ],
      [
        'admin: audit events until past year 9999',
        await adminReq('GET', '/audit-events?until=9999-12-31T23%3A59%3A59-23%3A59'),
      ],
      [
        'admin: deeply nested JSON',
        await adminReq('POST', '/resources', `${'['.repeat(20_000)}${']'.repeat(20_000)}`),
      ],
      [
        'admin: garbage token',
        {
          method: 'GET',
          path: `${ADMIN_PREFIX}/clients`,
          headers: { authorization: 'DPoP eyJhbGciOiJFUzI1NiJ9.eyJ9.AAAA', dpop: 'x' },
        },
      ],
      [
        'admin: token with a forged kid',
        {
          method: 'GET',
          path: `${ADMIN_PREFIX}/clients`,
          headers: {
            authorization: `DPoP ${Buffer.from('{"alg":"ES256","kid":"nope","typ":"at+jwt"}').toString('base64url')}.e30.AAAA`,
            dpop: 'x',
          },
        },
      ],
    ];
  }
  const adminToken = () => admin.token;
  const adminKey = () => admin.key;
  const answers: [string, WireRequest, WireResponse][] = [];

  beforeAll(async () => {
    for (const [what, request] of await battery()) answers.push([what, request, await wire.send(request)]);
  });

  it('no answer carries a stack trace, a file path, a runtime error name or a database message', () => {
    const leaks = answers
      .map(([what, , response]) => [what, findInternalMarker(response.text), response.text] as const)
      .filter(([, marker]) => marker !== undefined)
      .map(
        ([what, marker, text]) =>
          `${what}: /${String(marker?.source)}/ in ${secrets.redact(text.slice(0, 300))}`,
      );
    expect(leaks).toEqual([]);
  });

  it('every refusal is a JSON error: an OAuth error at the protocol endpoints, a stable code at the admin API', () => {
    const bad = answers
      .filter(([, request, response]) => response.status >= 400 && request.method !== 'HEAD')
      .filter(([, request, response]) => {
        const body = response.json as { error?: unknown; code?: unknown } | undefined;
        return request.path.startsWith(ADMIN_PREFIX)
          ? typeof body?.code !== 'string'
          : typeof body?.error !== 'string';
      })
      .map(
        ([what, , response]) =>
          `${what}: ${response.status} ${String(response.headers['content-type'])} ${secrets.redact(response.text.slice(0, 100))}`,
      );
    expect(bad).toEqual([]);
  });

  it('malformed input is a client error, never a server error', () => {
    const errors = answers
      .filter(([, , response]) => response.status === 0 || response.status >= 500)
      .map(
        ([what, request, response]) =>
          `${what}: ${request.method} ${request.path.slice(0, 80)} → ${response.status || String(response.error)} ${response.text.slice(0, 120)}`,
      );
    expect(errors).toEqual([]);
  });

  it('no answer echoes a credential the request carried', () => {
    const echoed = answers
      .filter(([, , response]) => secrets.redact(response.text) !== response.text)
      .map(([what, , response]) => `${what}: ${secrets.redact(response.text.slice(0, 200))}`);
    expect(echoed).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** The files of src/, for the source checks below. */
function sourceFiles(dir = join(import.meta.dirname, '../../src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}
const SRC = join(import.meta.dirname, '../../src');

describe('constant-time comparison of secrets', () => {
  beforeEach(() => {
    timingSafeEqualSpy.mockClear();
  });

  describe('client secrets (matchesSecretHash)', () => {
    const secret = `mfy_${randomBytes(32).toString('base64url')}`;
    const other = `mfy_${randomBytes(32).toString('base64url')}`;
    const stored = [hashClientSecret(secret)];

    it('accepts the secret and refuses anything else', () => {
      expect(matchesSecretHash(secret, stored)).toBe(true);
      expect(matchesSecretHash(other, stored)).toBe(false);
      expect(matchesSecretHash(`${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`, stored)).toBe(
        false,
      );
      expect(matchesSecretHash(secret.toUpperCase(), stored)).toBe(false);
      expect(matchesSecretHash(`${secret} `, stored)).toBe(false);
    });

    it.each([
      ['empty', ''],
      ['one character', 'm'],
      ['a prefix', secret.slice(0, 10)],
      ['longer', `${secret}${secret}`],
      ['10,000 characters', 'x'.repeat(10_000)],
      ['non-ASCII', 'ß😀\u0000'],
    ])(
      'refuses a candidate of another length (%s) without throwing, through one fixed-length comparison',
      (_c, candidate) => {
        expect(matchesSecretHash(candidate, stored)).toBe(false);
        // Hashing first makes every comparison 32 bytes against 32 bytes, whatever the candidate's length.
        expect(timingSafeEqualSpy).toHaveBeenCalledTimes(1);
        const [a, b] = timingSafeEqualSpy.mock.calls[0] ?? [];
        expect((a as Buffer).length).toBe(32);
        expect((b as Buffer).length).toBe(32);
      },
    );

    it('compares with every stored hash, wherever the match is (no early exit)', () => {
      const hashes = [hashClientSecret(other), hashClientSecret(secret), hashClientSecret('third')];
      for (const rotated of [hashes, [...hashes].reverse()]) {
        timingSafeEqualSpy.mockClear();
        expect(matchesSecretHash(secret, rotated)).toBe(true);
        expect(timingSafeEqualSpy).toHaveBeenCalledTimes(3);
      }
      timingSafeEqualSpy.mockClear();
      expect(matchesSecretHash('nothing', hashes)).toBe(false);
      expect(timingSafeEqualSpy).toHaveBeenCalledTimes(3);
    });

    it('ignores a malformed stored hash without throwing', () => {
      expect(matchesSecretHash(secret, ['', 'short', '!!!not base64url!!!'])).toBe(false);
      expect(matchesSecretHash(secret, ['short', ...stored])).toBe(true);
    });

    it('is the comparison the token endpoint uses: a wrong secret and a right one both go through it', async () => {
      for (const candidate of ['wrong-secret-0123456789', client.secret]) {
        timingSafeEqualSpy.mockClear();
        const response = await tokenRequest(
          { grant_type: 'client_credentials', resource: API },
          { authorization: basicAuth(client.id, candidate) },
        );
        expect(response.status).toBe(candidate === client.secret ? 200 : 401);
        if (response.status === 200)
          secrets.add('an access token', (response.json as { access_token: string }).access_token);
        expect(timingSafeEqualSpy).toHaveBeenCalled();
        for (const [a, b] of timingSafeEqualSpy.mock.calls)
          expect((a as Buffer).length).toBe((b as Buffer).length);
      }
    });

    it('is the comparison client_secret_post uses too', async () => {
      timingSafeEqualSpy.mockClear();
      const response = await tokenRequest({
        grant_type: 'client_credentials',
        resource: API,
        client_id: postClient.id,
        client_secret: 'wrong-secret-0123456789',
      });
      expect(response.status).toBe(401);
      expect(timingSafeEqualSpy).toHaveBeenCalled();
    });
  });

  describe('admin API DPoP nonces (AdminNonces.accepts)', () => {
    const secret = randomBytes(32);
    const noon = new Date('2026-06-01T12:00:30Z').getTime();
    const at = (minutes: number, key = secret) =>
      new AdminNonces(key, { now: () => new Date(noon + minutes * 60_000) });
    const nonces = at(0);

    it('accepts the nonces of two steps either side, and no other', () => {
      for (const minutes of [-2, -1, 0, 1, 2])
        expect(nonces.accepts(at(minutes).current()), `${minutes}`).toBe(true);
      for (const minutes of [-3, 3, 60])
        expect(nonces.accepts(at(minutes).current()), `${minutes}`).toBe(false);
      expect(nonces.accepts(at(0, randomBytes(32)).current())).toBe(false);
    });

    it.each([
      [
        'same length, one character changed',
        (n: string) => `${n.slice(0, -1)}${n.endsWith('A') ? 'B' : 'A'}`,
      ],
      ['empty', () => ''],
      ['shorter', (n: string) => n.slice(1)],
      ['longer', (n: string) => `${n}A`],
      ['same length in UTF-16, longer in UTF-8', (n: string) => `${n.slice(0, -1)}é`],
    ])('refuses a nonce %s without throwing', (_c, change) => {
      expect(nonces.accepts(change(nonces.current()))).toBe(false);
    });

    it('compares same-length candidates with timingSafeEqual, against every accepted step', () => {
      const current = nonces.current();
      timingSafeEqualSpy.mockClear();
      expect(nonces.accepts(`${current.slice(0, -1)}${current.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
      expect(timingSafeEqualSpy).toHaveBeenCalledTimes(5);
    });
  });

  describe('the source', () => {
    /**
     * Equality (===, !==, ==, !=) between two values where one names a secret-like thing: each such comparison
     * must be on this list, with the reason it does not need constant time. A comparison against a literal
     * (undefined, a fixed string, a typeof) reveals nothing about a secret and is not listed.
     */
    const REVIEWED: Record<string, string> = {
      "admin/admin-auth.ts: ath !== createHash('sha256').update(token).digest('base64url')":
        "the proof's ath and the hash of the presented token: both come from the caller's own request, no server secret",
      "cli/sample-resource.ts: payload.ath !== createHash('sha256').update(token).digest('base64url')":
        'the same check in the demo resource server: the caller’s own values',
      'cli/admin-client.ts: target.origin === new URL(credentials.issuer).origin': 'URL origins, public',
      'keys/key.service.ts: formerKek === kek.id': 'KEK identifiers, public labels of which key sealed a row',
      'console/admin-user.service.ts: sealedWith(row.totp_secret) === kek.id':
        'KEK identifiers, public labels of which key sealed a TOTP seed',
      "cli/admin-user.commands.ts: (await ask('Repeat the password: ')) !== password":
        'the two entries a person typed at the prompt, compared on their own machine: no server secret',
      'console/sign-in.ts: Number(versionText) === row.credentials_version':
        'a counter of credential changes, public in the cookie it is read from; the cookie itself is compared in constant time',
      'console/admin-user.schemas.ts: input.password.toLowerCase() !== input.name':
        "a policy check of the caller's own new password against the name it sent",
    };
    const SECRET_LIKE =
      /secret|password|passphrase|credential|private|\bkek\b|hmac|signature|nonce|digest|\bath\b|hash/i;
    const EQUALITY = new Set([
      ts.SyntaxKind.EqualsEqualsEqualsToken,
      ts.SyntaxKind.ExclamationEqualsEqualsToken,
      ts.SyntaxKind.EqualsEqualsToken,
      ts.SyntaxKind.ExclamationEqualsToken,
    ]);
    const PUBLIC_MEMBERS = new Set(['length', 'size', 'kind', 'code', 'status', 'type', 'alg', 'method']);
    const isConstant = (node: ts.Expression): boolean =>
      ts.isStringLiteralLike(node) ||
      ts.isNumericLiteral(node) ||
      node.kind === ts.SyntaxKind.NullKeyword ||
      node.kind === ts.SyntaxKind.TrueKeyword ||
      node.kind === ts.SyntaxKind.FalseKeyword ||
      (ts.isIdentifier(node) && node.text === 'undefined') ||
      ts.isTypeOfExpression(node) ||
      ts.isPrefixUnaryExpression(node) ||
      (ts.isPropertyAccessExpression(node) && PUBLIC_MEMBERS.has(node.name.text));

    function scan(visit: (node: ts.Node, file: string, source: ts.SourceFile) => void) {
      for (const path of sourceFiles()) {
        const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
        const walk = (node: ts.Node) => {
          visit(node, relative(SRC, path), source);
          ts.forEachChild(node, walk);
        };
        walk(source);
      }
    }

    it('compares no secret-like value with ===/!== unless reviewed as public', () => {
      const found: string[] = [];
      scan((node, file) => {
        if (!ts.isBinaryExpression(node) || !EQUALITY.has(node.operatorToken.kind)) return;
        if (isConstant(node.left) || isConstant(node.right)) return;
        if (!SECRET_LIKE.test(node.left.getText()) && !SECRET_LIKE.test(node.right.getText())) return;
        const key = `${file}: ${node.getText()}`;
        if (!(key in REVIEWED)) found.push(key);
      });
      expect(
        found,
        'comparisons of secret-like values to review (timingSafeEqual over equal lengths, or REVIEWED)',
      ).toEqual([]);
    });

    it('compares no secret-like buffer with Buffer#equals, Buffer.compare or localeCompare', () => {
      const found: string[] = [];
      scan((node, file) => {
        if (!ts.isCallExpression(node)) return;
        const callee = node.expression.getText();
        if (!/(\.equals|Buffer\.compare|\.localeCompare)$/.test(callee)) return;
        if (SECRET_LIKE.test(node.getText())) found.push(`${file}: ${node.getText()}`);
      });
      expect(found).toEqual([]);
    });

    it('guards every timingSafeEqual with a length check (it throws on unequal lengths)', () => {
      const unguarded: string[] = [];
      let calls = 0;
      scan((node, file) => {
        if (!ts.isCallExpression(node) || !/(^|\.)timingSafeEqual$/.test(node.expression.getText())) return;
        calls += 1;
        const parent = node.parent;
        const guarded =
          ts.isBinaryExpression(parent) &&
          parent.operatorToken.kind === ts.SyntaxKind.AmpersandAmpersandToken &&
          parent.right === node &&
          /\.length\s*===\s*\S+\.length/.test(parent.left.getText());
        if (!guarded) unguarded.push(`${file}: ${node.getText()}`);
      });
      expect(calls).toBeGreaterThanOrEqual(2);
      expect(unguarded).toEqual([]);
    });

    it('looks up no row by a secret or its hash (an index lookup is not constant-time)', () => {
      const found = sourceFiles().filter((path) =>
        /['"]secret_hash['"]\s*,\s*['"]=/.test(readFileSync(path, 'utf8')),
      );
      expect(found.map((path) => relative(SRC, path))).toEqual([]);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('nothing sensitive in the logs', () => {
  beforeAll(async () => {
    // A session of everything that handles credentials, successful and failed; the other tests of this file add
    // theirs, and every value any of them used is in `secrets`.
    const jwt = await issueToken();
    const opaque = await issueToken(BILLING);
    const assertion = await createClientAssertion({
      clientId: jwtClient.id,
      audience: server.url,
      key: jwtClient.key,
      kid: 'k1',
    });
    secrets.add('a client assertion', assertion);
    const assertionResponse = await tokenRequest({
      grant_type: 'client_credentials',
      resource: API,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
    });
    expect(assertionResponse.status, secrets.redact(assertionResponse.text)).toBe(200);
    secrets.add('an access token', (assertionResponse.json as { access_token: string }).access_token);
    // The same assertion again (replay), and one signed by a stranger's key.
    await tokenRequest({
      grant_type: 'client_credentials',
      resource: API,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
    });
    const stranger = await generateKeyPair('ES256', { extractable: true });
    secrets.add("a stranger's private key", String((await exportJWK(stranger.privateKey)).d));
    const foreign = await createClientAssertion({
      clientId: jwtClient.id,
      audience: server.url,
      key: stranger.privateKey,
    });
    secrets.add('a foreign client assertion', foreign);
    await tokenRequest({
      grant_type: 'client_credentials',
      resource: API,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: foreign,
    });

    const wrongSecrets = [
      'mfy_wrong-secret-but-plausible-0123456789abcdef',
      `${client.secret.slice(0, -2)}xx`,
      postClient.secret,
    ];
    wrongSecrets.forEach((value, i) => {
      secrets.add(`wrong secret ${i}`, value);
    });
    for (const wrong of wrongSecrets) {
      await tokenRequest(
        { grant_type: 'client_credentials', resource: API },
        { authorization: basicAuth(client.id, wrong) },
      );
      secrets.add('Basic credentials with a wrong secret', basicAuth(client.id, wrong).slice(6));
      await tokenRequest({
        grant_type: 'client_credentials',
        resource: API,
        client_id: postClient.id,
        client_secret: wrong,
      });
    }
    await tokenRequest({
      grant_type: 'client_credentials',
      resource: API,
      client_id: postClient.id,
      client_secret: postClient.secret,
    });
    // A proof used twice, and a malformed one.
    const proof = await proofFor('/token');
    for (let i = 0; i < 2; i++) {
      await wire.send({
        method: 'POST',
        path: '/token',
        headers: { 'content-type': FORM, dpop: proof, authorization: basicAuth(client.id, client.secret) },
        body: form({ grant_type: 'client_credentials', resource: API }),
      });
    }
    await tokenRequest(
      { grant_type: 'client_credentials', resource: API },
      { authorization: basicAuth(client.id, client.secret), dpop: `${proof.slice(0, -4)}AAAA` },
    );

    const rs = basicAuth(resourceServer.id, resourceServer.secret);
    for (const token of [
      jwt,
      opaque,
      `${jwt.slice(0, -3)}abc`,
      `${opaque}x`,
      'not-a-token-but-long-enough',
    ]) {
      await wire.send({
        method: 'POST',
        path: '/token/introspection',
        headers: { 'content-type': FORM, authorization: rs },
        body: form({ token }),
      });
      await wire.send({
        method: 'POST',
        path: '/token/introspection',
        headers: {
          'content-type': FORM,
          authorization: basicAuth(resourceServer.id, 'wrong-rs-secret-0123456789'),
        },
        body: form({ token }),
      });
    }
    secrets.add(
      'Basic credentials with a wrong rs secret',
      basicAuth(resourceServer.id, 'wrong-rs-secret-0123456789').slice(6),
    );
    await wire.send({
      method: 'POST',
      path: '/token/revocation',
      headers: { 'content-type': FORM, authorization: rs },
      body: form({ token: jwt }),
    });
    await wire.send({
      method: 'POST',
      path: '/token/revocation',
      headers: { 'content-type': FORM, authorization: basicAuth(client.id, client.secret) },
      body: form({ token: jwt }),
    });
    await wire.send({
      method: 'POST',
      path: '/token/revocation',
      headers: { 'content-type': FORM, authorization: basicAuth(client.id, client.secret) },
      body: form({ token: opaque }),
    });
    // The token presented where tokens do not belong.
    await wire.send({
      method: 'GET',
      path: `/token?access_token=${jwt}`,
      headers: { authorization: `Bearer ${jwt}` },
    });

    // Admin: secrets issued and rotated, a private key offered and refused, bad tokens and proofs.
    const created = await adminRequest('POST', '/clients', {
      name: 'log-check',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const createdBody = created.json as { client_id: string; client_secret: string };
    secrets.add('a secret issued by the admin API', createdBody.client_secret);
    const rotated = await adminRequest('POST', `/clients/${createdBody.client_id}/secrets`, {
      previous_secret_expires_in: 0,
    });
    secrets.add('a rotated secret', (rotated.json as { client_secret: string }).client_secret);
    const privateJwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    secrets.add('a private key offered as a client key', String(privateJwk.d));
    await adminRequest('POST', '/clients', {
      name: 'bad-key',
      auth_method: 'private_key_jwt',
      jwks: { keys: [privateJwk] },
    });
    await adminRequest('GET', '/clients', undefined, `${admin.token.slice(0, -3)}abc`);
    await wire.send({
      method: 'GET',
      path: `${ADMIN_PREFIX}/clients`,
      headers: { authorization: `Bearer ${admin.token}` },
    });
    await wire.send({
      method: 'GET',
      path: `${ADMIN_PREFIX}/clients`,
      headers: { authorization: `DPoP ${admin.token}`, dpop: proof },
    });
    await wire.send({
      method: 'GET',
      path: `${ADMIN_PREFIX}/clients?token=${admin.token}`,
      headers: { authorization: `DPoP ${admin.token}` },
    });
    const adminCredentials = await readAdminCredentials(server);
    const adminAssertion = await createClientAssertion({
      clientId: adminCredentials.client_id,
      audience: server.url,
      key: await importJWK(adminCredentials.private_jwk, 'ES256'),
    });
    secrets.add('the admin client assertion', adminAssertion);
    await postToken(
      server.url,
      {
        grant_type: 'client_credentials',
        resource: `${server.url}/admin`,
        scope: 'admin:read',
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: adminAssertion,
      },
      { proof: 'garbage' },
    );
  });

  it('captured the session: audit lines of every kind', () => {
    const records = server.logs.records();
    for (const event of ['token', 'introspection', 'revocation', 'admin_request']) {
      expect(
        records.some((r) => r.event === event),
        event,
      ).toBe(true);
    }
  });

  it('holds no secret, token, proof, client assertion or private key in any line', () => {
    const leaks: string[] = [];
    const lines = server.logs.lines;
    for (const [label, value] of secrets.values()) {
      // The whole value, and the signature of a JWS on its own (a token cut at a dot is still a token).
      const fragments = [value, ...(value.split('.').length === 3 ? [value.split('.')[2] ?? ''] : [])].filter(
        (f) => f.length >= 16,
      );
      for (const fragment of fragments) {
        const line = lines.find((l) => l.includes(fragment));
        if (line)
          leaks.push(`${label}: ${secrets.redact(line.split(fragment).join(`[${label}]`)).slice(0, 400)}`);
      }
    }
    expect(lines.length).toBeGreaterThan(50);
    expect(leaks).toEqual([]);
  });
});
