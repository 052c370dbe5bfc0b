import { parseArgs } from 'node:util';

import { formatCommandName, type Command, type GlobalOptionSet, type OptionSpecs } from './command.ts';
import { UsageError } from './errors.ts';

const HELP_OPTION = {
  help: { type: 'boolean', short: 'h', description: 'show this help' },
} as const satisfies OptionSpecs;

const URL_OPTION = {
  url: {
    type: 'string',
    value: '<url>',
    description: "Mayfly's base URL (default $MAYFLY_URL, else http://localhost:$PORT, PORT default 3000)",
  },
} as const satisfies OptionSpecs;

const ADMIN_OPTIONS = {
  json: { type: 'boolean', description: "print the admin API's JSON as is" },
  ...URL_OPTION,
  credentials: {
    type: 'string',
    value: '<file>',
    description: 'admin credentials (default $MAYFLY_CREDENTIALS, else ./keys/admin.json)',
  },
} as const satisfies OptionSpecs;

const GLOBAL_OPTIONS: Record<GlobalOptionSet, OptionSpecs> = {
  admin: { ...ADMIN_OPTIONS, ...HELP_OPTION },
  url: { ...URL_OPTION, ...HELP_OPTION },
  none: HELP_OPTION,
};

export interface CommandLine {
  /** The positional words, in order: the command path comes first. */
  words: string[];
  /** Where each word is in argv, so the command's own parse can leave the path out. */
  wordIndexes: number[];
  help: boolean;
}

/**
 * A lenient first pass that only finds the command words and --help, wherever the shared options are placed
 * (`mayfly --url … client list` and `mayfly client list --url …` both work).
 */
export function scanCommandLine(argv: readonly string[]): CommandLine {
  const { values, tokens } = parseArgs({
    args: [...argv],
    options: { ...ADMIN_OPTIONS, ...HELP_OPTION },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const positionals = tokens.filter((token) => token.kind === 'positional');
  return {
    words: positionals.map((token) => token.value),
    wordIndexes: positionals.map((token) => token.index),
    help: values.help === true,
  };
}

export interface ParsedCommandLine {
  values: Record<string, unknown>;
  args: string[];
}

/** The strict parse of everything after the command path: unknown options and missing arguments are usage errors. */
export function parseCommandLine(command: Command, rest: readonly string[]): ParsedCommandLine {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...rest],
      options: { ...command.options, ...GLOBAL_OPTIONS[command.globals] },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error, command));
  }
  const expected = command.arguments;
  const extra = parsed.positionals[expected.length];
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  const missing = expected[parsed.positionals.length];
  if (missing) throw new UsageError(`missing <${missing.name}>: ${missing.description}`);
  return { values: parsed.values, args: parsed.positionals };
}

/** parseArgs explains itself in terms of its own API; say the same thing in the CLI's words. */
function describeParseError(error: unknown, command: Command): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^' ]+)/.exec(message)?.[1] ?? '';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      // Client ids are random base64url and may well start with '-'.
      return command.arguments.length
        ? `unknown option '${quoted}'; if it is the <${command.arguments.map((a) => a.name).join('> <')}> argument, ` +
            `put it after '--': ${formatCommandName(command)} [options] -- ${quoted}`
        : `unknown option '${quoted}'`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (message.includes('argument missing')) return `${quoted} needs a value`;
      if (message.includes('does not take an argument')) return `${quoted} does not take a value`;
      if (message.includes('ambiguous'))
        return `${quoted} needs a value; for a value starting with '-', write ${quoted}=<value>`;
      return message;
    default:
      return message;
  }
}

// Value parsers: a malformed value is a usage error, found before anything is sent.

export function parseWholeNumber(value: string, option: string, what: string, min = 0): number {
  const number = /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < min) {
    throw new UsageError(
      `${option} expects ${what} (a whole number${min > 0 ? ` of at least ${min}` : ''}), got '${value}'`,
    );
  }
  return number;
}

