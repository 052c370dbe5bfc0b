import {
  createHash,
  createPrivateKey,
  createPublicKey,
  KeyObject,
  sign,
  type JsonWebKeyInput,
  verify,
  type webcrypto,
} from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type JsonWebKey = webcrypto.JsonWebKey;
type SubtleCrypto = webcrypto.SubtleCrypto;

/**
 * WebCrypto as the token path uses it, made cheaper without changing a result. oidc-provider and jose do every
 * JOSE operation through WebCrypto, which on Node runs each one as a job on libuv's thread pool; for the small,
 * fast operations of one token request the hand-off costs more CPU than the operation (measured on Node 24:
 * SHA-256 of a JWK thumbprint input 39 µs through WebCrypto against 1.5 µs, ECDSA P-256 verify 120 against 71 µs,
 * sign 83 against 42 µs). The engine offers no hook for its crypto, so this tunes WebCrypto itself, once per
 * process:
 *
 * - `importKey` of a public JWK returns the key imported before from exactly the same input: a DPoP proof embeds
 *   its key, which jose imports anew for each request although a client proves the same key over and over;
 * - `digest` with SHA-1/256/384/512, and ECDSA `sign` and `verify`, run at once on node:crypto (the same OpenSSL
 *   operations) and answer a settled promise.
 *
 * Anything else, and any call whose arguments are not exactly of the kinds above, goes to WebCrypto unchanged, so
 * its checks and errors stay WebCrypto's own; should node:crypto refuse a call, WebCrypto answers it.
 * @see RFC 9449 §4.3 (step 5), RFC 7638, RFC 7518 §3.4
 */
export function tuneWebCrypto(subtle: SubtleCrypto = globalThis.crypto.subtle): void {
  if (TUNED in subtle) return;
  const original = {
    importKey: subtle.importKey.bind(subtle) as ImportKey,
    digest: subtle.digest.bind(subtle) as Digest,
    sign: subtle.sign.bind(subtle) as Sign,
    verify: subtle.verify.bind(subtle) as Verify,
  };
  const keys = new Map<string, CryptoKey>();
  const importJwk: ImportKey = async (format, keyData, algorithm, extractable, usages) => {
    const key = await original.importKey(format, keyData, algorithm, extractable, usages);
    if (format === 'jwk') rememberEcdsaKey(key, keyData);
    return key;
  };
  const importKey: ImportKey = async (format, keyData, algorithm, extractable, usages) => {
    const id = format === 'jwk' ? publicJwkId(keyData, algorithm, extractable, usages) : undefined;
    if (id === undefined) return importJwk(format, keyData, algorithm, extractable, usages);
    const known = keys.get(id);
    if (known) {
      keys.delete(id);
      keys.set(id, known);
      return known;
    }
    const key = await importJwk(format, keyData, algorithm, extractable, usages);
    keys.set(id, key);
    if (keys.size > IMPORTED_KEYS) keys.delete(keys.keys().next().value as string);
    return key;
  };
  const digest: Digest = (algorithm, data) => {
    const hash = hashOf(algorithm, DIGESTS);
    const bytes = bytesOf(data);
    if (hash === undefined || bytes === undefined) return original.digest(algorithm, data);
    return Promise.resolve(arrayBufferOf(createHash(hash).update(bytes).digest()));
  };
  const signData: Sign = (algorithm, key, data) => {
    const hash = ecdsaHashOf(algorithm);
    const bytes = bytesOf(data);
    const keyObject = ecdsaKeyOf(key, 'private', 'sign');
    if (hash === undefined || bytes === undefined || keyObject === undefined) {
      return original.sign(algorithm, key, data);
    }
    try {
      const der = sign(hash, bytes, keyObject);
      return Promise.resolve(rawSignature(der, fieldBytes(key as CryptoKey)).buffer);
    } catch {
      return original.sign(algorithm, key, data);
    }
  };
  const verifySignature: Verify = (algorithm, key, signature, data) => {
    const hash = ecdsaHashOf(algorithm);
    const bytes = bytesOf(data);
    const signatureBytes = bytesOf(signature);
    const keyObject = ecdsaKeyOf(key, 'public', 'verify');
    if (
      hash === undefined ||
      bytes === undefined ||
      signatureBytes === undefined ||
      keyObject === undefined
    ) {
      return original.verify(algorithm, key, signature, data);
    }
    try {
      // A signature of the wrong length is false, as WebCrypto answers it.
      const size = fieldBytes(key as CryptoKey);
      if (signatureBytes.length !== 2 * size) return Promise.resolve(false);
      return Promise.resolve(verify(hash, bytes, keyObject, derSignature(signatureBytes, size)));
    } catch {
      return original.verify(algorithm, key, signature, data);
    }
  };
  for (const [name, value] of Object.entries({
    importKey,
    digest,
    sign: signData,
    verify: verifySignature,
  })) {
    Object.defineProperty(subtle, name, { value, configurable: true, writable: true });
  }
  Object.defineProperty(subtle, TUNED, { value: true });
}

