import { Resource } from '../clients/resource.schemas.ts';
import { parseChoice, parseScopes, parseWholeNumber } from './args.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { UsageError } from './errors.ts';
import { formatJson } from './output.ts';
import { PAGE_OPTIONS, printList, readPageQuery } from './paging.ts';
import { formatResource, formatResourceTable, readAs } from './views.ts';

const URI = {
  name: 'uri',
  description: 'the resource identifier, an absolute URI such as https://api.example.com',
} as const;

const RESOURCE_OPTIONS = {
  ttl: {
    type: 'string',
    value: '<seconds>',
    description: 'access token lifetime (default 300, at most MAYFLY_MAX_TOKEN_TTL)',
  },
  format: { type: 'string', value: 'jwt|opaque', description: 'access token format (default jwt)' },
  name: { type: 'string', value: '<name>', description: 'a name for people' },
} as const;

/** The API's path segment for a resource: its identifier, percent-encoded whole. */
const toResourcePath = (uri: string) => `/resources/${encodeURIComponent(uri)}`;

function printResource(context: CommandContext, body: unknown, headline: string | undefined): void {
  if (context.json) {
    context.out.result(formatJson(body));
    return;
  }
  context.out.result(
    `${headline ? `${headline}\n` : ''}${formatResource(readAs(Resource, body, 'resource'))}`,
  );
}

const createResource = defineCommand({
  path: ['resource', 'create'],
  summary: 'register a resource server (an API) and the scopes it defines',
  description:
    'Register a resource server (an API): its identifier is the audience of its tokens, and its scopes are\n' +
    'what clients can be granted on it.',
  synopsis: '<uri> --scopes "<scope> …" [--ttl <seconds>] [--format jwt|opaque] [--name <name>]',
  arguments: [URI],
  options: {
    scopes: {
      type: 'string',
      value: '"<scope> …"',
      description: 'the scopes it defines, space-separated (required)',
    },
    ...RESOURCE_OPTIONS,
  },
  globals: 'admin',
  examples: [
    'mayfly resource create https://api.example.com --scopes "orders:read orders:write" --name Orders',
  ],
  async run({ args, values }, context) {
    if (values.scopes === undefined) {
      throw new UsageError('--scopes is required, e.g. --scopes "orders:read orders:write"');
    }
    const body = {
      identifier: args.uri,
      scopes: parseScopes(values.scopes, '--scopes'),
      ...(values.ttl === undefined ? {} : { token_ttl: parseWholeNumber(values.ttl, '--ttl', 'seconds', 1) }),
      ...(values.format === undefined
        ? {}
        : { token_format: parseChoice(values.format, '--format', ['jwt', 'opaque']) }),
      ...(values.name === undefined ? {} : { name: values.name }),
    };
    const api = await context.connect('admin:write');
    printResource(context, await api.send('POST', '/resources', { body }), 'Created resource.');
  },
});

const listResources = defineCommand({
  path: ['resource', 'list'],
  summary: 'list resources',
  synopsis: '[--limit <n>] [--cursor <cursor> | --all]',
  arguments: [],
  options: PAGE_OPTIONS,
  globals: 'admin',
  async run({ values }, context) {
    const query = readPageQuery(values);
    const api = await context.connect('admin:read');
    await printList(
      context,
      api,
      { path: '/resources', query, all: values.all },
      Resource,
      formatResourceTable,
    );
  },
});

const showResource = defineCommand({
  path: ['resource', 'show'],
  summary: 'show one resource',
  synopsis: '<uri>',
  arguments: [URI],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:read');
    printResource(context, await api.send('GET', toResourcePath(args.uri)), undefined);
  },
});

const updateResource = defineCommand({
  path: ['resource', 'update'],
  summary: "change a resource's scopes, token lifetime, format or name",
  description:
    "Change a resource's scopes, token lifetime, format or name; the identifier never changes. --scopes\n" +
    'replaces the whole list, and a scope a client still holds cannot be removed. --name "" removes the name.',
  synopsis: '<uri> [--scopes "<scope> …"] [--ttl <seconds>] [--format jwt|opaque] [--name <name>]',
  arguments: [URI],
  options: {
    scopes: { type: 'string', value: '"<scope> …"', description: 'the new scope list, space-separated' },
    ...RESOURCE_OPTIONS,
  },
  globals: 'admin',
  examples: [
    'mayfly resource update https://api.example.com --scopes "orders:read orders:write orders:admin"',
  ],
  async run({ args, values }, context) {
    const body = {
      ...(values.scopes === undefined ? {} : { scopes: parseScopes(values.scopes, '--scopes') }),
      ...(values.ttl === undefined ? {} : { token_ttl: parseWholeNumber(values.ttl, '--ttl', 'seconds', 1) }),
      ...(values.format === undefined
        ? {}
        : { token_format: parseChoice(values.format, '--format', ['jwt', 'opaque']) }),
      ...(values.name === undefined ? {} : { name: values.name.trim() === '' ? null : values.name }),
    };
    if (!Object.keys(body).length)
      throw new UsageError('nothing to update: give --scopes, --ttl, --format or --name');
    const api = await context.connect('admin:write');
    printResource(context, await api.send('PATCH', toResourcePath(args.uri), { body }), 'Updated resource.');
  },
});

const deleteResource = defineCommand({
  path: ['resource', 'delete'],
  summary: 'delete a resource',
  description:
    'Delete a resource. Refused while clients hold grants on it or introspect it, unless --force, which also\n' +
    'removes those grants and rights.',
  synopsis: '<uri> [--force]',
  arguments: [URI],
  options: {
    force: { type: 'boolean', description: 'delete even while clients depend on it' },
  },
  globals: 'admin',
  async run({ args, values }, context) {
    const api = await context.connect('admin:write');
    await api.send('DELETE', toResourcePath(args.uri), {
      query: { force: values.force ? 'true' : undefined },
    });
    if (!context.json) context.out.result(`Deleted resource ${args.uri}.\n`);
  },
});

export const RESOURCE_COMMANDS = [
  createResource,
  listResources,
  showResource,
  updateResource,
  deleteResource,
];