export function parseChoice<const C extends string>(value: string, option: string, choices: readonly C[]): C {
  const choice = choices.find((c) => c === value);
  if (choice === undefined) throw new UsageError(`${option} expects ${choices.join(' or ')}, got '${value}'`);
  return choice;
}

export function parseScopes(value: string, option: string): string[] {
  const scopes = value.split(/\s+/).filter(Boolean);
  if (!scopes.length)
    throw new UsageError(`${option} expects at least one scope, e.g. ${option} "orders:read orders:write"`);
  return scopes;
}

export interface GrantArgument {
  resource: string;
  scopes: string[];
}

/**
 * `<uri>=<scope>,<scope>`. The first `=` separates: resource identifiers should not carry a query (RFC 8707 §2),
 * so an `=` there is rarer than one in a scope.
 */
export function parseGrant(value: string): GrantArgument {
  const at = value.indexOf('=');
  const resource = at > 0 ? value.slice(0, at) : '';
  const scopes =
    at > 0
      ? value
          .slice(at + 1)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [];
  if (!resource || !scopes.length) {
    throw new UsageError(
      `malformed --grant '${value}': expected <resource>=<scope>,<scope>, e.g. --grant https://api.example.com=orders:read`,
    );
  }
  return { resource, scopes };
}

export function parseTimestamp(value: string, option: string): string {
  const time = Date.parse(value);
  if (Number.isNaN(time)) {
    throw new UsageError(
      `${option} expects a date or time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z, got '${value}'`,
    );
  }
  return new Date(time).toISOString();
}

export function parseBaseUrl(value: string, option: string): string {
  const url = URL.parse(value);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
    throw new UsageError(`${option} expects an http(s) URL such as http://localhost:3000, got '${value}'`);
  }
  return url.href.replace(/\/+$/, '');
}

// Help

export function formatCommandHelp(command: Command): string {
  const sections = [`Usage: ${formatCommandName(command)}${command.synopsis ? ` ${command.synopsis}` : ''}`];
  sections.push(command.description ?? `${command.summary}.`);
  if (command.arguments.length) {
    sections.push(
      `Arguments:\n${formatTwoColumns(command.arguments.map((arg) => [`<${arg.name}>`, arg.description]))}`,
    );
  }
  const options = { ...command.options, ...GLOBAL_OPTIONS[command.globals] };
  sections.push(
    `Options:\n${formatTwoColumns(
      Object.entries(options).map(([name, spec]) => [
        `${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.value ? ` ${spec.value}` : ''}`,
        spec.description,
      ]),
    )}`,
  );
  if (command.examples.length)
    sections.push(`Examples:\n${command.examples.map((e) => `  ${e}`).join('\n')}`);
  return `${sections.join('\n\n')}\n`;
}

export function formatGroupHelp(group: string, commands: readonly Command[]): string {
  const members = commands.filter((c) => c.path[0] === group);
  return (
    `Usage: mayfly ${group} <command> [options]\n\n` +
    `Commands:\n${formatTwoColumns(members.map((c) => [c.path.join(' '), c.summary]))}\n\n` +
    `Run 'mayfly ${group} <command> --help' for a command's arguments and options.\n`
  );
}

export function formatMainHelp(commands: readonly Command[]): string {
  return (
    'Usage: mayfly <command> [options]\n\n' +
    'Manage a Mayfly authorization server: its resources (APIs), clients, signing keys and audit trail.\n\n' +
    `Commands:\n${formatTwoColumns(commands.map((c) => [c.path.join(' '), c.summary]))}\n\n` +
    'Admin commands authenticate with the credentials file Mayfly writes on its first start\n' +
    '(keys/admin.json) and accept --url, --credentials and --json.\n' +
    "Run 'mayfly <command> --help' for a command's arguments and options.\n"
  );
}

function formatTwoColumns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n');
}