type ImportKey = (
  format: string,
  keyData: unknown,
  algorithm: unknown,
  extractable: boolean,
  usages: readonly string[],
) => Promise<CryptoKey>;
type Digest = (algorithm: unknown, data: unknown) => Promise<ArrayBuffer>;
type Sign = (algorithm: unknown, key: unknown, data: unknown) => Promise<ArrayBuffer>;
type Verify = (algorithm: unknown, key: unknown, signature: unknown, data: unknown) => Promise<boolean>;

const TUNED = Symbol.for('mayfly.webCryptoTuned');

/** Distinct keys kept (least recently used dropped beyond): far more than the clients an instance serves at once. */
const IMPORTED_KEYS = 1_000;
/** A JWK longer than this is not cached (an RSA key of 8192 bits is about 1.5 KiB). */
const MAX_JWK_ID_LENGTH = 4_096;
const PUBLIC_KEY_TYPES = new Set(['EC', 'OKP', 'RSA']);
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/**
 * The whole input of an import of a public JWK (every member, the algorithm, extractability and usages), so that
 * a cached key stands only for an import WebCrypto itself accepted with those very arguments. Undefined for
 * anything else: private or secret keys, unknown key types, oversized input.
 */
function publicJwkId(
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
  return id.length <= MAX_JWK_ID_LENGTH ? id : undefined;
}

const DIGESTS = new Map([
  ['SHA-1', 'sha1'],
  ['SHA-256', 'sha256'],
  ['SHA-384', 'sha384'],
  ['SHA-512', 'sha512'],
]);
const ECDSA_HASHES = new Map([...DIGESTS].filter(([name]) => name !== 'SHA-1'));

/** node:crypto's name of a hash named as WebCrypto names algorithms (a string or `{ name }`, any case). */
function hashOf(algorithm: unknown, known: ReadonlyMap<string, string>): string | undefined {
  const name =
    typeof algorithm === 'string'
      ? algorithm
      : typeof algorithm === 'object' && algorithm !== null
        ? (algorithm as { name?: unknown }).name
        : undefined;
  return typeof name === 'string' ? known.get(name.toUpperCase()) : undefined;
}

/** The hash of `{ name: 'ECDSA', hash }`, or undefined for any other algorithm. */
function ecdsaHashOf(algorithm: unknown): string | undefined {
  if (typeof algorithm !== 'object' || algorithm === null) return undefined;
  const { name, hash } = algorithm as { name?: unknown; hash?: unknown };
  if (typeof name !== 'string' || name.toUpperCase() !== 'ECDSA') return undefined;
  return hashOf(hash, ECDSA_HASHES);
}

/** node:crypto's KeyObject for the same key as an ECDSA CryptoKey. */
const keyObjects = new WeakMap<CryptoKey, KeyObject>();

/**
 * Keeps the KeyObject of an ECDSA key imported from a JWK (WebCrypto accepted it first), made from the same
 * JWK: node:crypto cannot read a non-extractable CryptoKey (such as the provider's signing key) without a
 * deprecated call.
 */
function rememberEcdsaKey(key: CryptoKey, jwk: unknown): void {
  if (key.algorithm.name !== 'ECDSA' || typeof jwk !== 'object' || jwk === null) return;
  try {
    const material: JsonWebKeyInput = { key: jwk as JsonWebKeyInput['key'], format: 'jwk' };
    keyObjects.set(key, key.type === 'private' ? createPrivateKey(material) : createPublicKey(material));
  } catch {
    // node:crypto reads it otherwise than WebCrypto: WebCrypto alone will use this key.
  }
}

