import { readFile } from 'node:fs/promises';

import { Client, ClientWithSecret } from '../clients/client.schemas.ts';
import { PRIVATE_JWK_MEMBERS } from '../keys/jwk.ts';
import { parseChoice, parseGrant, parseWholeNumber } from './args.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { CliError, UsageError } from './errors.ts';
import { deliverResult, formatJson, SECRET_OUT_OPTION } from './output.ts';
import { PAGE_OPTIONS, printList, readPageQuery } from './paging.ts';
import { formatClient, formatClientTable, readAs } from './views.ts';

const CLIENT_ID = {
  name: 'client_id',
  description: "the client's id, as printed by client create or client list",
} as const;

const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;

const GRANT_OPTIONS = {
  grant: {
    type: 'string',
    multiple: true,
    value: '<uri>=<scope>,<scope>',
    description: 'scopes the client may obtain for a resource (repeat for more resources)',
  },
  introspects: {
    type: 'string',
    multiple: true,
    value: '<uri>',
    description: 'make it a resource server that may introspect tokens of this resource (repeatable)',
  },
} as const;

const KEY_OPTIONS = {
  jwks: {
    type: 'string',
    value: '<file>',
    description: 'public keys (a JWKS or one JWK) for private_key_jwt',
  },
  'jwks-uri': {
    type: 'string',
    value: '<url>',
    description: 'where its public keys are published, for private_key_jwt',
  },
} as const;

const PIN_OPTIONS = {
  'dpop-jkt': {
    type: 'string',
    multiple: true,
    value: '<thumbprint>',
    description: 'pin a DPoP key (RFC 7638 thumbprint): proofs by any other key are refused (repeatable)',
  },
} as const;

const LIMIT_OPTIONS = {
  'tokens-per-minute': {
    type: 'string',
    value: '<n>|default',
    description: 'token requests per minute this client may make (default: the server setting)',
  },
  'introspections-per-minute': {
    type: 'string',
    value: '<n>|default',
    description: 'introspection requests per minute, for a resource server (default: the server setting)',
  },
} as const;

function readLimit(value: string | undefined, option: string): number | null | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === 'default') return null;
  return parseWholeNumber(value, option, "requests per minute, or 'default'", 1);
}

function readRateLimits(values: { 'tokens-per-minute'?: string; 'introspections-per-minute'?: string }) {
  const tokens = readLimit(values['tokens-per-minute'], '--tokens-per-minute');
  const introspections = readLimit(values['introspections-per-minute'], '--introspections-per-minute');
  if (tokens === undefined && introspections === undefined) return {};
  return {
    rate_limits: {
      ...(tokens === undefined ? {} : { tokens_per_minute: tokens }),
      ...(introspections === undefined ? {} : { introspections_per_minute: introspections }),
    },
  };
}

const toClientPath = (clientId: string) => `/clients/${encodeURIComponent(clientId)}`;

const SECRET_WARNING =
  'Save the client_secret now: Mayfly keeps only a hash of it and will not show it again.\n';

function printClient(context: CommandContext, body: unknown, headline: string | undefined): void {
  context.out.result(
    context.json
      ? formatJson(body)
      : `${headline ? `${headline}\n` : ''}${formatClient(readAs(ClientWithSecret, body, 'client'))}`,
  );
  if (typeof body === 'object' && body !== null && 'client_secret' in body) context.out.note(SECRET_WARNING);
}

/** A JWKS file, or a single JWK wrapped into one; a private key is refused before it leaves this machine. */
async function readJwksFile(path: string): Promise<unknown> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CliError(`cannot use --jwks ${path}: ${code ? `cannot read it (${code})` : 'not valid JSON'}`);
  }
  const jwks = typeof json === 'object' && json !== null && 'kty' in json ? { keys: [json] } : json;
  const keys = (jwks as { keys?: unknown }).keys;
  if (!Array.isArray(keys))
    throw new CliError(`--jwks ${path}: expected a JWK Set ({ "keys": [...] }) or one JWK`);
  if (
    keys.some((key) => typeof key === 'object' && key !== null && PRIVATE_JWK_MEMBERS.some((m) => m in key))
  ) {
    throw new CliError(
      `--jwks ${path} holds a private key: give the public keys only (no d, p, q, dp, dq, qi, k)`,
    );
  }
  return jwks;
}

function readGrants(values: readonly string[] | undefined) {
  return values?.map(parseGrant);
}

async function readKeys(values: { jwks?: string; 'jwks-uri'?: string }) {
  if (values.jwks !== undefined && values['jwks-uri'] !== undefined) {
    throw new UsageError('give --jwks or --jwks-uri, not both');
  }
  return {
    ...(values.jwks === undefined ? {} : { jwks: await readJwksFile(values.jwks) }),
    ...(values['jwks-uri'] === undefined ? {} : { jwks_uri: values['jwks-uri'] }),
  };
}

