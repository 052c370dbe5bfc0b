import { createHmac, generateKeyPairSync, hkdfSync, randomBytes, randomUUID, sign } from 'node:crypto';

import { decodeJwt, exportJWK, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { accessTokenHash, ADMIN_PREFIX, obtainAdminToken, type AdminToken } from '../support/admin.ts';
import { createProof, generateDpopKey, type DpopKey, type ProofOptions } from '../support/dpop.ts';
import { basicAuth } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { UNTHROTTLED } from '../support/unthrottled.ts';

/**
 * Negative battery for DPoP proofs (RFC 9449 §4.2, §4.3, §7, §8, §11.1), run against both places Mayfly checks
 * them: the token endpoint, an authorization server (errors: 400 with an OAuth error, RFC 9449 §5 and RFC 6749
 * §5.2), and the admin API, a protected resource (errors: 401 with a DPoP challenge, RFC 9449 §7.1).
 * dpop.test.ts and admin-auth.test.ts hold the first cases of each kind; this file runs every case at both.
 */

const API = 'https://api.example.com';
const NONCE_SECRET = randomBytes(32);
const STRICT_NONCE_SECRET = randomBytes(32);
/** oidc-provider: a proof without nonce is accepted while |now - iat| <= 300 s; the admin API adds 5 s. */
const BEYOND_WINDOW = 330;
const WITHIN_WINDOW = 270;

let server: TestServer;
let strict: TestServer;
let client: { id: string; secret: string };
let bearerClient: { id: string; secret: string };
let strictClient: { id: string; secret: string };
let admin: AdminToken;
let strictAdmin: AdminToken;
let tokenKey: DpopKey;

/** Every status answered in this file: none may be a server error. */
const statuses: number[] = [];

/** A response body for a failure message, never with a secret or a token in it. */
const shown = (body: unknown) =>
  JSON.stringify(body, (key, value: unknown) =>
    ['client_secret', 'access_token', 'refresh_token'].includes(key) ? '<redacted>' : value,
  );

beforeAll(async () => {
  [server, strict] = await Promise.all([
    startTestServer({
      env: { ...UNTHROTTLED, MAYFLY_DPOP_NONCE_SECRET: NONCE_SECRET.toString('base64url') },
    }),
    startTestServer({
      env: {
        ...UNTHROTTLED,
        MAYFLY_DPOP_REQUIRE_NONCE: 'true',
        MAYFLY_DPOP_NONCE_SECRET: STRICT_NONCE_SECRET.toString('base64url'),
      },
    }),
  ]);
  for (const s of [server, strict]) await s.createResource({ identifier: API, scopes: ['read'] });
  const asClient = (c: { client: { id: string }; clientSecret: string | undefined }) => ({
    id: c.client.id,
    secret: c.clientSecret ?? '',
  });
  client = asClient(
    await server.createClient({ name: 'svc', grants: [{ resource: API, scopes: ['read'] }] }),
  );
  bearerClient = asClient(
    await server.createClient({
      name: 'legacy',
      bearer_allowed: true,
      grants: [{ resource: API, scopes: ['read'] }],
    }),
  );
  strictClient = asClient(
    await strict.createClient({ name: 'svc', grants: [{ resource: API, scopes: ['read'] }] }),
  );
  [admin, strictAdmin, tokenKey] = await Promise.all([
    obtainAdminToken(server),
    obtainAdminToken(strict),
    generateDpopKey(),
  ]);
});
afterAll(async () => {
  await Promise.all([server.close(), strict.close()]);
});

const now = () => Math.floor(Date.now() / 1000);

type Response = request.Response;

function record<T extends { status: number }>(res: T): T {
  statuses.push(res.status);
  return res;
}

/** Nonces exactly as the two nonce issuers derive them, so stale and foreign ones can be made at will. */
const NONCE_STEP = 60;
const nonceStep = () => Math.floor(Date.now() / 1000 / NONCE_STEP);
function providerNonce(secret: Buffer, step: number): string {
  const salt = Buffer.alloc(8);
  salt.writeBigUInt64BE(BigInt(step));
  return Buffer.from(hkdfSync('sha256', secret, salt, 'DPoP', 32)).toString('base64url');
}
function adminNonce(secret: Buffer, step: number): string {
  const salt = Buffer.alloc(8);
  salt.writeBigUInt64BE(BigInt(step));
  return Buffer.from(hkdfSync('sha256', secret, salt, 'Mayfly admin API DPoP nonce', 32)).toString(
    'base64url',
  );
}

/** A compact JWS built by hand, for algorithms and keys that JOSE libraries rightly refuse to produce. */
function handMade(header: object, claims: object, signer: (input: string) => string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode(header)}.${encode(claims)}`;
  return `${input}.${signer(input)}`;
}

/** What a proof is made for: the request it accompanies. */
interface ProofTarget {
  key: DpopKey;
  htm: string;
  htu: string;
  ath: string | undefined;
}

const proofFor = (t: ProofTarget, options: Partial<ProofOptions> = {}) =>
  createProof(t.key, { htm: t.htm, htu: t.htu, ...(t.ath ? { ath: t.ath } : {}), ...options });

const claimsFor = (t: ProofTarget) => ({
  htm: t.htm,
  htu: t.htu,
  iat: now(),
  jti: randomUUID(),
  ...(t.ath ? { ath: t.ath } : {}),
});

interface Endpoint {
  label: string;
  /** The server the endpoint belongs to. */
  server: () => TestServer;
  target: () => ProofTarget;
  /** The request, with this DPoP header (an array: one field line per element; undefined: none). */
  send: (proof: string | string[] | undefined, headers?: Record<string, string>) => Promise<Response>;
  expectRefused: (res: Response, error: string, reason?: RegExp) => void;
  expectAccepted: (res: Response, key: DpopKey) => void;
}

/** RFC 9449 §5 and RFC 6749 §5.2: 400, an OAuth error in a JSON body, and no token. */
function expectTokenRefusal(res: Response, error: string, reason?: RegExp) {
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(res.body ?? {})).not.toContain('access_token');
  if (reason) expect(res.body.error_description).toMatch(reason);
  if (error === 'use_dpop_nonce') expect(res.headers['dpop-nonce']).toMatch(/^[\w-]{43}$/);
}

function expectTokenIssued(res: Response, key: DpopKey) {
  expect(res.status, shown(res.body)).toBe(200);
  expect(res.body.token_type).toBe('DPoP');
  expect(decodeJwt(res.body.access_token as string).cnf).toEqual({ jkt: key.thumbprint });
}

/** RFC 9449 §7.1: 401 with a DPoP challenge naming the error; Mayfly's stable admin error code. */
function expectAdminRefusal(res: Response, code: string, reason?: RegExp) {
  expect({ status: res.status, code: res.body.code }).toEqual({ status: 401, code });
  expect(res.headers['www-authenticate']).toMatch(new RegExp(`^DPoP error="${code}"`));
  if (reason) expect(res.body.message).toMatch(reason);
  if (code === 'use_dpop_nonce') expect(res.headers['dpop-nonce']).toMatch(/^[\w-]{43}$/);
}

function tokenEndpoint(
  label: string,
  s: () => TestServer,
  c: () => { id: string; secret: string },
): Endpoint {
  return {
    label,
    server: s,
    target: () => ({ key: tokenKey, htm: 'POST', htu: `${s().url}/token`, ath: undefined }),
    async send(proof, headers = {}) {
      let call = request(s().url)
        .post('/token')
        .type('form')
        .set('Authorization', basicAuth(c().id, c().secret));
      for (const [name, value] of Object.entries(headers)) call = call.set(name, value);
      if (proof !== undefined) call = call.set('DPoP', proof as string);
      return record(await call.send({ grant_type: 'client_credentials', resource: API }));
    },
    expectRefused: expectTokenRefusal,
    expectAccepted: expectTokenIssued,
  };
}

function adminEndpoint(label: string, s: () => TestServer, token: () => AdminToken): Endpoint {
  const path = `${ADMIN_PREFIX}/resources`;
  return {
    label,
    server: s,
    target: () => ({
      key: token().key,
      htm: 'GET',
      htu: `${s().url}${path}`,
      ath: accessTokenHash(token().token),
    }),
    async send(proof, headers = {}) {
      let call = request(s().url).get(path).set('Authorization', `DPoP ${token().token}`);
      for (const [name, value] of Object.entries(headers)) call = call.set(name, value);
      if (proof !== undefined) call = call.set('DPoP', proof as string);
      return record(await call);
    },
    expectRefused: expectAdminRefusal,
    expectAccepted(res) {
      expect(res.status, shown(res.body)).toBe(200);
    },
  };
}

const TOKEN = tokenEndpoint(
  'the token endpoint',
  () => server,
  () => client,
);
const ADMIN = adminEndpoint(
  'the admin API',
  () => server,
  () => admin,
);
const STRICT_TOKEN = tokenEndpoint(
  'the token endpoint',
  () => strict,
  () => strictClient,
);
const STRICT_ADMIN = adminEndpoint(
  'the admin API',
  () => strict,
  () => strictAdmin,
);

/** A case: how to spoil the proof, and the reason each endpoint must give (token endpoint, admin API). */
type Spoiler = (t: ProofTarget) => Promise<string> | string;
type RefusalCase = [string, Spoiler, RegExp, RegExp];

const refusals: RefusalCase[] = [
  // §4.2 required members, §4.3 step 3.
  ['no typ', (t) => proofFor(t, { header: { typ: undefined } }), /typ/, /typ/],
  ['no jwk', (t) => proofFor(t, { header: { jwk: undefined } }), /jwk/, /public key/],
  ['a jwk that is a string', (t) => proofFor(t, { header: { jwk: 'key' } }), /jwk/, /public key/],
  [
    'a key by reference (jku) instead of jwk',
    (t) => proofFor(t, { header: { jwk: undefined, jku: 'https://keys.example.com/jwks.json' } }),
    /jwk/,
    /public key/,
  ],
  ['no jti', (t) => proofFor(t, { claims: { jti: undefined } }), /jti/, /jti/],
  ['an empty jti', (t) => proofFor(t, { claims: { jti: '' } }), /jti/, /jti/],
  ['no htm', (t) => proofFor(t, { claims: { htm: undefined } }), /htm/, /htm/],
  ['no htu', (t) => proofFor(t, { claims: { htu: undefined } }), /htu/, /htu/],
  ['no iat', (t) => proofFor(t, { claims: { iat: undefined } }), /iat/, /iat/],
  // §4.3 step 2: a single well-formed JWT.
  ['a value that is not a JWT', () => 'not-a-jwt', /Invalid Compact JWS/i, /not a JWT/],
  [
    'a JWS in JSON serialization',
    async (t) => {
      const [protectedHeader, payload, signature] = (await proofFor(t)).split('.');
      return JSON.stringify({ protected: protectedHeader, payload, signature });
    },
    /Invalid Compact JWS/i,
    /exactly one|not a JWT/,
  ],
  [
    'five segments (a JWE shape)',
    async (t) => `${await proofFor(t)}.AAAA.BBBB`,
    /Invalid Compact JWS/i,
    /malformed|not a JWT/,
  ],
  // §4.3 step 5: an asymmetric algorithm, never none or a MAC, acceptable per local policy.
  [
    'alg none',
    (t) => handMade({ typ: 'dpop+jwt', alg: 'none', jwk: t.key.publicJwk }, claimsFor(t), () => ''),
    /alg/i,
    /signed with one of|not a JWT/,
  ],
  [
    'HS256 with a symmetric jwk',
    (t) => {
      const secret = randomBytes(32);
      return handMade(
        { typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: secret.toString('base64url') } },
        claimsFor(t),
        (input) => createHmac('sha256', secret).update(input).digest('base64url'),
      );
    },
    /alg/,
    // Refused either for the algorithm or for the secret key (k) in jwk.
    /signed with one of|only a public key/,
  ],
  [
    'HS256 keyed with the public jwk (algorithm confusion)',
    (t) =>
      handMade({ typ: 'dpop+jwt', alg: 'HS256', jwk: t.key.publicJwk }, claimsFor(t), (input) =>
        createHmac('sha256', JSON.stringify(t.key.publicJwk)).update(input).digest('base64url'),
      ),
    /alg/,
    /signed with one of/,
  ],
  [
    'RS256 with a 1024-bit key',
    (t) => {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      return handMade(
        { typ: 'dpop+jwt', alg: 'RS256', jwk: publicKey.export({ format: 'jwk' }) },
        claimsFor(t),
        (input) => sign('sha256', Buffer.from(input), privateKey).toString('base64url'),
      );
    },
    /2048/,
    /malformed|signed with one of/,
  ],
  [
    'ES256 over a P-384 key (alg and key disagree)',
    (t) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      return handMade(
        { typ: 'dpop+jwt', alg: 'ES256', jwk: publicKey.export({ format: 'jwk' }) },
        claimsFor(t),
        (input) =>
          sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString(
            'base64url',
          ),
      );
    },
    /./,
    /malformed|signature/,
  ],
  // §4.3 step 6: the signature verifies with the key in jwk.
  [
    'a signature by another key',
    async (t) => {
      const [header, payload] = (await proofFor(t)).split('.');
      const other = await createProof(await generateDpopKey(), { htm: t.htm, htu: t.htu });
      return `${header}.${payload}.${other.split('.')[2]}`;
    },
    /signature/,
    /signature/,
  ],
  [
    'no signature at all',
    async (t) => `${(await proofFor(t)).split('.').slice(0, 2).join('.')}.`,
    /signature|Compact JWS/,
    /signature|malformed/,
  ],
  [
    'claims changed after signing',
    async (t) => {
      const [header, , signature] = (await proofFor(t)).split('.');
      const claims = Buffer.from(JSON.stringify({ ...claimsFor(t), htm: 'PATCH' })).toString('base64url');
      return `${header}.${claims}.${signature}`;
    },
    /signature/,
    /signature/,
  ],
  // §4.3 step 7: the jwk holds no private key.
  [
    'a private EC key in jwk',
    async (t) => proofFor(t, { header: { jwk: await exportJWK(t.key.privateKey) } }),
    /public key|private/,
    /only a public key/,
  ],
  // §4.3 step 8: htm is the method of this request (RFC 9110 §9.1: methods are case-sensitive).
  ['another method', (t) => proofFor(t, { htm: t.htm === 'POST' ? 'GET' : 'POST' }), /htm/, /htm/],
  ['the method in lower case', (t) => proofFor(t, { htm: t.htm.toLowerCase() }), /htm/, /htm/],
  // §4.3 step 9: htu is this request's URI. RFC 3986 §6.2.2.1: scheme and host compare case-insensitively,
  // the path case-sensitively, so /Token is another resource than /token; a port, a scheme, a host, userinfo
  // and a trailing slash change the URI too. Both endpoints compare WHATWG-parsed URLs, which lower-case the
  // scheme and host, resolve dot-segments and keep the path as sent (accepted variants are tested below).
  // Percent-encoding normalisation (RFC 3986 §6.2.2.2, /%74oken for /token) is only a SHOULD of §4.3 and
  // neither endpoint applies it: not asserted here.
  [
    'another port',
    (t) => {
      const url = new URL(t.htu);
      url.port = String(Number(url.port) + 1);
      return proofFor(t, { htu: url.href });
    },
    /htu/,
    /htu/,
  ],
  [
    'another case in the path',
    (t) => {
      const url = new URL(t.htu);
      url.pathname = url.pathname.replace(/\/(\w)(\w*)$/, (_m, first: string, rest: string) => {
        return `/${first.toUpperCase()}${rest}`;
      });
      return proofFor(t, { htu: url.href });
    },
    /htu/,
    /htu/,
  ],
  ['a trailing slash', (t) => proofFor(t, { htu: `${t.htu}/` }), /htu/, /htu/],
  ['the https scheme', (t) => proofFor(t, { htu: t.htu.replace(/^http:/, 'https:') }), /htu/, /htu/],
  ['another host', (t) => proofFor(t, { htu: t.htu.replace('127.0.0.1', 'localhost') }), /htu/, /htu/],
  ['userinfo in the URI', (t) => proofFor(t, { htu: t.htu.replace('//', '//user@') }), /htu/, /htu/],
  ['a relative URI', (t) => proofFor(t, { htu: new URL(t.htu).pathname }), /htu/, /htu/],
  ['an htu that is not a string', (t) => proofFor(t, { claims: { htu: [t.htu] } }), /htu/, /htu/],
];

describe.each([TOKEN, ADMIN])('$label refuses a proof with', (endpoint) => {
  it.each(refusals)('%s', async (_case, spoil, tokenReason, adminReason) => {
    const proof = await spoil(endpoint.target());
    const res = await endpoint.send(proof);
    endpoint.expectRefused(res, 'invalid_dpop_proof', endpoint === TOKEN ? tokenReason : adminReason);
  });
});

describe.each([TOKEN, ADMIN])('$label, proofs and their header fields', (endpoint) => {
  it('refuses two DPoP header fields, even carrying two valid proofs (§4.3 step 1)', async () => {
    const t = endpoint.target();
    const res = await endpoint.send([await proofFor(t), await proofFor(t)]);
    endpoint.expectRefused(res, 'invalid_dpop_proof');
  });

  it('refuses a DPoP header field carrying two proofs in one line (§4.3 step 2)', async () => {
    const t = endpoint.target();
    const res = await endpoint.send(`${await proofFor(t)}, ${await proofFor(t)}`);
    endpoint.expectRefused(res, 'invalid_dpop_proof');
  });

  it('refuses a proof whose jwk names the bound key while another key signed it (§4.3 step 6, §7)', async () => {
    const t = endpoint.target();
    const other = await generateDpopKey();
    const proof = await createProof(other, {
      htm: t.htm,
      htu: t.htu,
      ...(t.ath ? { ath: t.ath } : {}),
      header: { jwk: t.key.publicJwk },
    });
    endpoint.expectRefused(await endpoint.send(proof), 'invalid_dpop_proof', /signature/);
  });

  it.each<[string, number]>([
    ['in the past', -BEYOND_WINDOW],
    ['in the future', BEYOND_WINDOW],
  ])('refuses an iat beyond the window %s (§4.3 step 11, §11.1)', async (_case, offset) => {
    const t = endpoint.target();
    const res = await endpoint.send(await proofFor(t, { claims: { iat: now() + offset } }));
    // The token endpoint (a nonce issuer) asks for a nonce instead, as §8 allows; the admin API has none here.
    if (endpoint === TOKEN) endpoint.expectRefused(res, 'use_dpop_nonce', /iat/);
    else endpoint.expectRefused(res, 'invalid_dpop_proof', /iat/);
  });

  it.each<[string, number]>([
    ['in the past', -WITHIN_WINDOW],
    ['in the future', WITHIN_WINDOW],
  ])('accepts an iat inside the window %s', async (_case, offset) => {
    const t = endpoint.target();
    endpoint.expectAccepted(
      await endpoint.send(await proofFor(t, { claims: { iat: now() + offset } })),
      t.key,
    );
  });

  it.each<[string, (htu: string) => string]>([
    ['a query', (htu) => `${htu}?scope=read&x=1`],
    ['a fragment', (htu) => `${htu}#section`],
    ['an empty query and fragment', (htu) => `${htu}?#`],
    // RFC 3986 §6.2.2.1 (case normalisation): the scheme is case-insensitive.
    ['the scheme in upper case', (htu) => htu.replace(/^http:/, 'HTTP:')],
    // RFC 3986 §6.2.2.3 (path segment normalisation), which §4.3 recommends applying before comparing.
    ['a dot-segment', (htu) => htu.replace(/\/([^/]+)$/, '/x/../$1')],
  ])('accepts an htu differing only by %s (§4.3 step 9)', async (_case, change) => {
    const t = endpoint.target();
    endpoint.expectAccepted(await endpoint.send(await proofFor(t, { htu: change(t.htu) })), t.key);
  });

  it.each(['application/dpop+jwt', 'DPoP+JWT'])(
    'accepts the typ %s: media types are case-insensitive and "application/" is implied (RFC 7515 §4.1.9)',
    async (typ) => {
      const t = endpoint.target();
      endpoint.expectAccepted(await endpoint.send(await proofFor(t, { header: { typ } })), t.key);
    },
  );

  it('refuses a new proof that reuses the jti of an accepted one (§11.1)', async () => {
    const t = endpoint.target();
    const jti = randomUUID();
    endpoint.expectAccepted(await endpoint.send(await proofFor(t, { claims: { jti } })), t.key);
    const again = await proofFor(t, { claims: { jti, iat: now() - 1 } });
    endpoint.expectRefused(await endpoint.send(again), 'invalid_dpop_proof', /replay|used before/);
  });

  it('refuses the same proof twice (§11.1)', async () => {
    const t = endpoint.target();
    const proof = await proofFor(t);
    endpoint.expectAccepted(await endpoint.send(proof), t.key);
    endpoint.expectRefused(await endpoint.send(proof), 'invalid_dpop_proof', /replay|used before/);
  });

  it('refuses a proof made for the other endpoint (htm and htu bind it to one request)', async () => {
    const t = endpoint.target();
    const other = endpoint === TOKEN ? ADMIN.target() : TOKEN.target();
    const proof = await createProof(t.key, {
      htm: other.htm,
      htu: other.htu,
      ...(t.ath ? { ath: t.ath } : {}),
    });
    endpoint.expectRefused(await endpoint.send(proof), 'invalid_dpop_proof', /htm|htu/);
  });
});

