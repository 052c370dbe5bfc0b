import { createHmac, generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';

import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, JWT_BEARER_ASSERTION } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { UNTHROTTLED } from '../support/unthrottled.ts';

/**
 * Negative battery for client authentication at the three endpoints that authenticate clients: token
 * (RFC 6749 §2.3, §5.2), introspection (RFC 7662 §2.1, §2.3) and revocation (RFC 7009 §2.1, §2.2.1).
 * Client assertions follow RFC 7523 §3 and §3.2 (an invalid client JWT: `invalid_client`) and RFC 7521 §4.2.
 * token.test.ts and replay.test.ts hold the first cases at the token endpoint; this file runs every case at all
 * three endpoints.
 */

const API = 'https://api.example.com';

let server: TestServer;
let dpopKey: DpopKey;
let signingKey: CryptoKey;
let publicJwk: JWK;
/** client_secret_basic, client_secret_post, private_key_jwt (ES256, kid k1), another private_key_jwt client. */
let basic: { id: string; secret: string };
let post: { id: string; secret: string };
let keyed: { id: string };
let otherKeyed: { id: string };
/**
 * A private_key_jwt client registered with a 1024-bit RSA key (RFC 7518 §3.3 asks for 2048 at least); undefined
 * when the server already refuses such a key at registration (negative-admin.test.ts asks it to).
 */
let weakKeyed: { id: string; privateKey: KeyObject } | undefined;

const statuses: number[] = [];

/** A response body for a failure message, never with a secret or a token in it. */
const shown = (body: unknown) =>
  JSON.stringify(body, (key, value: unknown) =>
    ['client_secret', 'access_token', 'refresh_token'].includes(key) ? '<redacted>' : value,
  );

beforeAll(async () => {
  server = await startTestServer({ env: { ...UNTHROTTLED } });
  await server.createResource({ identifier: API, scopes: ['read'] });
  const grants = [{ resource: API, scopes: ['read'] }];
  const pair = await generateKeyPair('ES256', { extractable: true });
  signingKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
  const otherPair = await generateKeyPair('ES256', { extractable: true });
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const [b, p, k, o, w, key] = await Promise.all([
    server.createClient({ name: 'basic', grants, introspects: [API] }),
    server.createClient({ name: 'post', auth_method: 'client_secret_post', grants, introspects: [API] }),
    server.createClient({
      name: 'keyed',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...publicJwk, kty: 'EC' }] },
      grants,
      introspects: [API],
    }),
    server.createClient({
      name: 'other keyed',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(otherPair.publicKey)), kty: 'EC', kid: 'k1', alg: 'ES256' }] },
      grants,
    }),
    server
      .createClient({
        name: 'weak keyed',
        auth_method: 'private_key_jwt',
        jwks: {
          keys: [{ ...weak.publicKey.export({ format: 'jwk' }), kty: 'RSA', kid: 'w1', alg: 'RS256' }],
        },
        grants,
      })
      .catch(() => undefined),
    generateDpopKey(),
  ]);
  basic = { id: b.client.id, secret: b.clientSecret ?? '' };
  post = { id: p.client.id, secret: p.clientSecret ?? '' };
  keyed = { id: k.client.id };
  otherKeyed = { id: o.client.id };
  weakKeyed = w && { id: w.client.id, privateKey: weak.privateKey };
  dpopKey = key;
});
afterAll(() => server.close());

const now = () => Math.floor(Date.now() / 1000);
const defined = (members: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(members).filter(([, value]) => value !== undefined));

interface Endpoint {
  label: string;
  path: string;
  /** The request's own parameters, without client authentication. */
  params: () => Record<string, string>;
}

