import { createHash, createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey, type ProofOptions } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** Every check of RFC 9449 §4.3 at the token endpoint, each failing with its own OAuth error. */

const API = 'https://api.example.com';
let server: TestServer;
let client: { id: string; secret: string };
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: API, scopes: ['read'] });
  const created = await server.createClient({ name: 'svc', grants: [{ resource: API, scopes: ['read'] }] });
  client = { id: created.client.id, secret: created.clientSecret ?? '' };
  key = await generateDpopKey();
});
afterAll(() => server.close());

const now = () => Math.floor(Date.now() / 1000);
const htu = () => `${server.url}/token`;
const withProof = (proof: string) =>
  requestToken(server.url, { clientId: client.id, secret: client.secret, resource: API, proof });
const proofWith = (options: Omit<ProofOptions, 'htu'> & { htu?: string }) =>
  createProof(key, { htu: htu(), ...options });

async function expectRefused(proof: string, error: string, description?: RegExp) {
  const res = await withProof(proof);
  expect(res.status).toBe(400);
  expect(res.body.error).toBe(error);
  if (description) expect(res.body.error_description).toMatch(description);
  return res;
}

describe('§4.3 proof syntax and signature', () => {
  it('accepts a well-formed proof (control)', async () => {
    const res = await withProof(await proofWith({}));
    expect(res.status).toBe(200);
  });

  it.each([
    ['typ missing', { header: { typ: undefined } }, /typ/],
    ['typ wrong', { header: { typ: 'JWT' } }, /typ/],
    ['jwk missing', { header: { jwk: undefined } }, /jwk/],
    ['jti missing', { claims: { jti: undefined } }, /jti/],
    ['htm missing', { claims: { htm: undefined } }, /htm/],
    ['htu missing', { claims: { htu: undefined } }, /htu/],
    ['iat missing', { claims: { iat: undefined } }, /iat/],
    ['iat not a number', { claims: { iat: 'yesterday' } }, /iat/],
    ['jti not a string', { claims: { jti: 42 } }, /jti/],
  ])('refuses a proof with %s', async (_case, options, description) => {
    await expectRefused(await proofWith(options), 'invalid_dpop_proof', description);
  });

  it('refuses a proof that is not a JWT at all', async () => {
    await expectRefused('not-a-jwt', 'invalid_dpop_proof');
  });

  /** A compact JWS built by hand, for algorithms and keys that JOSE libraries rightly refuse to produce. */
  function handMade(header: object, sign: (input: string) => string): string {
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const claims = { htm: 'POST', htu: htu(), iat: now(), jti: randomBytes(8).toString('hex') };
    const input = `${encode(header)}.${encode(claims)}`;
    return `${input}.${sign(input)}`;
  }

  it('refuses alg none', async () => {
    await expectRefused(
      handMade({ typ: 'dpop+jwt', alg: 'none', jwk: key.publicJwk }, () => ''),
      'invalid_dpop_proof',
    );
  });

  it('refuses a symmetric alg (HS256)', async () => {
    const secret = randomBytes(32);
    const proof = handMade(
      { typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: secret.toString('base64url') } },
      (input) => createHmac('sha256', secret).update(input).digest('base64url'),
    );
    await expectRefused(proof, 'invalid_dpop_proof');
  });

  it('refuses an RSA key shorter than 2048 bits', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const proof = handMade({ typ: 'dpop+jwt', alg: 'RS256', jwk: await exportJWK(publicKey) }, (input) =>
      sign('sha256', Buffer.from(input), privateKey).toString('base64url'),
    );
    await expectRefused(proof, 'invalid_dpop_proof');
  });

  it('refuses a private key inside jwk', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    await expectRefused(await proofWith({ header: { jwk: privateJwk } }), 'invalid_dpop_proof');
  });

  it('refuses a bad signature', async () => {
    const proof = await proofWith({});
    const [header, payload] = proof.split('.');
    const other = await createProof(await generateDpopKey(), { htu: htu() });
    await expectRefused(`${header}.${payload}.${other.split('.')[2]}`, 'invalid_dpop_proof');
  });

  it('refuses a proof whose jwk is not the key that signed it', async () => {
    const other = await generateDpopKey();
    await expectRefused(await proofWith({ header: { jwk: other.publicJwk } }), 'invalid_dpop_proof');
  });
});

