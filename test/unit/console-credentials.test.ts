import { TOTP, Secret } from 'otpauth';
import { describe, expect, it } from 'vitest';

import { hashPassword, verifyPassword } from '../../src/console/password.ts';
import { base32, hotp, matchTotp, otpauthUri, totpStep } from '../../src/console/totp.ts';

const RFC_SEED = Buffer.from('12345678901234567890', 'ascii');

describe('HOTP and TOTP', () => {
  it('computes the RFC 4226 Appendix D values', () => {
    const expected = [
      '755224',
      '287082',
      '359152',
      '969429',
      '338314',
      '254676',
      '287922',
      '162583',
      '399871',
      '520489',
    ];
    expect(expected.map((_, counter) => hotp(RFC_SEED, counter))).toEqual(expected);
  });

  it('computes the RFC 6238 Appendix B values (SHA-1, 8 digits)', () => {
    const vectors: [number, string][] = [
      [59, '94287082'],
      [1_111_111_109, '07081804'],
      [1_111_111_111, '14050471'],
      [1_234_567_890, '89005924'],
      [2_000_000_000, '69279037'],
      [20_000_000_000, '65353130'],
    ];
    for (const [seconds, code] of vectors) {
      expect(hotp(RFC_SEED, totpStep(new Date(seconds * 1000)), 8)).toBe(code);
    }
  });

  it('agrees with an independent implementation, base32 secret included', () => {
    const secret = Buffer.from('a1b2c3d4e5f60718293a4b5c6d7e8f9012345678', 'hex');
    const other = new TOTP({
      secret: Secret.fromBase32(base32(secret)),
      digits: 6,
      period: 30,
      algorithm: 'SHA1',
    });
    for (const at of [0, 1_700_000_000_000, 1_800_000_015_000, Date.now()]) {
      expect(hotp(secret, totpStep(new Date(at)))).toBe(other.generate({ timestamp: at }));
    }
    expect(base32(Buffer.from('foobar'))).toBe('MZXW6YTBOI');
  });

  it('accepts a code one step either side of now, once, and nothing else', () => {
    const now = new Date(1_800_000_000_000);
    const step = totpStep(now);
    const code = (offset: number) => hotp(RFC_SEED, step + offset);
    expect(matchTotp(RFC_SEED, code(0), now, null)).toBe(step);
    expect(matchTotp(RFC_SEED, code(-1), now, null)).toBe(step - 1);
    expect(matchTotp(RFC_SEED, code(1), now, null)).toBe(step + 1);
    expect(matchTotp(RFC_SEED, code(2), now, null)).toBeUndefined();
    expect(matchTotp(RFC_SEED, code(-2), now, null)).toBeUndefined();
    // A step already used, or an earlier one, is refused.
    expect(matchTotp(RFC_SEED, code(0), now, step)).toBeUndefined();
    expect(matchTotp(RFC_SEED, code(-1), now, step - 1)).toBeUndefined();
    expect(matchTotp(RFC_SEED, code(1), now, step)).toBe(step + 1);
    for (const bad of ['', '12345', '1234567', 'abcdef', ' 123456', '１２３４５６']) {
      expect(matchTotp(RFC_SEED, bad, now, null)).toBeUndefined();
    }
  });

  it('writes an otpauth URI authenticator apps read', () => {
    const uri = new URL(otpauthUri('Mayfly auth.example.com', 'alice', RFC_SEED));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/Mayfly auth.example.com:alice');
    expect(Object.fromEntries(uri.searchParams)).toEqual({
      secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
      issuer: 'Mayfly auth.example.com',
      algorithm: 'SHA1',
      digits: '6',
      period: '30',
    });
  });
});

describe('passwords', () => {
  it('hash with scrypt and a fresh salt, and verify only the same password', async () => {
    const first = await hashPassword('correct horse battery staple');
    const second = await hashPassword('correct horse battery staple');
    expect(first).toMatch(/^scrypt\$15\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    expect(first).not.toBe(second);
    expect(await verifyPassword('correct horse battery staple', first)).toBe(true);
    expect(await verifyPassword('correct horse battery stapl', first)).toBe(false);
    expect(await verifyPassword('', first)).toBe(false);
    expect(await verifyPassword('correct horse battery staple', 'not-a-hash')).toBe(false);
  });

  it('compare Unicode passwords in one normal form', async () => {
    const hash = await hashPassword('mot de passe café');
    expect(await verifyPassword('mot de passe cafe\u0301', hash)).toBe(true);
  });

  it('spend the work of a real check for an unknown user, and answer false', async () => {
    expect(await verifyPassword('anything at all here', undefined)).toBe(false);
  });
});