const TOKEN: Endpoint = {
  label: 'token endpoint',
  path: '/token',
  params: () => ({ grant_type: 'client_credentials', resource: API }),
};
// An inactive token is enough: these requests are about who asks, not about the token.
const INTROSPECTION: Endpoint = {
  label: 'introspection endpoint',
  path: '/token/introspection',
  params: () => ({ token: 'not-a-token-of-this-server' }),
};
const REVOCATION: Endpoint = {
  label: 'revocation endpoint',
  path: '/token/revocation',
  params: () => ({ token: 'not-a-token-of-this-server' }),
};
const ENDPOINTS = [TOKEN, INTROSPECTION, REVOCATION];

type Response = request.Response;

/** POST to the endpoint with these form members (a string: sent as is) and, at /token, a fresh DPoP proof. */
async function send(
  endpoint: Endpoint,
  form: Record<string, string> | string,
  options: { authorization?: string; proof?: string } = {},
): Promise<Response> {
  let call = request(server.url).post(endpoint.path).type('form');
  if (options.authorization !== undefined) call = call.set('Authorization', options.authorization);
  if (endpoint === TOKEN) {
    call = call.set('DPoP', options.proof ?? (await createProof(dpopKey, { htu: `${server.url}/token` })));
  }
  const res = await call.send(typeof form === 'string' ? form : { ...endpoint.params(), ...form });
  statuses.push(res.status);
  return res;
}

interface AssertionSpec {
  clientId?: string;
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  key?: CryptoKey | Uint8Array;
}

/** A client assertion (RFC 7523 §3) of `keyed`, signed by its registered key, with any member changed. */
function assertion(spec: AssertionSpec = {}): Promise<string> {
  const id = spec.clientId ?? keyed.id;
  const claims = defined({
    iss: id,
    sub: id,
    aud: server.url,
    iat: now(),
    exp: now() + 60,
    jti: randomUUID(),
    ...spec.claims,
  });
  const header = defined({ alg: 'ES256', kid: 'k1', ...spec.header });
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(spec.key ?? signingKey);
}

