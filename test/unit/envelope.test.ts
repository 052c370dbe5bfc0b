/**
 * Envelope encryption of private signing keys (src/keys/envelope.ts): AES-256-GCM under a KEK, the kid bound as
 * associated data, the KEK named by a public id so a former KEK can still open keys during a KEK rotation.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import type { Jwk } from '../../src/db/tables/signing-key.table.ts';
import { seal, sealedWith, toKek, unseal, UnsealError, type Kek } from '../../src/keys/envelope.ts';

/** A real private JWK: an EC P-256 key (d, x, y) or an Ed25519 key (d, x). */
function privateJwk(kid: string, type: 'ec' | 'ed25519' = 'ec'): Jwk {
  const { privateKey } =
    type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const { kty, crv, x, y, d } = privateKey.export({ format: 'jwk' });
  if (!kty || !d || !x) throw new Error('expected a private JWK');
  return { kty, crv, x, ...(y ? { y } : {}), d, kid, alg: type === 'ec' ? 'ES256' : 'EdDSA', use: 'sig' };
}

const newKek = () => toKek(randomBytes(32));
const ENCODINGS: readonly BufferEncoding[] = ['base64url', 'base64', 'hex'];
const spellings = (key: Buffer) => ENCODINGS.map((encoding) => key.toString(encoding));

/** The error `fn` throws, checked to be an UnsealError. */
function unsealError(fn: () => unknown): UnsealError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UnsealError);
    return error as UnsealError;
  }
  throw new Error('expected an UnsealError');
}

/** Every spelling of secret material a message or sealed value must never contain. */
function secretsOf(jwk: Jwk, ...keks: Kek[]): string[] {
  const members = ['d', 'x', 'y'].map((member) => jwk[member]).filter((value) => typeof value === 'string');
  const keys = keks.flatMap(({ key }) => spellings(key));
  return [...members, ...keys, JSON.stringify(jwk)];
}

function expectNoSecrets(text: string, secrets: readonly string[]): void {
  for (const secret of secrets) expect(text).not.toContain(secret);
}

/** The sealed value with one bit of one part flipped, re-encoded canonically. */
function flipBit(sealed: string, part: 2 | 3 | 4, byte: number): string {
  const parts = sealed.split('.');
  const bytes = Buffer.from(parts[part] ?? '', 'base64url');
  const index = byte % bytes.length;
  bytes.writeUInt8(bytes.readUInt8(index) ^ 0x01, index);
  parts[part] = bytes.toString('base64url');
  return parts.join('.');
}

describe('seal and unseal', () => {
  it.each(['ec', 'ed25519'] as const)('round-trips a %s private JWK in the v1 format', (type) => {
    const kek = newKek();
    const jwk = privateJwk('kid-1', type);
    const sealed = seal(kek, 'kid-1', jwk);
    // v1.<kek id>.<12-byte iv>.<ciphertext>.<16-byte tag>
    expect(sealed).toMatch(/^v1\.[\w-]{16}\.[\w-]{16}\.[\w-]+\.[\w-]{22}$/);
    expect(sealed.split('.')[1]).toBe(kek.id);
    expect(unseal([kek], 'kid-1', sealed)).toEqual(jwk);
  });

  it('reveals no member of the private JWK, nor the KEK', () => {
    const kek = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = seal(kek, 'kid-1', jwk);
    expect(sealed).not.toContain('"d"');
    expectNoSecrets(sealed, secretsOf(jwk, kek));
    // Nor in the ciphertext bytes themselves (it is not merely encoded).
    const ciphertext = Buffer.from(sealed.split('.')[3] ?? '', 'base64url');
    expect(ciphertext.includes(Buffer.from('"d"'))).toBe(false);
    expect(ciphertext.includes(Buffer.from(String(jwk.d)))).toBe(false);
  });

  it('never seals the same key twice alike: a fresh IV each time', () => {
    const kek = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = Array.from({ length: 32 }, () => seal(kek, 'kid-1', jwk));
    expect(new Set(sealed).size).toBe(32);
    expect(new Set(sealed.map((value) => value.split('.')[2])).size).toBe(32);
    for (const value of sealed) expect(unseal([kek], 'kid-1', value)).toEqual(jwk);
  });
});

