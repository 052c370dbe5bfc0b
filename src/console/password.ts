import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Admin passwords, hashed with scrypt (RFC 7914). N = 2^15, r = 8, p = 1 costs about 32 MiB and tens of
 * milliseconds per check: cheap for one sign-in, expensive for a guessing attack on a stolen table. The parameters
 * are stored with each hash, so they can be raised without invalidating existing passwords.
 */
const LOG2_N = 15;
const R = 8;
const P = 1;
const KEY_BYTES = 32;
const SALT_BYTES = 16;

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 1024;

function derive(password: string, salt: Buffer, log2n: number, r: number, p: number): Promise<Buffer> {
  const options: ScryptOptions = { N: 2 ** log2n, r, p, maxmem: 256 * 2 ** log2n * r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, options, (error, key) => {
      if (error) reject(error);
      else resolve(key);
    });
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, LOG2_N, R, P);
  return ['scrypt', LOG2_N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** A hash of a random password: checked against when the user does not exist, so that takes as long as a miss. */
let decoy: Promise<string> | undefined;

/** Whether `password` matches `stored`; with `stored` undefined, spends the same time and answers false. */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  decoy ??= hashPassword(randomBytes(16).toString('base64url')).catch((error: unknown) => {
    decoy = undefined;
    throw error;
  });
  const hash = stored ?? (await decoy);
  const [scheme, log2n, r, p, salt, key] = hash.split('$');
  if (scheme !== 'scrypt' || !log2n || !r || !p || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64url');
  const actual = await derive(password, Buffer.from(salt, 'base64url'), Number(log2n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected) && stored !== undefined;
}