describe('the token endpoint, host and binding', () => {
  it('accepts proofs by ES384, PS256 and EdDSA keys (control for the algorithm cases)', async () => {
    for (const alg of ['ES384', 'PS256', 'EdDSA']) {
      const key = await generateDpopKey(alg);
      expectTokenIssued(await TOKEN.send(await proofFor({ ...TOKEN.target(), key })), key);
    }
  });

  it('compares scheme and host case-insensitively (RFC 3986 §6.2.2.1): a proof for HTTP://127.0.0.1 fits', async () => {
    const { port } = new URL(server.url);
    const proof = await createProof(tokenKey, { htu: `HTTP://127.0.0.1:${port}/token` });
    expectTokenIssued(await TOKEN.send(proof), tokenKey);
  });

  it('refuses a proof made for another host even when the request claims that host (Host is pinned to the issuer)', async () => {
    const { port } = new URL(server.url);
    for (const host of ['evil.example', `localhost:${port}`]) {
      const proof = await createProof(tokenKey, { htu: `http://${host}/token` });
      const res = await TOKEN.send(proof, { Host: host });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_dpop_proof');
      expect(res.body.error_description).toContain('htu');
    }
    const metadata = await request(server.url)
      .get('/.well-known/oauth-authorization-server')
      .set('Host', 'evil.example');
    expect(metadata.body.token_endpoint).toBe(`${server.url}/token`);
  });

  it('binds the token to the proof key: cnf.jkt is the proof key, and the admin API refuses the token with any other key (§6.1, §7)', async () => {
    const bound = await obtainAdminToken(server);
    expect(decodeJwt(bound.token).cnf).toEqual({ jkt: bound.key.thumbprint });
    const thief = await generateDpopKey();
    expect(thief.thumbprint).not.toBe(bound.key.thumbprint);
    const res = await ADMIN.send(
      await createProof(thief, {
        htm: 'GET',
        htu: `${server.url}${ADMIN_PREFIX}/resources`,
        ath: accessTokenHash(bound.token),
      }),
      { Authorization: `DPoP ${bound.token}` },
    );
    expectAdminRefusal(res, 'invalid_dpop_proof', /other than the one/);
  });

  it('refuses an invalid proof from a bearer-allowed client rather than issue a Bearer token (§4.3, §5)', async () => {
    const legacy = tokenEndpoint(
      'legacy',
      () => server,
      () => bearerClient,
    );
    const t = legacy.target();
    for (const proof of [
      await proofFor(t, { htm: 'GET' }),
      await proofFor(t, { header: { typ: 'JWT' } }),
      'not-a-jwt',
    ]) {
      expectTokenRefusal(await legacy.send(proof), 'invalid_dpop_proof');
    }
  });

  it('refuses a DPoP header field that is present but empty (§4.3 step 2: not a well-formed JWT)', async () => {
    const legacy = tokenEndpoint(
      'legacy',
      () => server,
      () => bearerClient,
    );
    expectTokenRefusal(await legacy.send(''), 'invalid_dpop_proof');
  });

  it('refuses a proof with a private OKP or RSA key in jwk (§4.3 step 7)', async () => {
    for (const alg of ['EdDSA', 'PS256']) {
      const key = await generateDpopKey(alg);
      const privateJwk: JWK = await exportJWK(key.privateKey);
      expect(privateJwk.d).toBeDefined();
      const proof = await createProof(key, { htu: `${server.url}/token`, header: { jwk: privateJwk } });
      expectTokenRefusal(await TOKEN.send(proof), 'invalid_dpop_proof');
    }
  });
});

