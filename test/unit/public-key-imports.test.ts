/**
 * The cache of imported public JWKs (src/oidc/public-key-imports.ts): a DPoP proof key seen before is not imported
 * again, yet every signature is still verified against it, and nothing but identical public input shares a key.
 */
import { generateKeyPairSync, type webcrypto } from 'node:crypto';

import { EmbeddedJWK, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';

import { cachePublicKeyImports } from '../../src/oidc/public-key-imports.ts';

const subtle = globalThis.crypto.subtle;
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };

/** Members as JWKs carry them in DPoP headers: a kid or any other member included. */
type Jwk = webcrypto.JsonWebKey & Record<string, unknown>;

function ecJwk(): { publicJwk: Jwk; privateJwk: Jwk } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicJwk: publicKey.export({ format: 'jwk' }),
    privateJwk: privateKey.export({ format: 'jwk' }),
  };
}

beforeAll(() => {
  cachePublicKeyImports();
  // Installing twice keeps one cache.
  cachePublicKeyImports();
});

describe('cachePublicKeyImports', () => {
  it('returns the key imported before for the same public JWK, algorithm and usages', async () => {
    const { publicJwk } = ecJwk();
    const first = await subtle.importKey('jwk', { ...publicJwk }, ECDSA, true, ['verify']);
    const again = await subtle.importKey('jwk', { ...publicJwk }, ECDSA, true, ['verify']);
    expect(again).toBe(first);
    expect(first.type).toBe('public');
  });

  it('imports anew when anything in the input differs', async () => {
    const { publicJwk } = ecJwk();
    const base = await subtle.importKey('jwk', publicJwk, ECDSA, true, ['verify']);
    const withKid: Jwk = { ...publicJwk, kid: 'k2' };
    const otherKid = await subtle.importKey('jwk', withKid, ECDSA, true, ['verify']);
    const notExtractable = await subtle.importKey('jwk', publicJwk, ECDSA, false, ['verify']);
    expect(otherKid).not.toBe(base);
    expect(notExtractable).not.toBe(base);
    expect(notExtractable.extractable).toBe(false);
  });

  it('never caches private keys', async () => {
    const { privateJwk } = ecJwk();
    const first = await subtle.importKey('jwk', privateJwk, ECDSA, false, ['sign']);
    const again = await subtle.importKey('jwk', privateJwk, ECDSA, false, ['sign']);
    expect(again).not.toBe(first);
  });

  it('never caches a refused import: the same bad key is refused every time', async () => {
    const { publicJwk } = ecJwk();
    const bad: Jwk = { ...publicJwk, x: String(publicJwk.y) };
    await expect(subtle.importKey('jwk', bad, ECDSA, true, ['verify'])).rejects.toThrow();
    await expect(subtle.importKey('jwk', bad, ECDSA, true, ['verify'])).rejects.toThrow();
  });

  it('still verifies every proof: a proof claiming a cached key but signed by another is refused', async () => {
    const holder = await generateKeyPair('ES256');
    const thief = await generateKeyPair('ES256');
    const jwk = await exportJWK(holder.publicKey);
    const proof = (key: webcrypto.CryptoKey) =>
      new SignJWT({ htm: 'POST', htu: 'https://as.example/token', jti: crypto.randomUUID() })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .setIssuedAt()
        .sign(key);
    const options = { typ: 'dpop+jwt', algorithms: ['ES256'] };
    await expect(jwtVerify(await proof(holder.privateKey), EmbeddedJWK, options)).resolves.toBeDefined();
    await expect(jwtVerify(await proof(holder.privateKey), EmbeddedJWK, options)).resolves.toBeDefined();
    await expect(jwtVerify(await proof(thief.privateKey), EmbeddedJWK, options)).rejects.toThrow(
      'signature verification failed',
    );
  });
});
