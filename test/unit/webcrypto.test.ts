/**
 * WebCrypto as tuned for the token path (src/oidc/webcrypto.ts). Public JWK imports: a DPoP proof key seen before
 * is not imported again, yet every signature is still verified against it, and nothing but identical public input
 * shares a key. Digests and ECDSA signatures computed on node:crypto: every answer equals WebCrypto's own (the
 * prototype's methods, which tuning leaves alone), good inputs and bad alike, and calls outside the fast path keep
 * WebCrypto's errors.
 */
import { generateKeyPairSync, KeyObject, randomBytes, type webcrypto } from 'node:crypto';

import { EmbeddedJWK, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';

import { tuneWebCrypto } from '../../src/oidc/webcrypto.ts';

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
  tuneWebCrypto();
  // Installing twice keeps one cache.
  tuneWebCrypto();
});

describe('imports of public JWKs', () => {
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

/** WebCrypto's own methods: tuning defines the fast ones on the instance only. */
const webCrypto = {
  digest: (algorithm: string, data: webcrypto.BufferSource) =>
    SubtleCrypto.prototype.digest.call(subtle, algorithm, data),
  sign: (algorithm: webcrypto.EcdsaParams, key: webcrypto.CryptoKey, data: webcrypto.BufferSource) =>
    SubtleCrypto.prototype.sign.call(subtle, algorithm, key, data),
  verify: (
    algorithm: webcrypto.EcdsaParams,
    key: webcrypto.CryptoKey,
    signature: webcrypto.BufferSource,
    data: webcrypto.BufferSource,
  ) => SubtleCrypto.prototype.verify.call(subtle, algorithm, key, signature, data),
};

const hex = (buffer: ArrayBuffer) => Buffer.from(buffer).toString('hex');

describe('digests', () => {
  it('are tuned: the instance answers them, not the prototype', () => {
    expect(Object.hasOwn(subtle, 'digest')).toBe(true);
  });

  it('equal WebCrypto for every SHA and any length, given as ArrayBuffer, view, DataView or pooled Buffer', async () => {
    for (const algorithm of ['SHA-1', 'SHA-256', 'sha-384', 'SHA-512']) {
      for (const length of [0, 1, 55, 56, 64, 127, 1000]) {
        const bytes = randomBytes(length + 7);
        const view = new Uint8Array(bytes.buffer, bytes.byteOffset + 3, length);
        const expected = hex(await webCrypto.digest(algorithm, view));
        const copy = view.slice().buffer;
        for (const input of [
          view,
          copy,
          new DataView(copy),
          Buffer.from(view), // small Buffers sit in a shared pool
        ]) {
          const digest = await subtle.digest(algorithm, input);
          expect(digest).toBeInstanceOf(ArrayBuffer);
          expect(hex(digest)).toBe(expected);
        }
      }
    }
  });

  it('return a buffer of their own: changing it changes nothing else', async () => {
    const data = Buffer.from('a value');
    const first = new Uint8Array(await subtle.digest('SHA-256', data));
    const expected = hex(first.slice().buffer);
    first.fill(0);
    expect(hex(await subtle.digest('SHA-256', data))).toBe(expected);
    expect(first.buffer.byteLength).toBe(32);
  });

  it("keep WebCrypto's refusals for what the fast path does not take", async () => {
    const unsupported = await webCrypto.digest('MD5', new Uint8Array(1)).then(
      () => 'resolved',
      (error: unknown) => (error as Error).name,
    );
    expect(unsupported).toBe('NotSupportedError');
    await expect(subtle.digest('MD5', new Uint8Array(1))).rejects.toThrow(
      expect.objectContaining({ name: unsupported }),
    );
    await expect(subtle.digest('SHA-256', [1, 2, 3] as unknown as Uint8Array)).rejects.toThrow(TypeError);
    const shared = new Uint8Array(new SharedArrayBuffer(4));
    await expect(subtle.digest('SHA-256', shared)).rejects.toThrow(TypeError);
  });
});

describe('ECDSA signatures', () => {
  const CURVES = [
    ['P-256', 'SHA-256'],
    ['P-384', 'SHA-384'],
    ['P-521', 'SHA-512'],
    ['P-256', 'SHA-512'],
  ] as const;

  it('made on the fast path verify with WebCrypto, and WebCrypto signatures verify on it', async () => {
    for (const [namedCurve, hash] of CURVES) {
      const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve }, true, ['sign', 'verify']);
      const algorithm = { name: 'ECDSA', hash };
      const data = randomBytes(300);
      const fast = await subtle.sign(algorithm, pair.privateKey, data);
      const slow = await webCrypto.sign(algorithm, pair.privateKey, data);
      expect(fast.byteLength).toBe(slow.byteLength);
      expect(await webCrypto.verify(algorithm, pair.publicKey, fast, data)).toBe(true);
      expect(await subtle.verify(algorithm, pair.publicKey, slow, data)).toBe(true);
      expect(await subtle.verify({ name: 'ecdsa', hash: { name: hash } }, pair.publicKey, slow, data)).toBe(
        true,
      );
    }
  });

  it('agree with WebCrypto over many signatures, short r and s (leading zero bytes) included', async () => {
    const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const algorithm = { name: 'ECDSA', hash: 'SHA-256' };
    let short = 0;
    for (let i = 0; i < 512; i += 1) {
      const data = randomBytes(32);
      const fast = new Uint8Array(await subtle.sign(algorithm, pair.privateKey, data));
      const slow = new Uint8Array(await webCrypto.sign(algorithm, pair.privateKey, data));
      for (const signature of [fast, slow]) if (signature[0] === 0 || signature[32] === 0) short += 1;
      expect(fast.length).toBe(64);
      expect(await webCrypto.verify(algorithm, pair.publicKey, fast, data)).toBe(true);
      expect(await subtle.verify(algorithm, pair.publicKey, slow, data)).toBe(true);
    }
    // About 8 expected; the chance of none is below 1 in 3,000.
    expect(short).toBeGreaterThan(0);
  });

  it('answer false exactly where WebCrypto does: altered data, altered or misshapen signatures, another key', async () => {
    const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const other = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const algorithm = { name: 'ECDSA', hash: 'SHA-256' };
    const data = randomBytes(100);
    const signature = new Uint8Array(await webCrypto.sign(algorithm, pair.privateKey, data));
    const flipped = signature.slice();
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    const alteredData = Buffer.from(data);
    alteredData[0] = (alteredData[0] ?? 0) ^ 1;
    const cases: [string, webcrypto.CryptoKey, Uint8Array, Uint8Array][] = [
      ['as signed', pair.publicKey, signature, data],
      ['altered data', pair.publicKey, signature, alteredData],
      ['flipped bit', pair.publicKey, flipped, data],
      ['empty signature', pair.publicKey, new Uint8Array(0), data],
      ['short signature', pair.publicKey, signature.slice(0, 63), data],
      ['long signature', pair.publicKey, new Uint8Array([...signature, 0]), data],
      ['zero signature', pair.publicKey, new Uint8Array(64), data],
      ['DER-encoded signature', pair.publicKey, randomBytes(72), data],
      ['another key', other.publicKey, signature, data],
    ];
    for (const [name, key, sig, input] of cases) {
      const expected = await webCrypto.verify(algorithm, key, sig, input);
      expect(await subtle.verify(algorithm, key, sig, input), name).toBe(expected);
    }
    expect(await subtle.verify(algorithm, pair.publicKey, signature, data)).toBe(true);
  });

  it("keep WebCrypto's refusals: a key of the wrong type, or of another algorithm", async () => {
    const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const ecdh = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
    const algorithm = { name: 'ECDSA', hash: 'SHA-256' };
    const data = randomBytes(10);
    const outcome = async (promise: Promise<unknown>) =>
      promise.then(
        () => 'resolved',
        (error: unknown) => (error as Error).name,
      );
    const refusals: [Promise<unknown>, Promise<unknown>][] = [
      [
        subtle.verify(algorithm, pair.privateKey, new Uint8Array(64), data),
        webCrypto.verify(algorithm, pair.privateKey, new Uint8Array(64), data),
      ],
      [subtle.sign(algorithm, pair.publicKey, data), webCrypto.sign(algorithm, pair.publicKey, data)],
      [subtle.sign(algorithm, ecdh.privateKey, data), webCrypto.sign(algorithm, ecdh.privateKey, data)],
    ];
    for (const [tuned, original] of refusals) {
      const expected = await outcome(original);
      expect(expected).not.toBe('resolved');
      expect(await outcome(tuned)).toBe(expected);
    }
  });

  it('use non-extractable keys, imported from a JWK or generated, without a deprecated call', async () => {
    // Node deprecates reading a non-extractable CryptoKey with KeyObject.from (DEP0204).
    const from = vi.spyOn(KeyObject, 'from');
    try {
      const algorithm = { name: 'ECDSA', hash: 'SHA-256' };
      const data = randomBytes(64);
      const { privateJwk, publicJwk } = ecJwk();
      const privateKey = await subtle.importKey('jwk', privateJwk, ECDSA, false, ['sign']);
      const publicKey = await subtle.importKey('jwk', publicJwk, ECDSA, false, ['verify']);
      const signature = await subtle.sign(algorithm, privateKey, data);
      expect(await webCrypto.verify(algorithm, publicKey, signature, data)).toBe(true);
      expect(await subtle.verify(algorithm, publicKey, signature, data)).toBe(true);
      const generated = await subtle.generateKey(ECDSA, false, ['sign', 'verify']);
      const generatedSignature = await subtle.sign(algorithm, generated.privateKey, data);
      expect(await subtle.verify(algorithm, generated.publicKey, generatedSignature, data)).toBe(true);
      const readNonExtractable = from.mock.calls.filter(([key]) => !key.extractable);
      expect(readNonExtractable).toEqual([]);
    } finally {
      from.mockRestore();
    }
  });

  it('leave a hash outside the fast path (SHA-1) to WebCrypto', async () => {
    const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const algorithm = { name: 'ECDSA', hash: 'SHA-1' };
    const data = randomBytes(10);
    const signature = await subtle.sign(algorithm, pair.privateKey, data);
    expect(await webCrypto.verify(algorithm, pair.publicKey, signature, data)).toBe(true);
    expect(await subtle.verify(algorithm, pair.publicKey, signature, randomBytes(10))).toBe(false);
  });

  it('leave other algorithms to WebCrypto, which still answers them', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const pair = {
      publicKey: publicKey.toCryptoKey('Ed25519', true, ['verify']),
      privateKey: privateKey.toCryptoKey('Ed25519', true, ['sign']),
    };
    const data = randomBytes(50);
    const signature = await subtle.sign({ name: 'Ed25519' }, pair.privateKey, data);
    expect(await subtle.verify({ name: 'Ed25519' }, pair.publicKey, signature, data)).toBe(true);
    expect(await subtle.verify({ name: 'Ed25519' }, pair.publicKey, signature, randomBytes(50))).toBe(false);
  });
});
