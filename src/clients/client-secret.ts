import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const SECRET_PREFIX = 'mfy_';

/** 256 random bits; the prefix lets secret scanners recognise a leaked Mayfly secret. */
export function generateClientSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/**
 * A secret is random, not a password: SHA-256 is enough to make a leaked table useless and costs
 * microseconds per check, unlike a password hash.
 */
export function hashClientSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

/** Constant-time over the hashes, so timing reveals nothing about the stored value. */
export function matchesSecretHash(candidate: string, storedHashes: readonly string[]): boolean {
  const candidateHash = Buffer.from(hashClientSecret(candidate), 'base64url');
  let matched = false;
  for (const stored of storedHashes) {
    const storedHash = Buffer.from(stored, 'base64url');
    if (storedHash.length === candidateHash.length && timingSafeEqual(storedHash, candidateHash))
      matched = true;
  }
  return matched;
}
