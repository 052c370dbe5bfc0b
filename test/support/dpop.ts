import { randomUUID } from 'node:crypto';

import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTHeaderParameters,
} from 'jose';

export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  thumbprint: string;
  alg: string;
}

export async function generateDpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, thumbprint: await calculateJwkThumbprint(publicJwk), alg };
}

export interface ProofOptions {
  htm?: string;
  htu: string;
  nonce?: string;
  ath?: string;
  /** Replace or remove (undefined) header members and claims, for negative tests. */
  header?: Partial<Record<string, unknown>>;
  claims?: Partial<Record<string, unknown>>;
}

/**
 * A DPoP proof built by hand, so that every member can be wrong on purpose.
 * @see RFC 9449 §4.2
 */
export async function createProof(key: DpopKey, options: ProofOptions): Promise<string> {
  const header: Record<string, unknown> = {
    typ: 'dpop+jwt',
    alg: key.alg,
    jwk: key.publicJwk,
    ...options.header,
  };
  const claims: Record<string, unknown> = {
    htm: options.htm ?? 'POST',
    htu: options.htu,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ...(options.nonce ? { nonce: options.nonce } : {}),
    ...(options.ath ? { ath: options.ath } : {}),
    ...options.claims,
  };
  const defined = (members: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(members).filter(([, value]) => value !== undefined));
  return new SignJWT(defined(claims))
    .setProtectedHeader(defined(header) as JWTHeaderParameters)
    .sign(key.privateKey);
}