/** A compact JWS built by hand, for what JOSE libraries refuse to sign. */
function handMade(header: object, claims: object, signer: (input: string) => string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode(header)}.${encode(claims)}`;
  return `${input}.${signer(input)}`;
}

const assertionClaims = () => ({
  iss: keyed.id,
  sub: keyed.id,
  aud: server.url,
  iat: now(),
  exp: now() + 60,
  jti: randomUUID(),
});

const withAssertion = (jwt: string, extra: Record<string, string> = {}) => ({
  client_assertion_type: JWT_BEARER_ASSERTION,
  client_assertion: jwt,
  ...extra,
});

/** RFC 6749 §5.2: 401 invalid_client; with a WWW-Authenticate challenge when the client used Authorization. */
function expectInvalidClient(res: Response, options: { challenge?: boolean } = {}) {
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  expect(Object.keys(res.body ?? {})).not.toContain('active');
  if (options.challenge) expect(res.headers['www-authenticate']).toMatch(/^Basic realm="/);
}

function expectInvalidRequest(res: Response, reason?: RegExp) {
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  if (reason) expect(res.body.error_description).toMatch(reason);
}

/** Authenticated: a token, an introspection answer, or a revocation (RFC 7009 §2.2: 200 for any token). */
function expectAuthenticated(endpoint: Endpoint, res: Response) {
  expect(res.status, shown(res.body)).toBe(200);
  if (endpoint === TOKEN) expect(res.body.token_type).toBe('DPoP');
  if (endpoint === INTROSPECTION) expect(res.body).toEqual({ active: false });
}

type AssertionCase = [string, () => Promise<string> | string];

const invalidAssertions: AssertionCase[] = [
  // RFC 7523 §3 item 3: aud identifies this authorization server (its issuer or token endpoint URL).
  ['for another server', () => assertion({ claims: { aud: 'https://other.example.com' } })],
  [
    'for the admin API (a resource, not this server)',
    () => assertion({ claims: { aud: `${server.url}/admin` } }),
  ],
  // RFC 7519 §4.1.3 and §2 (StringOrURI): audiences compare as case-sensitive strings, without normalisation.
  [
    'for the issuer spelled with an upper-case scheme',
    () => assertion({ claims: { aud: server.url.replace(/^http/, 'HTTP') } }),
  ],
  ['for the issuer with a trailing slash', () => assertion({ claims: { aud: `${server.url}/` } })],
  ['with an empty aud', () => assertion({ claims: { aud: '' } })],
  ['without aud', () => assertion({ claims: { aud: undefined } })],
  ['for a list of other audiences only', () => assertion({ claims: { aud: ['https://a.example', 'x'] } })],
  // RFC 7523 §3 item 4: exp is required and must not have passed (5 s of tolerance here).
  ['that has expired', () => assertion({ claims: { iat: now() - 120, exp: now() - 30 } })],
  ['without exp', () => assertion({ claims: { exp: undefined } })],
  ['with exp as a string', () => assertion({ claims: { exp: String(now() + 60) } })],
  // RFC 7523 §3 item 5: not before nbf.
  ['that is not yet valid (nbf in two minutes)', () => assertion({ claims: { nbf: now() + 120 } })],
  ['with nbf as a string', () => assertion({ claims: { nbf: String(now()) } })],
  // RFC 7523 §3 items 1 and 2, RFC 7521 §5.2: iss and sub are the client_id.
  ['whose iss is another client', () => assertion({ claims: { iss: otherKeyed.id } })],
  ['whose sub is another client', () => assertion({ claims: { sub: otherKeyed.id } })],
  [
    'naming another client throughout, signed by this client’s key',
    () => assertion({ clientId: otherKeyed.id }),
  ],
  ['without sub', () => assertion({ claims: { sub: undefined } })],
  ['without iss', () => assertion({ claims: { iss: undefined } })],
  ['of an unknown client', () => assertion({ clientId: 'no-such-client' })],
  // RFC 7523 §3 item 7: a jti lets the server refuse replays; Mayfly requires one.
  ['without jti', () => assertion({ claims: { jti: undefined } })],
  // RFC 7523 §3 item 9: signed by a key registered for the client, with an algorithm it accepts.
  [
    'signed by an unregistered key that claims the registered kid',
    async () => assertion({ key: (await generateKeyPair('ES256')).privateKey }),
  ],
  [
    'signed by an unregistered key with another kid',
    async () => assertion({ key: (await generateKeyPair('ES256')).privateKey, header: { kid: 'k9' } }),
  ],
  [
    'signed by an unregistered key without kid',
    async () => assertion({ key: (await generateKeyPair('ES256')).privateKey, header: { kid: undefined } }),
  ],
  ['with alg none', () => handMade({ alg: 'none' }, assertionClaims(), () => '')],
  [
    'with HS256 keyed with the registered public key (algorithm confusion)',
    () =>
      handMade({ alg: 'HS256', kid: 'k1' }, assertionClaims(), (input) =>
        createHmac('sha256', JSON.stringify(publicJwk)).update(input).digest('base64url'),
      ),
  ],
  [
    'with HS256 keyed with a shared secret (client_secret_jwt is not offered)',
    () => assertion({ header: { alg: 'HS256' }, key: randomBytes(32) }),
  ],
  [
    'whose claims were changed after signing',
    async () => {
      const [header, , signature] = (await assertion()).split('.');
      const claims = Buffer.from(JSON.stringify({ ...assertionClaims(), exp: now() + 86_400 })).toString(
        'base64url',
      );
      return `${header}.${claims}.${signature}`;
    },
  ],
  ['without its signature', async () => `${(await assertion()).split('.').slice(0, 2).join('.')}.`],
  [
    'that is a DPoP proof of the client',
    () => createProof(dpopKey, { htu: `${server.url}/token`, claims: { sub: keyed.id, iss: keyed.id } }),
  ],
];

describe.each(ENDPOINTS)('$label: client assertions (private_key_jwt)', (endpoint) => {
  it('authenticates a valid assertion, with the issuer or the token endpoint as audience (control)', async () => {
    expectAuthenticated(endpoint, await send(endpoint, withAssertion(await assertion())));
    const tokenEndpoint = await assertion({ claims: { aud: `${server.url}/token` } });
    expectAuthenticated(endpoint, await send(endpoint, withAssertion(tokenEndpoint)));
    // RFC 7519 §4.1.3: aud may be a list; it suffices that it holds this server.
    const list = await assertion({ claims: { aud: ['https://other.example.com', server.url] } });
    expectAuthenticated(endpoint, await send(endpoint, withAssertion(list)));
  });

  it.each(invalidAssertions)('refuses an assertion %s with 401 invalid_client', async (_case, make) => {
    expectInvalidClient(await send(endpoint, withAssertion(await make())));
  });

  // RFC 7523 §3.2: "If the client JWT is not valid ... The value of the error parameter MUST be invalid_client";
  // RFC 7521 §4.2.1 says the same of any invalid client assertion.
  it('refuses an assertion that is not a well-formed JWT with 401 invalid_client (RFC 7523 §3.2)', async () => {
    for (const jwt of ['not-a-jwt', (await assertion()).replace(/\.[^.]+\./, '.%%%.')]) {
      expectInvalidClient(await send(endpoint, withAssertion(jwt)));
    }
  });

  it('refuses RS256 with a 1024-bit key, even registered (RFC 7518 §3.3: 2048 bits at least)', async () => {
    // Refused at registration already: nothing more to try here.
    if (!weakKeyed) return;
    const { id, privateKey } = weakKeyed;
    const claims = { ...assertionClaims(), iss: id, sub: id };
    const jwt = handMade({ alg: 'RS256', kid: 'w1' }, claims, (input) =>
      sign('sha256', Buffer.from(input), privateKey).toString('base64url'),
    );
    expectInvalidClient(await send(endpoint, withAssertion(jwt)));
  });

  it('refuses an assertion used a second time (RFC 7523 §3 item 7)', async () => {
    const once = await assertion();
    expectAuthenticated(endpoint, await send(endpoint, withAssertion(once)));
    expectInvalidClient(await send(endpoint, withAssertion(once)));
  });

  it('refuses a new assertion that reuses the jti of an accepted one', async () => {
    const jti = randomUUID();
    expectAuthenticated(endpoint, await send(endpoint, withAssertion(await assertion({ claims: { jti } }))));
    const again = await assertion({ claims: { jti, iat: now() - 1 } });
    expectInvalidClient(await send(endpoint, withAssertion(again)));
  });

  // Latitude: RFC 7521 §4.2 does not name the error for a wrong or missing assertion type; the request is
  // malformed (RFC 6749 §5.2 invalid_request) rather than an invalid client JWT.
  it('refuses a missing or foreign client_assertion_type with 400 invalid_request', async () => {
    const jwt = await assertion();
    expectInvalidRequest(
      await send(endpoint, { client_assertion: jwt }),
      /client_assertion_type must be provided/,
    );
    expectInvalidRequest(
      await send(
        endpoint,
        withAssertion(await assertion(), {
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer',
        }),
      ),
      /client_assertion_type/,
    );
  });

  // Latitude: a client_id that contradicts the assertion makes the request inconsistent (invalid_request).
  it('refuses a client_id naming another client than the assertion with 400 invalid_request', async () => {
    const res = await send(endpoint, withAssertion(await assertion(), { client_id: otherKeyed.id }));
    expectInvalidRequest(res, /client_id mismatch/);
  });

  it('refuses an assertion from a client registered for client secrets', async () => {
    const jwt = await assertion({ clientId: basic.id });
    expectInvalidClient(await send(endpoint, withAssertion(jwt)));
  });
});

describe('client assertions across endpoints', () => {
  it('refuses at every endpoint an assertion first used at another one (one jti, one use)', async () => {
    const once = await assertion();
    expectAuthenticated(INTROSPECTION, await send(INTROSPECTION, withAssertion(once)));
    expectInvalidClient(await send(TOKEN, withAssertion(once)));
    expectInvalidClient(await send(REVOCATION, withAssertion(once)));
  });

  // A known limitation: the provider keeps one replay record per (client, jti) for both kinds of JWT, so a client
  // reusing its assertion's jti in its DPoP proof is refused as a replay. RFC 9449 §11.1 and RFC 7523 §3 track
  // jti per JWT type; a client following either never reuses a jti, so only a client bug meets this.
  it('refuses, as a replay, a DPoP proof reusing the jti of the same request’s client assertion', async () => {
    const jti = randomUUID();
    const proof = await createProof(dpopKey, { htu: `${server.url}/token`, claims: { jti } });
    const res = await send(TOKEN, withAssertion(await assertion({ claims: { jti } })), { proof });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_dpop_proof');
  });
});

describe.each(ENDPOINTS)('$label: client secrets', (endpoint) => {
  it('authenticates client_secret_basic and client_secret_post (control)', async () => {
    expectAuthenticated(
      endpoint,
      await send(endpoint, {}, { authorization: basicAuth(basic.id, basic.secret) }),
    );
    expectAuthenticated(endpoint, await send(endpoint, { client_id: post.id, client_secret: post.secret }));
  });

  it('refuses a wrong secret in Basic with 401, invalid_client and a Basic challenge (RFC 6749 §5.2)', async () => {
    for (const secret of [
      `${basic.secret.slice(0, -1)}x`,
      basic.secret.toUpperCase(),
      `${basic.secret} `,
      post.secret,
    ]) {
      const res = await send(endpoint, {}, { authorization: basicAuth(basic.id, secret) });
      expectInvalidClient(res, { challenge: true });
    }
  });

  it('refuses a wrong secret in the body with 401 invalid_client', async () => {
    for (const secret of [`${post.secret.slice(0, -1)}x`, basic.secret]) {
      expectInvalidClient(await send(endpoint, { client_id: post.id, client_secret: secret }));
    }
  });

  it('refuses an unknown client with 401 invalid_client, in Basic and in the body', async () => {
    expectInvalidClient(await send(endpoint, {}, { authorization: basicAuth('no-such-client', 'mfy_x') }), {
      challenge: true,
    });
    expectInvalidClient(await send(endpoint, { client_id: 'no-such-client', client_secret: 'mfy_x' }));
  });

  // client_secret_jwt (RFC 7523 §2.2 with an HMAC of the secret) is not an offered method.
  it('refuses an HS256 assertion keyed with the client’s own secret with 401 invalid_client', async () => {
    const jwt = await assertion({
      clientId: basic.id,
      header: { alg: 'HS256', kid: undefined },
      key: new TextEncoder().encode(basic.secret),
    });
    expectInvalidClient(await send(endpoint, withAssertion(jwt)));
    expectInvalidClient(await send(endpoint, withAssertion(jwt, { client_id: basic.id })));
  });

  it('refuses a secret for a private_key_jwt client with 401 invalid_client', async () => {
    expectInvalidClient(await send(endpoint, { client_id: keyed.id, client_secret: 'mfy_guess' }));
    expectInvalidClient(await send(endpoint, {}, { authorization: basicAuth(keyed.id, 'mfy_guess') }), {
      challenge: true,
    });
  });

  // RFC 6749 §5.2 lists "no client authentication included" as invalid_client (400, or 401 as this server
  // answers every other invalid_client).
  it('refuses a request with no client authentication with invalid_client (RFC 6749 §5.2)', async () => {
    const res = await send(endpoint, {});
    expectInvalidClient(res);
  });

  // RFC 6749 §5.2: an "unsupported authentication method" is invalid_client; a client that used the
  // Authorization header gets 401 with a WWW-Authenticate challenge (Basic, the scheme this server supports).
  it('refuses an unsupported Authorization scheme with 401 invalid_client and a challenge (RFC 6749 §5.2)', async () => {
    const answers: string[] = [];
    for (const authorization of ['Bearer abc', 'Digest username="x", realm="y"', 'DPoP abc']) {
      const res = await send(endpoint, {}, { authorization });
      const challenge = res.headers['www-authenticate'] === undefined ? 'no challenge' : 'a challenge';
      answers.push(`${authorization} → ${res.status} ${String(res.body.error)}, ${challenge}`);
    }
    expect(answers).toEqual([
      'Bearer abc → 401 invalid_client, a challenge',
      'Digest username="x", realm="y" → 401 invalid_client, a challenge',
      'DPoP abc → 401 invalid_client, a challenge',
    ]);
  });

  // Latitude: a Basic header that cannot be decoded is a malformed request (RFC 6749 §5.2 invalid_request).
  it.each<[string, string]>([
    ['bad base64', 'Basic !!!not-base64!!!'],
    ['no colon', `Basic ${Buffer.from('just-an-id').toString('base64')}`],
    ['nothing after the scheme', 'Basic '],
    [
      'two credentials',
      `Basic ${Buffer.from('a:b').toString('base64')} ${Buffer.from('c:d').toString('base64')}`,
    ],
    [
      'a malformed percent-encoding (RFC 6749 §2.3.1)',
      `Basic ${Buffer.from('%zz:secret').toString('base64')}`,
    ],
    ['an empty secret', `Basic ${Buffer.from('x:').toString('base64')}`],
  ])('refuses a Basic header with %s with 400 invalid_request', async (_case, authorization) => {
    expectInvalidRequest(await send(endpoint, {}, { authorization }));
  });

  // RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request";
  // §5.2 invalid_request: "utilizes more than one mechanism for authenticating the client".
  it('refuses two authentication methods at once with 400 invalid_request', async () => {
    const byBasic = { authorization: basicAuth(basic.id, basic.secret) };
    expectInvalidRequest(
      await send(endpoint, { client_id: basic.id, client_secret: basic.secret }, byBasic),
      /one mechanism/,
    );
    expectInvalidRequest(await send(endpoint, withAssertion(await assertion()), byBasic), /one mechanism/);
    expectInvalidRequest(
      await send(endpoint, { ...withAssertion(await assertion()), client_secret: post.secret }),
      /one mechanism/,
    );
  });

  // Latitude: a client_id beside Basic that names another client makes the request inconsistent.
  it('refuses a body client_id that contradicts the Basic credentials with 400 invalid_request', async () => {
    const res = await send(
      endpoint,
      { client_id: post.id },
      { authorization: basicAuth(basic.id, basic.secret) },
    );
    expectInvalidRequest(res, /client_id mismatch/);
  });

  it('refuses repeated credentials in the body with 400 invalid_request (RFC 6749 §3.2)', async () => {
    const params = new URLSearchParams(endpoint.params());
    const repeated = (name: string, a: string, b: string) => {
      const form = new URLSearchParams(params);
      form.append(name, a);
      form.append(name, b);
      return form;
    };
    const secretTwice = repeated('client_secret', post.secret, post.secret);
    secretTwice.set('client_id', post.id);
    expectInvalidRequest(await send(endpoint, secretTwice.toString()), /client_secret/);
    const idTwice = repeated('client_id', post.id, post.id);
    idTwice.set('client_secret', post.secret);
    expectInvalidRequest(await send(endpoint, idTwice.toString()), /client_id/);
    const jwt = await assertion();
    const assertionTwice = repeated('client_assertion', jwt, jwt);
    assertionTwice.set('client_assertion_type', JWT_BEARER_ASSERTION);
    expectInvalidRequest(await send(endpoint, assertionTwice.toString()), /client_assertion/);
  });
});

describe('the whole battery', () => {
  it('answered no request with a server error and logged none', () => {
    expect(statuses.filter((status) => status >= 500)).toEqual([]);
    expect(server.logs.records().filter((r) => typeof r.level === 'number' && r.level >= 50)).toEqual([]);
  });

  it('never logged a secret or an assertion', () => {
    const text = server.logs.text();
    for (const secret of [basic.secret, post.secret]) expect(text).not.toContain(secret);
  });
});