describe('server nonces at the token endpoint (§8)', () => {
  it('accepts a nonce of the current window (control: the nonces below are made the way the server makes them)', async () => {
    const t = TOKEN.target();
    const proof = await proofFor(t, { nonce: providerNonce(NONCE_SECRET, nonceStep()) });
    expectTokenIssued(await TOKEN.send(proof), t.key);
  });

  it.each<[string, () => unknown]>([
    ['a stale nonce (ten minutes old)', () => providerNonce(NONCE_SECRET, nonceStep() - 10)],
    ['a nonce made with another server’s secret', () => providerNonce(randomBytes(32), nonceStep())],
    ['a nonce the admin API issues (a resource server’s)', () => adminNonce(NONCE_SECRET, nonceStep())],
    ['a forged nonce', () => 'A'.repeat(43)],
  ])('refuses %s with use_dpop_nonce and a fresh DPoP-Nonce', async (_case, nonce) => {
    const value = nonce() as string;
    const res = await TOKEN.send(await proofFor(TOKEN.target(), { claims: { nonce: value } }));
    expectTokenRefusal(res, 'use_dpop_nonce', /nonce/);
    expect(res.headers['dpop-nonce']).not.toBe(value);
    // The nonce named in the answer works.
    const t = TOKEN.target();
    expectTokenIssued(
      await TOKEN.send(await proofFor(t, { nonce: String(res.headers['dpop-nonce']) })),
      t.key,
    );
  });

  it('refuses a nonce that is not a string as an invalid proof', async () => {
    const res = await TOKEN.send(await proofFor(TOKEN.target(), { claims: { nonce: 12345 } }));
    expectTokenRefusal(res, 'invalid_dpop_proof', /nonce/);
  });
});

