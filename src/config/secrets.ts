import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { ConfigError, decodeSecret, type Config } from './config.ts';

export interface Secrets {
  /** Shared by every instance so a nonce issued by one is accepted by all (RFC 9449 §8). */
  dpopNonceSecret: Buffer;
  /** Key-encryption key: wraps every private signing key stored in the database. */
  kek: Buffer;
  /** Former KEKs, accepted for unwrapping only. */
  previousKeks: Buffer[];
}

export const NONCE_SECRET_FILE = 'dpop-nonce-secret';
export const KEK_FILE = 'kek';

/**
 * Secrets come from the environment. Only the embedded default (one process, no DATABASE_URL) may keep a
 * generated one under the keys folder: instances sharing Postgres must share the secret explicitly.
 */
export async function loadSecrets(config: Config): Promise<Secrets> {
  const generate = `e.g. the output of node -e "console.log(crypto.randomBytes(32).toString('base64url'))"`;
  if (config.database.kind === 'postgres') {
    const problems: string[] = [];
    if (!config.dpop.nonceSecret) {
      problems.push(
        'MAYFLY_DPOP_NONCE_SECRET: required when DATABASE_URL is set, so that every instance accepts the ' +
          `others' DPoP nonces; expected 32 random bytes as base64url, ${generate}`,
      );
    }
    if (!config.keys.kek) {
      problems.push(
        'MAYFLY_KEK: required when DATABASE_URL is set: the key-encryption key that wraps the private signing ' +
          'keys stored in the database, kept outside it and shared by every instance; expected 32 random bytes ' +
          `as base64url, ${generate}`,
      );
    }
    if (problems.length) throw new ConfigError(problems);
  }
  return {
    dpopNonceSecret:
      config.dpop.nonceSecret ?? (await readOrCreateSecretFile(config.keysDir, NONCE_SECRET_FILE)),
    kek: config.keys.kek ?? (await readOrCreateSecretFile(config.keysDir, KEK_FILE)),
    previousKeks: config.keys.previousKeks,
  };
}

async function readOrCreateSecretFile(dir: string, name: string): Promise<Buffer> {
  const path = join(dir, name);
  const existing = await readFile(path, 'utf8').catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing !== undefined) {
    const secret = decodeSecret(existing.trim());
    if (!secret)
      throw new ConfigError([`${path}: expected 32 bytes encoded as base64url; delete it to regenerate`]);
    return secret;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(32);
  try {
    // 'wx' never overwrites: a concurrent start that lost the race reads the winner's file instead.
    await writeFile(path, `${secret.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readOrCreateSecretFile(dir, name);
    throw error;
  }
  return secret;
}
