import { z } from 'zod';

import {
  AUTH_METHODS,
  RegistrationToken,
  RegistrationTokenWithValue,
} from '../registration/registration.schemas.ts';
import { parseChoice, parseGrant, parseScopes, parseWholeNumber } from './args.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { UsageError } from './errors.ts';
import {
  deliverResult,
  formatRecord,
  formatTable,
  formatTime,
  printResult,
  SECRET_OUT_OPTION,
} from './output.ts';
import { readAs } from './views.ts';

const TOKEN_WARNING =
  'Save the token now: Mayfly keeps only a hash of it and will not show it again. Hand it to the client\n' +
  'developer, who presents it as "Authorization: Bearer <token>" to POST /register.\n';

const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90`, `90s`, `15m`, `1h`, `7d`: what a person types for a lifetime. */
export function parseDuration(value: string, option: string): number {
  const match = /^(\d{1,7})([smhd]?)$/.exec(value.trim());
  if (!match?.[1]) {
    throw new UsageError(`${option} expects a duration such as 3600, 15m, 1h or 7d, got '${value}'`);
  }
  return Number(match[1]) * (UNITS[match[2] || 's'] ?? 1);
}

function formatRegistrationToken(token: RegistrationToken | RegistrationTokenWithValue): string {
  return formatRecord([
    ['id', token.id],
    ...('token' in token ? [['token', token.token] as const] : []),
    ['resources', token.resources.map((r) => `${r.resource}=${r.scopes.join(',')}`).join('\n')],
    ['auth methods', token.auth_methods.join(' ')],
    ['max token ttl', token.max_token_ttl === null ? 'any' : `${token.max_token_ttl} s`],
    ['uses left', `${token.uses_left} of ${token.uses}`],
    ['status', token.status],
    ['expires', formatTime(token.expires_at)],
    ['created', `${formatTime(token.created_at)} by ${token.created_by}`],
  ]);
}

function printToken(context: CommandContext, body: unknown, headline: string): void {
  printResult(
    context,
    body,
    () =>
      `${headline}\n${formatRegistrationToken(readAs(RegistrationTokenWithValue, body, 'registration token'))}`,
  );
  context.out.note(TOKEN_WARNING);
}

const createRegistrationToken = defineCommand({
  path: ['registration-token', 'create'],
  summary: 'mint an initial access token for dynamic client registration; prints it once',
  description:
    'Mint an initial access token (RFC 7591) for POST /register, enabled by MAYFLY_REGISTRATION=true. The\n' +
    'token caps what a client registering with it may obtain: the resources and scopes, the authentication\n' +
    'methods and the token lifetimes. It works --uses times (default once) until --expires-in has passed.',
  synopsis:
    '(--resource <uri> --scopes "<scope> …" | --grant <uri>=<scope>,<scope>…) --expires-in <duration> ' +
    '[--uses <n>] [--auth <method>]… [--max-ttl <seconds>]',
  arguments: [],
  options: {
    resource: { type: 'string', value: '<uri>', description: 'the resource a registered client may use' },
    scopes: {
      type: 'string',
      value: '"<scope> …"',
      description: 'the scopes it may hold on --resource, space-separated',
    },
    grant: {
      type: 'string',
      multiple: true,
      value: '<uri>=<scope>,<scope>',
      description: 'a resource and its scopes, for several resources (repeatable)',
    },
    'expires-in': {
      type: 'string',
      value: '<duration>',
      description: 'how long the token works: 3600, 15m, 1h, 7d (required)',
    },
    uses: { type: 'string', value: '<n>', description: 'registrations it allows (default 1)' },
    auth: {
      type: 'string',
      multiple: true,
      value: '<method>',
      description: 'an allowed client authentication method (repeatable; default all)',
    },
    'max-ttl': {
      type: 'string',
      value: '<seconds>',
      description: 'only resources whose tokens live at most this long',
    },
    ...SECRET_OUT_OPTION,
  },
  globals: 'admin',
  examples: [
    'mayfly registration-token create --resource https://api.example.com --scopes "orders:read" --expires-in 1h',
  ],
  async run({ values }, context) {
    if ((values.resource === undefined) !== (values.scopes === undefined)) {
      throw new UsageError(
        '--resource and --scopes go together, e.g. --resource <uri> --scopes "orders:read"',
      );
    }
    const resources = [
      ...(values.resource === undefined || values.scopes === undefined
        ? []
        : [{ resource: values.resource, scopes: parseScopes(values.scopes, '--scopes') }]),
      ...(values.grant ?? []).map(parseGrant),
    ];
    if (!resources.length) throw new UsageError('give --resource <uri> --scopes "<scope> …", or --grant');
    if (values['expires-in'] === undefined)
      throw new UsageError('--expires-in is required, e.g. --expires-in 1h');
    const body = {
      resources,
      expires_in: parseDuration(values['expires-in'], '--expires-in'),
      ...(values.uses === undefined
        ? {}
        : { uses: parseWholeNumber(values.uses, '--uses', 'registrations', 1) }),
      ...(values.auth === undefined
        ? {}
        : { auth_methods: values.auth.map((method) => parseChoice(method, '--auth', AUTH_METHODS)) }),
      ...(values['max-ttl'] === undefined
        ? {}
        : { max_token_ttl: parseWholeNumber(values['max-ttl'], '--max-ttl', 'seconds', 1) }),
    };
    await deliverResult(context, values.out, async (into) => {
      const api = await into.connect('admin:write');
      printToken(
        into,
        await api.send('POST', '/registration-tokens', { body }),
        'Created registration token.',
      );
    });
  },
});

const listRegistrationTokens = defineCommand({
  path: ['registration-token', 'list'],
  summary: 'list initial access tokens (never their values)',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'admin',
  async run(_input, context) {
    const api = await context.connect('admin:read');
    const body = await api.send('GET', '/registration-tokens');
    printResult(context, body, () => {
      const { items } = readAs(
        z.object({ items: z.array(RegistrationToken) }),
        body,
        'registration token list',
      );
      return items.length
        ? formatTable(
            ['ID', 'STATUS', 'USES LEFT', 'EXPIRES', 'RESOURCES'],
            items.map((t) => [
              t.id,
              t.status,
              `${t.uses_left}/${t.uses}`,
              formatTime(t.expires_at),
              t.resources.map((r) => r.resource).join(' '),
            ]),
          )
        : 'No registration tokens.\n';
    });
  },
});

const revokeRegistrationToken = defineCommand({
  path: ['registration-token', 'revoke'],
  summary: 'revoke an initial access token; clients it registered keep working',
  synopsis: '<id>',
  arguments: [{ name: 'id', description: 'the id shown by create or list' }],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:write');
    await api.send('DELETE', `/registration-tokens/${encodeURIComponent(args.id)}`);
    printResult(context, { revoked: args.id }, () => `Revoked registration token ${args.id}.\n`);
  },
});

export const REGISTRATION_COMMANDS = [
  createRegistrationToken,
  listRegistrationTokens,
  revokeRegistrationToken,
] as const;