describe.each([STRICT_TOKEN, STRICT_ADMIN])('$label with nonces required', (endpoint) => {
  const nonceOf = (step: number, secret = STRICT_NONCE_SECRET) =>
    endpoint === STRICT_TOKEN ? providerNonce(secret, step) : adminNonce(secret, step);

  it('refuses a proof without a nonce, with use_dpop_nonce and the nonce to use, then accepts that nonce', async () => {
    const t = endpoint.target();
    const res = await endpoint.send(await proofFor(t));
    endpoint.expectRefused(res, 'use_dpop_nonce', /nonce/);
    const retried = await endpoint.send(await proofFor(t, { nonce: String(res.headers['dpop-nonce']) }));
    endpoint.expectAccepted(retried, t.key);
  });

  it('accepts a nonce of the current window (control)', async () => {
    const t = endpoint.target();
    endpoint.expectAccepted(await endpoint.send(await proofFor(t, { nonce: nonceOf(nonceStep()) })), t.key);
  });

  it.each<[string, () => string]>([
    ['a stale nonce (ten minutes old)', () => nonceOf(nonceStep() - 10)],
    ['a nonce from the future (ten minutes ahead)', () => nonceOf(nonceStep() + 10)],
    ['a nonce made with another server’s secret', () => nonceOf(nonceStep(), randomBytes(32))],
    [
      'the other endpoint’s nonce',
      () =>
        endpoint === STRICT_TOKEN
          ? adminNonce(STRICT_NONCE_SECRET, nonceStep())
          : providerNonce(STRICT_NONCE_SECRET, nonceStep()),
    ],
    ['an empty nonce', () => ''],
  ])('refuses %s with use_dpop_nonce', async (_case, nonce) => {
    const res = await endpoint.send(await proofFor(endpoint.target(), { claims: { nonce: nonce() } }));
    endpoint.expectRefused(res, 'use_dpop_nonce', /nonce/);
  });

  it('still refuses a proof with a valid nonce that is otherwise wrong', async () => {
    const t = endpoint.target();
    const res = await endpoint.send(await proofFor(t, { nonce: nonceOf(nonceStep()), htm: 'PUT' }));
    endpoint.expectRefused(res, 'invalid_dpop_proof', /htm/);
  });
});

describe('the whole battery', () => {
  it('answered no request with a server error and logged none', () => {
    expect(statuses.filter((status) => status >= 500)).toEqual([]);
    for (const s of [server, strict]) {
      expect(s.logs.records().filter((r) => typeof r.level === 'number' && r.level >= 50)).toEqual([]);
    }
  });
});
