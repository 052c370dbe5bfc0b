import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

import type { Jwk } from '../db/tables/signing-key.table.ts';

/**
 * Envelope encryption of private signing keys: each private JWK is encrypted with AES-256-GCM under the
 * key-encryption key (KEK), which never enters the database. The key's `kid` is bound as associated data, so a
 * sealed key copied onto another row does not open.
 *
 * Sealed form: `v1.<kek id>.<iv>.<ciphertext>.<tag>`, each part base64url.
 */
const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Kek {
  /** A public fingerprint of the KEK: names which KEK sealed a key, reveals nothing about it. */
  id: string;
  /** The AES-256 key, derived from the KEK (HKDF): the KEK itself is used for nothing else. */
  key: Buffer;
}

/** Two independent subkeys of the KEK: one to name it, one to seal with. */
export function toKek(kek: Buffer): Kek {
  if (kek.length !== 32) throw new Error('a key-encryption key is 32 bytes');
  const derive = (label: string, length: number) =>
    Buffer.from(hkdfSync('sha256', kek, Buffer.alloc(0), `mayfly kek ${VERSION} ${label}`, length));
  return { id: derive('id', 12).toString('base64url'), key: derive('seal', 32) };
}

/** Why a sealed key could not be opened; the message names kids and KEK ids, never key material. */
export class UnsealError extends Error {
  override name = 'UnsealError';
}

function associatedData(kid: string): Buffer {
  return Buffer.from(`mayfly signing key ${VERSION} ${kid}`, 'utf8');
}

export function seal(kek: Kek, kid: string, privateJwk: Jwk): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', kek.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(kid));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(privateJwk), 'utf8'), cipher.final()]);
  const parts = [iv, ciphertext, cipher.getAuthTag()].map((part) => part.toString('base64url'));
  return [VERSION, kek.id, ...parts].join('.');
}

/** The id of the KEK a sealed key was wrapped with, or undefined when the value is not a sealed key. */
export function sealedWith(sealed: string): string | undefined {
  const [version, kekId] = sealed.split('.');
  return version === VERSION ? kekId : undefined;
}

/** Opens a sealed key with whichever of `keks` sealed it. */
export function unseal(keks: readonly Kek[], kid: string, sealed: string): Jwk {
  const parts = sealed.split('.');
  const [version, kekId, iv, ciphertext, tag] = parts;
  if (parts.length !== 5 || version !== VERSION || !kekId || !iv || !ciphertext || !tag) {
    throw new UnsealError(`signing key ${kid}: the stored private key is not in the ${VERSION} sealed format`);
  }
  const kek = keks.find((candidate) => candidate.id === kekId);
  if (!kek) {
    throw new UnsealError(
      `signing key ${kid} is wrapped with KEK ${kekId}, which is neither MAYFLY_KEK (${keks[0]?.id ?? 'none'}) ` +
        'nor one of MAYFLY_KEK_PREVIOUS; set MAYFLY_KEK_PREVIOUS to the KEK it was wrapped with',
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek.key, Buffer.from(iv, 'base64url'), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(associatedData(kid));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    const clear = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
    const jwk = JSON.parse(clear.toString('utf8')) as Jwk;
    if (jwk.kid !== kid) throw new Error('kid mismatch');
    return jwk;
  } catch {
    throw new UnsealError(
      `signing key ${kid}: the sealed private key does not open with KEK ${kekId} (tampered, or moved from ` +
        'another key)',
    );
  }
}
