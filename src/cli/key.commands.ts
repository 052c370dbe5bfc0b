import { z } from 'zod';

import { SigningKeyInfo } from '../keys/key.service.ts';
import { defineCommand } from './command.ts';
import { CliError } from './errors.ts';
import { formatRecord, formatTable, formatTime, printResult } from './output.ts';
import { readAs } from './views.ts';

const KID = { name: 'kid', description: 'the key id, as `mayfly key list` shows it' } as const;

function formatNext(key: SigningKeyInfo): string {
  const next = key.next_transition;
  if (!next) return '-';
  return `${next.phase} ${next.planned ? '~' : ''}${formatTime(next.at)}`;
}

function formatKeyTable(keys: readonly SigningKeyInfo[]): string {
  if (!keys.length) return 'No signing keys.\n';
  return formatTable(
    ['KID', 'ALG', 'PHASE', 'PUBLISHED', 'SIGNS FROM', 'NEXT'],
    keys.map((key) => [
      key.kid,
      key.alg,
      key.phase,
      formatTime(key.published_at),
      formatTime(key.activates_at),
      formatNext(key),
    ]),
  );
}

function formatKey(key: SigningKeyInfo): string {
  return formatRecord([
    ['kid', key.kid],
    ['alg', key.alg],
    ['phase', key.phase],
    ['published', formatTime(key.published_at)],
    ['signs from', formatTime(key.activates_at)],
    ['retires', formatTime(key.retires_at)],
    ['removed', formatTime(key.removes_at)],
    ...(key.revoked_at ? [['revoked', formatTime(key.revoked_at)] as const] : []),
    ['next', formatNext(key)],
  ]);
}

const listKeys = defineCommand({
  path: ['key', 'list'],
  summary: 'the signing keys, their phases and next transitions',
  description:
    'The signing keys: published (in the JWKS, not signing yet), active (signing), retired (in the JWKS\n' +
    'until its tokens have expired) or revoked, with the time of each next transition. A time marked ~ is\n' +
    'an estimate from the rotation schedule.',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'admin',
  async run(_input, context) {
    const api = await context.connect('admin:read');
    const body = await api.send('GET', '/keys');
    printResult(context, body, () =>
      formatKeyTable(readAs(z.object({ items: z.array(SigningKeyInfo) }), body, 'keys').items),
    );
  },
});

const RotationResult = z.object({ key: SigningKeyInfo, created: z.boolean() });

const rotateKeys = defineCommand({
  path: ['key', 'rotate'],
  summary: 'publish a successor now; it signs after the propagation time (--now: at once, risky)',
  description:
    'Publish a successor key now; it signs once it has been published for the propagation time\n' +
    '(MAYFLY_KEY_PROPAGATION), so resource servers already hold it. With --now the new key signs at once:\n' +
    'a resource server holding a cached JWKS rejects its tokens (unknown kid) until it refetches the JWKS.',
  synopsis: '[--now]',
  arguments: [],
  options: {
    now: { type: 'boolean', description: 'sign with the new key at once (risks unknown-kid rejections)' },
  },
  globals: 'admin',
  async run({ values }, context) {
    const immediate = values.now === true;
    const api = await context.connect('admin:write');
    const body = await api.send('POST', '/keys/rotate', { body: { immediate } });
    printResult(context, body, () => {
      const { key, created } = readAs(RotationResult, body, 'rotation');
      const headline = immediate
        ? `Key ${key.kid} signs now.`
        : created
          ? `Published key ${key.kid}; it signs from ${formatTime(key.activates_at)}.`
          : `Key ${key.kid} is already published and signs from ${formatTime(key.activates_at)}.`;
      return `${headline}\n${formatKey(key)}`;
    });
    if (immediate) {
      context.out.note(
        'Warning: resource servers that cached the JWKS before now reject tokens signed by the new key until ' +
          'they refetch it (at most MAYFLY_JWKS_MAX_AGE seconds for those honouring the cache headers).\n',
      );
    }
  },
});

const RevocationResult = z.object({ key: SigningKeyInfo, signing_kid: z.string() });

const revokeKey = defineCommand({
  path: ['key', 'revoke'],
  summary: 'revoke a signing key at once (compromise)',
  description:
    'Emergency revocation: the key leaves the JWKS at once, every token it signed introspects as inactive,\n' +
    'and when it was signing, a successor signs at once. Resource servers that validate JWTs locally keep\n' +
    'trusting it until their cached JWKS expires (MAYFLY_JWKS_MAX_AGE).',
  synopsis: '<kid>',
  arguments: [KID],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:write');
    const body = await api.send('POST', `/keys/${encodeURIComponent(args.kid)}/revoke`);
    printResult(context, body, () => {
      const { key, signing_kid: signing } = readAs(RevocationResult, body, 'revocation');
      return `Revoked key ${key.kid}; key ${signing} signs.\n${formatKey(key)}`;
    });
  },
});

const rewrapKeys = defineCommand({
  path: ['key', 'rewrap'],
  summary: 'seal every signing key and TOTP seed under the current KEK (after a KEK rotation)',
  description:
    "Re-encrypt every private signing key, and every console user's TOTP seed, under MAYFLY_KEK, opening\n" +
    'each with MAYFLY_KEK or one of MAYFLY_KEK_PREVIOUS. Runs against the configured database (DATABASE_URL,\n' +
    'else MAYFLY_DATA_DIR: stop the server first, the embedded database admits one process). See the README,\n' +
    '"Signing keys".',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'none',
  async run(_input, context) {
    const { rewrap } = await import('../keys/rewrap-cli.ts');
    try {
      const result = await rewrap();
      context.out.result(
        `Re-wrapped ${result.rewrapped} key(s) under KEK ${result.kek}; sealed ${result.sealed} stored in clear; ` +
          `${result.unchanged} already under it.\n`,
      );
      const { rewrapped, unchanged } = result.secondFactors;
      if (rewrapped + unchanged > 0) {
        context.out.result(
          `Re-wrapped ${rewrapped} console second factor(s); ${unchanged} already under it.\n`,
        );
      }
    } catch (error) {
      throw new CliError(error instanceof Error ? error.message : String(error));
    }
  },
});

export const KEY_COMMANDS = [listKeys, rotateKeys, revokeKey, rewrapKeys];
