import type { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type JsonWebKey = webcrypto.JsonWebKey;

/**
 * oidc-provider verifies each DPoP proof with the key embedded in its header, which jose imports through WebCrypto
 * anew for every request (`EmbeddedJWK`), although a client proves possession of the same key request after
 * request. The engine offers no hook for its verification key, so the cache sits where the key is made: a
 * WebCrypto import of a public JWK returns the key imported before from exactly the same input.
 *
 * The input is compared whole (every member of the JWK, the algorithm, extractability and usages), so a cached key
 * stands only for an import that WebCrypto itself accepted with those very arguments; failures are never cached.
 * Only public keys (no private members) of the key types a signature can use are kept: a public key is public,
 * and a CryptoKey cannot be changed by whoever receives it.
 * @see RFC 9449 §4.3 (step 5), RFC 7638
 */
export function cachePublicKeyImports(subtle: webcrypto.SubtleCrypto = globalThis.crypto.subtle): void {
  if (CACHED in subtle) return;
  const importKey = subtle.importKey.bind(subtle) as ImportKey;
  const keys = new Map<string, CryptoKey>();
  const cached: ImportKey = async (format, keyData, algorithm, extractable, usages) => {
    const id = format === 'jwk' ? cacheId(keyData, algorithm, extractable, usages) : undefined;
    if (id === undefined) return importKey(format, keyData, algorithm, extractable, usages);
    const known = keys.get(id);
    if (known) {
      keys.delete(id);
      keys.set(id, known);
      return known;
    }
    const key = await importKey(format, keyData, algorithm, extractable, usages);
    keys.set(id, key);
    if (keys.size > CAPACITY) keys.delete(keys.keys().next().value as string);
    return key;
  };
  Object.defineProperty(subtle, 'importKey', { value: cached, configurable: true, writable: true });
  Object.defineProperty(subtle, CACHED, { value: true });
}

type ImportKey = (
  format: string,
  keyData: unknown,
  algorithm: unknown,
  extractable: boolean,
  usages: readonly string[],
) => Promise<CryptoKey>;

const CACHED = Symbol.for('mayfly.publicKeyImportsCached');

/** Distinct keys kept (least recently used dropped beyond): far more than the clients an instance serves at once. */
const CAPACITY = 1_000;
/** A JWK longer than this is not cached (an RSA key of 8192 bits is about 1.5 KiB). */
const MAX_ID_LENGTH = 4_096;
const PUBLIC_KEY_TYPES = new Set(['EC', 'OKP', 'RSA']);
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

function cacheId(
  keyData: unknown,
  algorithm: unknown,
  extractable: boolean,
  usages: readonly string[],
): string | undefined {
  if (typeof keyData !== 'object' || keyData === null) return undefined;
  const jwk = keyData as JsonWebKey;
  if (!PUBLIC_KEY_TYPES.has(String(jwk.kty))) return undefined;
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) return undefined;
  let id: string;
  try {
    id = JSON.stringify([jwk, algorithm, extractable, usages]);
  } catch {
    return undefined;
  }
  return id.length <= MAX_ID_LENGTH ? id : undefined;
}
