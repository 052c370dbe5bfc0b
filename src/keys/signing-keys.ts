import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';

import type { Db } from '../db/connect.ts';
import type { Jwk, NewSigningKeyRow } from '../db/tables/signing-key.table.ts';
import { toPublicJwk } from './jwk.ts';
import { findSigningKeys, insertFirstSigningKey } from './signing-key.repository.ts';

export const SIGNING_ALG = 'ES256';
const FIRST_KEY_LOCK = 0x6d66_7002;

export interface SigningKeySet {
  /** Private JWKs for oidc-provider; the first one signs. */
  privateJwks: { keys: Jwk[] };
  /** What `/jwks` publishes and what Mayfly verifies its own JWT access tokens with. */
  publicJwks: { keys: Jwk[] };
  verificationKeys: ReturnType<typeof createLocalJWKSet>;
}

async function generateSigningKey(): Promise<NewSigningKeyRow> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  // alg and use keep the provider's key selection working (keys without them are skipped for signing).
  const privateJwk = { ...jwk, kid, alg: SIGNING_ALG, use: 'sig' } as Jwk;
  return {
    kid,
    alg: SIGNING_ALG,
    public_jwk: JSON.stringify(toPublicJwk(privateJwk)),
    private_jwk: JSON.stringify(privateJwk),
  };
}

/**
 * Until automatic rotation exists there is one key: created at the first start, kept in the database so that
 * every restart and every instance signs and verifies with it.
 */
export async function loadSigningKeys(db: Db): Promise<SigningKeySet> {
  let rows = await findSigningKeys(db);
  if (rows.length === 0) {
    await insertFirstSigningKey(db, FIRST_KEY_LOCK, generateSigningKey);
    rows = await findSigningKeys(db);
  }
  const publicJwks = { keys: rows.map((row) => row.public_jwk) };
  return {
    privateJwks: { keys: rows.map((row) => row.private_jwk) },
    publicJwks,
    verificationKeys: createLocalJWKSet(publicJwks),
  };
}