const createClient = defineCommand({
  path: ['client', 'create'],
  summary: 'register a client; prints its client_secret once',
  description:
    'Register a client (a service that obtains tokens). With a secret method the answer holds its\n' +
    'client_secret, printed this once. A resource server that introspects tokens is a client too: give it\n' +
    '--introspects for its resource.',
  synopsis:
    '--name <name> [--grant <uri>=<scope>,<scope>]… [--auth <method>] [--jwks <file> | --jwks-uri <url>] ' +
    '[--introspects <uri>]… [--bearer] [--dpop-jkt <thumbprint>]… [--tokens-per-minute <n>] ' +
    '[--introspections-per-minute <n>]',
  arguments: [],
  options: {
    name: { type: 'string', value: '<name>', description: 'a name for people (required)' },
    ...GRANT_OPTIONS,
    auth: {
      type: 'string',
      value: '<method>',
      description: 'client_secret_basic (default), client_secret_post or private_key_jwt',
    },
    ...KEY_OPTIONS,
    bearer: {
      type: 'boolean',
      description: 'also accept token requests without DPoP (an audited exception)',
    },
    ...PIN_OPTIONS,
    ...LIMIT_OPTIONS,
    ...SECRET_OUT_OPTION,
  },
  globals: 'admin',
  examples: [
    'mayfly client create --name billing --grant https://api.example.com=orders:read --json --out billing.json',
    'mayfly client create --name orders-api --introspects https://api.example.com --json --out orders-api.json',
  ],
  async run({ values }, context) {
    if (values.name === undefined) throw new UsageError('--name is required');
    const grants = readGrants(values.grant);
    const body = {
      name: values.name,
      ...(values.auth === undefined ? {} : { auth_method: parseChoice(values.auth, '--auth', AUTH_METHODS) }),
      ...(grants ? { grants } : {}),
      ...(values.introspects ? { introspects: values.introspects } : {}),
      ...(values.bearer ? { bearer_allowed: true } : {}),
      ...(values['dpop-jkt'] ? { dpop_jkts: values['dpop-jkt'] } : {}),
      ...readRateLimits(values),
      ...(await readKeys(values)),
    };
    await deliverResult(context, values.out, async (into) => {
      const api = await into.connect('admin:write');
      printClient(into, await api.send('POST', '/clients', { body }), 'Created client.');
    });
  },
});

const listClients = defineCommand({
  path: ['client', 'list'],
  summary: 'list clients, with filters',
  synopsis:
    '[--name <text>] [--status enabled|disabled] [--resource <uri>] [--auth <method>] [--limit <n>] [--all]',
  arguments: [],
  options: {
    name: { type: 'string', value: '<text>', description: 'names containing this text (any case)' },
    status: { type: 'string', value: 'enabled|disabled', description: 'only clients in this state' },
    resource: {
      type: 'string',
      value: '<uri>',
      description: 'clients with a grant on, or introspecting, this resource',
    },
    auth: { type: 'string', value: '<method>', description: 'only clients with this authentication method' },
    ...PAGE_OPTIONS,
  },
  globals: 'admin',
  async run({ values }, context) {
    const query = {
      ...readPageQuery(values),
      name: values.name,
      status:
        values.status === undefined
          ? undefined
          : parseChoice(values.status, '--status', ['enabled', 'disabled']),
      resource: values.resource,
      auth_method: values.auth === undefined ? undefined : parseChoice(values.auth, '--auth', AUTH_METHODS),
    };
    const api = await context.connect('admin:read');
    await printList(context, api, { path: '/clients', query, all: values.all }, Client, formatClientTable);
  },
});

const showClient = defineCommand({
  path: ['client', 'show'],
  summary: 'show one client: grants, rights and working secrets',
  synopsis: '<client_id>',
  arguments: [CLIENT_ID],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:read');
    printClient(context, await api.send('GET', toClientPath(args.client_id)), undefined);
  },
});