/**
 * The KeyObject behind an ECDSA CryptoKey of the given type that allows `usage`: one imported from a JWK (see
 * rememberEcdsaKey) or any extractable key. Undefined for any other key, which WebCrypto then uses itself.
 */
function ecdsaKeyOf(
  key: unknown,
  type: 'public' | 'private',
  usage: 'sign' | 'verify',
): KeyObject | undefined {
  if (!(key instanceof globalThis.CryptoKey)) return undefined;
  if (key.type !== type || key.algorithm.name !== 'ECDSA' || !key.usages.includes(usage)) return undefined;
  let keyObject = keyObjects.get(key);
  if (!keyObject && key.extractable) {
    keyObject = KeyObject.from(key);
    keyObjects.set(key, keyObject);
  }
  return keyObject;
}

/** The bytes of a BufferSource WebCrypto accepts (not shared, not resizable); undefined for anything else. */
function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return data.resizable ? undefined : new Uint8Array(data);
  if (!ArrayBuffer.isView(data)) return undefined;
  const buffer = data.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.resizable) return undefined;
  return new Uint8Array(buffer, data.byteOffset, data.byteLength);
}

/** A fresh ArrayBuffer holding exactly these bytes (a Buffer may sit in a shared pool). */
function arrayBufferOf(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** Bytes of one coordinate (and so of r and of s) on each curve. @see RFC 7518 §3.4 */
const FIELD_BYTES: Record<string, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };

function fieldBytes(key: CryptoKey): number {
  const size = FIELD_BYTES[(key.algorithm as { namedCurve?: string }).namedCurve ?? ''];
  if (size === undefined) throw new Error('not a NIST curve');
  return size;
}

/*
 * JOSE and WebCrypto write an ECDSA signature as r and s of fixed size, end to end (RFC 7518 §3.4); OpenSSL as a
 * DER SEQUENCE of two INTEGERs (RFC 3279 §2.2.3). node:crypto converts between them itself (dsaEncoding), but
 * that conversion took about half the time of signing; these two do it directly.
 */

/** r ‖ s, each left-padded to `size` bytes, from OpenSSL's DER signature. */
function rawSignature(der: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const raw = new Uint8Array(2 * size);
  // SEQUENCE, then its length in short form (< 128), or as one more byte (0x81 n) for P-521.
  let at = der[1] === 0x81 ? 3 : 2;
  for (const offset of [0, size]) {
    if (der[at] !== 0x02) throw new Error('not a DER ECDSA signature');
    let start = at + 2;
    const end = start + (der[at + 1] ?? 0);
    // A leading zero only keeps the INTEGER positive.
    while (end - start > size && der[start] === 0) start += 1;
    if (end - start > size || end > der.length) throw new Error('not a DER ECDSA signature');
    raw.set(der.subarray(start, end), offset + size - (end - start));
    at = end;
  }
  return raw;
}

/** The DER signature OpenSSL verifies, from r ‖ s of `size` bytes each. */
function derSignature(raw: Uint8Array, size: number): Uint8Array {
  const r = minimalInteger(raw.subarray(0, size));
  const s = minimalInteger(raw.subarray(size));
  const body = 4 + r.length + r.pad + s.length + s.pad;
  const header = body < 0x80 ? 2 : 3;
  const der = new Uint8Array(header + body);
  der[0] = 0x30;
  if (header === 2) der[1] = body;
  else der.set([0x81, body], 1);
  let at = header;
  for (const integer of [r, s]) {
    der[at] = 0x02;
    der[at + 1] = integer.length + integer.pad;
    // The zero byte of `pad`, if any, is already there: the array starts zeroed.
    der.set(integer.bytes, at + 2 + integer.pad);
    at += 2 + integer.pad + integer.length;
  }
  return der;
}

/** An unsigned big-endian integer without leading zeros, and whether it needs one zero to read as positive. */
function minimalInteger(value: Uint8Array): { bytes: Uint8Array; length: number; pad: number } {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start += 1;
  const bytes = value.subarray(start);
  return { bytes, length: bytes.length, pad: (bytes[0] ?? 0) & 0x80 ? 1 : 0 };
}
