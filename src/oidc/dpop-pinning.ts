import { createHash } from 'node:crypto';

import { decodeProtectedHeader } from 'jose';
import { errors, type Client, type KoaContextWithOIDC } from 'oidc-provider';

import { clientFacts } from './client-metadata.ts';

/** The members of each key type that its RFC 7638 thumbprint covers, in lexicographic order. */
const REQUIRED_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'kty', 'x', 'y'],
  OKP: ['crv', 'kty', 'x'],
  RSA: ['e', 'kty', 'n'],
};

/** RFC 7638 SHA-256 thumbprint of a public JWK, or undefined for a key type DPoP proofs cannot use. */
export function jwkThumbprint(jwk: unknown): string | undefined {
  if (typeof jwk !== 'object' || jwk === null) return undefined;
  const key = jwk as Record<string, unknown>;
  const members = typeof key.kty === 'string' ? REQUIRED_MEMBERS[key.kty] : undefined;
  if (!members || members.some((m) => typeof key[m] !== 'string')) return undefined;
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, key[m]])));
  return createHash('sha256').update(canonical, 'utf8').digest('base64url');
}

/**
 * A client with pinned keys may only use those keys for its DPoP proofs. Called once the provider has verified
 * the proof, so the key in its header is the one that signed it. A request without a proof is left to the
 * provider, which refuses it (a pinned client is always DPoP-bound).
 * @see RFC 9449 §4.3, RFC 7638
 */
export function requirePinnedDpopKey(ctx: KoaContextWithOIDC, client: Client): void {
  const pinned = clientFacts(client)?.dpopJkts ?? [];
  if (pinned.length === 0) return;
  const proof = ctx.get('DPoP');
  if (!proof) return;
  let thumbprint: string | undefined;
  try {
    thumbprint = jwkThumbprint(decodeProtectedHeader(proof).jwk);
  } catch {
    thumbprint = undefined;
  }
  if (thumbprint === undefined || !pinned.includes(thumbprint)) {
    throw new errors.InvalidDpopProof('the DPoP proof is signed by a key that is not pinned for this client');
  }
}
