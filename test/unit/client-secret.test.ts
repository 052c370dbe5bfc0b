import { expect, it } from 'vitest';

import {
  generateClientSecret,
  hashClientSecret,
  matchesSecretHash,
} from '../../src/clients/client-secret.ts';

it('generates 256-bit secrets with a recognisable prefix, never twice the same', () => {
  const secrets = new Set(Array.from({ length: 100 }, generateClientSecret));
  expect(secrets.size).toBe(100);
  for (const secret of secrets) {
    expect(secret).toMatch(/^mfy_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(secret.slice(4), 'base64url')).toHaveLength(32);
  }
});

it('matches a secret against any of its stored hashes, and nothing else', () => {
  const secret = generateClientSecret();
  const other = generateClientSecret();
  const hashes = [hashClientSecret(other), hashClientSecret(secret)];
  expect(hashClientSecret(secret)).not.toContain(secret);
  expect(matchesSecretHash(secret, hashes)).toBe(true);
  expect(matchesSecretHash(other, [hashClientSecret(secret)])).toBe(false);
  expect(matchesSecretHash(`${secret} `, hashes)).toBe(false);
  expect(matchesSecretHash('', hashes)).toBe(false);
  expect(matchesSecretHash(secret, [])).toBe(false);
  expect(matchesSecretHash(secret, ['not-a-hash'])).toBe(false);
});
