import { createHash, randomBytes } from 'node:crypto';

/** Prefixes let secret scanners recognise a leaked initial or registration access token. */
const INITIAL_PREFIX = 'mfyi_';
const REGISTRATION_PREFIX = 'mfyr_';

/** 256 random bits: an initial access token (RFC 7591 §3). */
export function generateInitialAccessToken(): string {
  return `${INITIAL_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** 256 random bits: a registration access token (RFC 7592 §3). */
export function generateRegistrationAccessToken(): string {
  return `${REGISTRATION_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/**
 * Both kinds are stored as SHA-256 and found by an index lookup on the hash. No constant-time comparison is
 * needed: what the lookup's timing could reveal is a prefix of the hash, and learning the hash of a 256-bit
 * random value does not help to find the value.
 */
export function hashRegistrationToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}
