import type { Jwk } from '../db/tables/signing-key.table.ts';

/** JWK members that carry private or symmetric key material (RFC 7518 §6). */
export const PRIVATE_JWK_MEMBERS: readonly string[] = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export function hasPrivateMembers(jwk: object): boolean {
  return PRIVATE_JWK_MEMBERS.some((member) => member in jwk);
}

export function toPublicJwk(jwk: Jwk): Jwk {
  return Object.fromEntries(Object.entries(jwk).filter(([member]) => !PRIVATE_JWK_MEMBERS.includes(member))) as Jwk;
}