const updateClient = defineCommand({
  path: ['client', 'update'],
  summary: "change a client's name, grants, introspection rights, bearer exception, rate limits or keys",
  description:
    "Change a client. --grant replaces all of the client's grants and --introspects all of its introspection\n" +
    'rights with the ones given; --no-grants and --no-introspects remove them all.',
  synopsis:
    '<client_id> [--name <name>] [--grant <uri>=<scope>,<scope>]… [--introspects <uri>]… [--bearer | --no-bearer] ' +
    '[--dpop-jkt <thumbprint>… | --no-dpop-jkts] [--tokens-per-minute <n>|default] ' +
    '[--introspections-per-minute <n>|default]',
  arguments: [CLIENT_ID],
  options: {
    name: { type: 'string', value: '<name>', description: 'a new name' },
    ...GRANT_OPTIONS,
    'no-grants': { type: 'boolean', description: 'remove every grant' },
    'no-introspects': { type: 'boolean', description: 'remove every introspection right' },
    bearer: { type: 'boolean', description: 'accept token requests without DPoP (an audited exception)' },
    'no-bearer': { type: 'boolean', description: 'require DPoP again' },
    ...PIN_OPTIONS,
    'no-dpop-jkts': { type: 'boolean', description: 'remove the pinning: proofs by any key are accepted' },
    ...LIMIT_OPTIONS,
    ...KEY_OPTIONS,
  },
  globals: 'admin',
  examples: ['mayfly client update <client_id> --grant https://api.example.com=orders:read,orders:write'],
  async run({ args, values }, context) {
    const refuseBoth = (a: keyof typeof values, b: keyof typeof values) => {
      if (values[a] !== undefined && values[b] !== undefined)
        throw new UsageError(`give --${a} or --${b}, not both`);
    };
    refuseBoth('grant', 'no-grants');
    refuseBoth('introspects', 'no-introspects');
    refuseBoth('bearer', 'no-bearer');
    refuseBoth('dpop-jkt', 'no-dpop-jkts');
    const grants = values['no-grants'] ? [] : readGrants(values.grant);
    const introspects = values['no-introspects'] ? [] : values.introspects;
    const bearer = values.bearer ? true : values['no-bearer'] ? false : undefined;
    const pins = values['no-dpop-jkts'] ? [] : values['dpop-jkt'];
    const body = {
      ...(values.name === undefined ? {} : { name: values.name }),
      ...(grants ? { grants } : {}),
      ...(introspects ? { introspects } : {}),
      ...(bearer === undefined ? {} : { bearer_allowed: bearer }),
      ...(pins ? { dpop_jkts: pins } : {}),
      ...readRateLimits(values),
      ...(await readKeys(values)),
    };
    if (!Object.keys(body).length) {
      throw new UsageError(
        'nothing to update: give --name, --grant, --introspects, --bearer, --tokens-per-minute, --jwks or another option',
      );
    }
    const api = await context.connect('admin:write');
    printClient(context, await api.send('PATCH', toClientPath(args.client_id), { body }), 'Updated client.');
  },
});

function defineStateChange(verb: 'disable' | 'enable', summary: string, description: string) {
  return defineCommand({
    path: ['client', verb],
    summary,
    description,
    synopsis: '<client_id>',
    arguments: [CLIENT_ID],
    options: {},
    globals: 'admin',
    async run({ args }, context) {
      const api = await context.connect('admin:write');
      const body = await api.send('POST', `${toClientPath(args.client_id)}/${verb}`);
      printClient(context, body, `${verb === 'disable' ? 'Disabled' : 'Enabled'} client.`);
    },
  });
}

const disableClient = defineStateChange(
  'disable',
  'disable a client: no new tokens, and its tokens are inactive at once',
  'Disable a client: it obtains no token, and its outstanding tokens introspect as inactive at once.',
);

const enableClient = defineStateChange('enable', 'enable a disabled client', 'Enable a disabled client.');

const deleteClient = defineCommand({
  path: ['client', 'delete'],
  summary: 'delete a client, its secrets, grants and rights',
  description:
    'Delete a client with its secrets, grants and rights; its outstanding tokens are inactive at once.',
  synopsis: '<client_id>',
  arguments: [CLIENT_ID],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:write');
    await api.send('DELETE', toClientPath(args.client_id));
    if (!context.json) context.out.result(`Deleted client ${args.client_id}.\n`);
  },
});

const rotateSecret = defineCommand({
  path: ['client', 'rotate-secret'],
  summary: 'issue a new client secret; prints it once',
  description:
    'Issue a new client secret, printed this once. The previous secrets keep working for --overlap seconds\n' +
    "(default: the server's MAYFLY_SECRET_OVERLAP, 86400) so that deployments can switch; --now ends them at once.",
  synopsis: '<client_id> [--overlap <seconds> | --now]',
  arguments: [CLIENT_ID],
  options: {
    overlap: {
      type: 'string',
      value: '<seconds>',
      description: 'how long the previous secrets keep working',
    },
    now: { type: 'boolean', description: 'previous secrets stop working at once' },
    ...SECRET_OUT_OPTION,
  },
  globals: 'admin',
  examples: ['mayfly client rotate-secret <client_id> --overlap 3600 --json --out billing.json'],
  async run({ args, values }, context) {
    if (values.overlap !== undefined && values.now) throw new UsageError('give --overlap or --now, not both');
    const overlap = values.now
      ? 0
      : values.overlap === undefined
        ? undefined
        : parseWholeNumber(values.overlap, '--overlap', 'seconds');
    const body = overlap === undefined ? {} : { previous_secret_expires_in: overlap };
    await deliverResult(context, values.out, async (into) => {
      const api = await into.connect('admin:write');
      printClient(
        into,
        await api.send('POST', `${toClientPath(args.client_id)}/secrets`, { body }),
        'New client secret issued.',
      );
    });
  },
});

export const CLIENT_COMMANDS = [
  createClient,
  listClients,
  showClient,
  updateClient,
  disableClient,
  enableClient,
  deleteClient,
  rotateSecret,
];