describe('refusals', () => {
  it('does not open a sealed key moved to another kid, and says which kid', () => {
    const kek = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = seal(kek, 'kid-1', jwk);
    const error = unsealError(() => unseal([kek], 'kid-2', sealed));
    expect(error.message).toContain('kid-2');
    expect(error.message).toContain(kek.id);
    expect(error.message).toMatch(/does not open/);
    expectNoSecrets(error.message, secretsOf(jwk, kek));
  });

  it('binds the kid as associated data: a key sealed for one kid does not open for another, whatever the JWK says', () => {
    const kek = newKek();
    // The JWK inside names kid-2, so only the associated data (kid-1) can refuse it.
    const sealed = seal(kek, 'kid-1', privateJwk('kid-2'));
    expect(unsealError(() => unseal([kek], 'kid-2', sealed)).message).toContain('kid-2');
  });

  it('does not open a key whose JWK names another kid than the row it is sealed for', () => {
    const kek = newKek();
    const sealed = seal(kek, 'kid-1', privateJwk('kid-other'));
    expect(unsealError(() => unseal([kek], 'kid-1', sealed)).message).toContain('kid-1');
  });

  it.each([
    ['iv', 2],
    ['ciphertext', 3],
    ['tag', 4],
  ] as const)('refuses a sealed key with a flipped bit in its %s', (_name, part) => {
    const kek = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = seal(kek, 'kid-1', jwk);
    for (const byte of [0, 5, 11]) {
      const tampered = flipBit(sealed, part, byte);
      expect(tampered).not.toBe(sealed);
      const error = unsealError(() => unseal([kek], 'kid-1', tampered));
      expect(error.message).toContain('kid-1');
      expectNoSecrets(error.message, secretsOf(jwk, kek));
    }
  });

  it('refuses a truncated tag and values not in the sealed format', () => {
    const kek = newKek();
    const sealed = seal(kek, 'kid-1', privateJwk('kid-1'));
    const parts = sealed.split('.');
    const shortTag = [...parts.slice(0, 4), Buffer.alloc(8).toString('base64url')].join('.');
    expect(unsealError(() => unseal([kek], 'kid-1', shortTag)).message).toMatch(/does not open/);
    for (const malformed of [
      '',
      '{"kty":"EC"}',
      parts.slice(0, 4).join('.'),
      `${sealed}.extra`,
      `v2.${parts.slice(1).join('.')}`,
      [...parts.slice(0, 3), '', parts[4]].join('.'),
    ]) {
      expect(unsealError(() => unseal([kek], 'kid-1', malformed)).message).toContain(
        'not in the v1 sealed format',
      );
    }
  });

  it('names both KEK ids and MAYFLY_KEK_PREVIOUS when no configured KEK sealed the key', () => {
    const former = newKek();
    const current = newKek();
    const other = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = seal(former, 'kid-1', jwk);
    const error = unsealError(() => unseal([current, other], 'kid-1', sealed));
    expect(error.message).toContain('kid-1');
    expect(error.message).toContain(former.id);
    expect(error.message).toContain(current.id);
    expect(error.message).toContain('MAYFLY_KEK_PREVIOUS');
    expectNoSecrets(error.message, secretsOf(jwk, former, current, other));
    expect(unsealError(() => unseal([], 'kid-1', sealed)).message).toContain(former.id);
  });
});

describe('KEK rotation', () => {
  it('opens a key sealed under a former KEK still listed, whatever its position', () => {
    const former = newKek();
    const current = newKek();
    const jwk = privateJwk('kid-1');
    const sealed = seal(former, 'kid-1', jwk);
    expect(sealedWith(sealed)).toBe(former.id);
    expect(unseal([current, former], 'kid-1', sealed)).toEqual(jwk);
    expect(unseal([newKek(), current, former], 'kid-1', sealed)).toEqual(jwk);
  });

  it('tells which KEK sealed a value, and nothing for a value that is not sealed', () => {
    const kek = newKek();
    expect(sealedWith(seal(kek, 'kid-1', privateJwk('kid-1')))).toBe(kek.id);
    expect(sealedWith('{"kty":"EC","d":"abc"}')).toBeUndefined();
    expect(sealedWith('v2.someid.iv.ct.tag')).toBeUndefined();
    expect(sealedWith('')).toBeUndefined();
  });
});

describe('toKek', () => {
  it('takes exactly 32 bytes, and refuses others without echoing them', () => {
    for (const length of [0, 16, 31, 33, 64]) {
      const key = randomBytes(length);
      expect(() => toKek(key)).toThrow(/32 bytes/);
      const message = (() => {
        try {
          toKek(key);
          return '';
        } catch (error) {
          return (error as Error).message;
        }
      })();
      if (length > 0) expectNoSecrets(message, spellings(key));
    }
    expect(toKek(randomBytes(32)).key).toHaveLength(32);
  });

  it('derives a stable public id that differs between KEKs and reveals no key bytes', () => {
    const key = randomBytes(32);
    const kek = toKek(key);
    expect(toKek(Buffer.from(key)).id).toBe(kek.id);
    expect(kek.id).toMatch(/^[\w-]{16}$/);
    const ids = new Set(Array.from({ length: 50 }, () => newKek().id));
    expect(ids.size).toBe(50);
    expect(ids.has(kek.id)).toBe(false);
    for (const encoded of spellings(key)) {
      expect(encoded).not.toContain(kek.id.slice(0, 8));
    }
  });
});