describe('§4.3 binding to this request', () => {
  it.each<[string, (base: URL) => { htm?: string; htu?: string }, RegExp]>([
    ['htm mismatch', () => ({ htm: 'GET' }), /htm/],
    ['htm in lower case', () => ({ htm: 'post' }), /htm/],
    ['htu of another path', (base) => ({ htu: `${base.origin}/token/introspection` }), /htu/],
    ['htu of another port', (base) => ({ htu: `http://127.0.0.1:${Number(base.port) + 1}/token` }), /htu/],
    ['htu with a trailing slash', (base) => ({ htu: `${base.origin}/token/` }), /htu/],
    ['htu with another case in the path', (base) => ({ htu: `${base.origin}/Token` }), /htu/],
    ['htu of another scheme', (base) => ({ htu: `https://127.0.0.1:${base.port}/token` }), /htu/],
    ['htu not a URL', () => ({ htu: 'token' }), /htu/],
  ])('refuses %s', async (_case, overrides, description) => {
    await expectRefused(await proofWith(overrides(new URL(server.url))), 'invalid_dpop_proof', description);
  });

  it('ignores query and fragment in htu, as §4.3 step 9 prescribes', async () => {
    const res = await withProof(await proofWith({ htu: `${htu()}?a=b#c` }));
    expect(res.status).toBe(200);
  });

  it('refuses a proof too far in the past or the future, offering a nonce instead', async () => {
    for (const iat of [now() - 600, now() + 600]) {
      const res = await expectRefused(await proofWith({ claims: { iat } }), 'use_dpop_nonce', /iat/);
      expect(res.headers['dpop-nonce']).toMatch(/^[\w-]+$/);
    }
  });

  it('refuses a replayed proof', async () => {
    const proof = await proofWith({});
    expect((await withProof(proof)).status).toBe(200);
    await expectRefused(proof, 'invalid_dpop_proof', /replayed/);
  });

  it('tolerates an ath claim at the token endpoint, where no access token is presented', async () => {
    const ath = createHash('sha256').update('x').digest('base64url');
    expect((await withProof(await proofWith({ ath }))).status).toBe(200);
  });
});

describe('§8 server nonces', () => {
  it('returns a DPoP-Nonce that a later proof may carry, and refuses a forged or foreign nonce', async () => {
    const first = await withProof(await proofWith({}));
    const nonce = String(first.headers['dpop-nonce']);
    expect(nonce).toMatch(/^[\w-]+$/);
    expect((await withProof(await proofWith({ nonce }))).status).toBe(200);

    await expectRefused(await proofWith({ nonce: 'forged-nonce' }), 'use_dpop_nonce', /nonce/);

    const other = await startTestServer();
    try {
      await other.createResource({ identifier: API, scopes: ['read'] });
      const c = await other.createClient({ name: 'o', grants: [{ resource: API, scopes: ['read'] }] });
      const res = await requestToken(other.url, {
        clientId: c.client.id,
        secret: c.clientSecret ?? '',
        resource: API,
        key,
      });
      const foreignNonce = String(res.headers['dpop-nonce']);
      expect(foreignNonce).toMatch(/^[\w-]+$/);
      await expectRefused(await proofWith({ nonce: foreignNonce }), 'use_dpop_nonce', /nonce/);
    } finally {
      await other.close();
    }
  });

  it('with nonces required, refuses a proof without one and gives the nonce to use', async () => {
    const strict = await startTestServer({ env: { MAYFLY_DPOP_REQUIRE_NONCE: 'true' } });
    try {
      await strict.createResource({ identifier: API, scopes: ['read'] });
      const c = await strict.createClient({ name: 'n', grants: [{ resource: API, scopes: ['read'] }] });
      const ask = (proof: string) =>
        requestToken(strict.url, {
          clientId: c.client.id,
          secret: c.clientSecret ?? '',
          resource: API,
          proof,
        });
      const first = await ask(await createProof(key, { htu: `${strict.url}/token` }));
      expect(first.status).toBe(400);
      expect(first.body.error).toBe('use_dpop_nonce');
      const nonce = String(first.headers['dpop-nonce']);
      expect(nonce).toMatch(/^[\w-]+$/);
      const second = await ask(await createProof(key, { htu: `${strict.url}/token`, nonce }));
      expect(second.status).toBe(200);
      expect(second.body.token_type).toBe('DPoP');
    } finally {
      await strict.close();
    }
  });
});
