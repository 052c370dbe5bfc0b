import { connectAdmin, type AdminClient, type AdminScope } from './admin-client.ts';
import {
  formatCommandHelp,
  formatGroupHelp,
  formatMainHelp,
  parseBaseUrl,
  parseCommandLine,
  scanCommandLine,
} from './args.ts';
import { ADMIN_USER_COMMANDS } from './admin-user.commands.ts';
import { AUDIT_COMMANDS } from './audit.commands.ts';
import { CLIENT_COMMANDS } from './client.commands.ts';
import { formatCommandName, type Command, type CommandContext } from './command.ts';
import { DEMO_COMMANDS } from './demo.command.ts';
import { KEY_COMMANDS } from './key.commands.ts';
import { CliError, UsageError } from './errors.ts';
import { createOutput, type Output } from './output.ts';
import { POLICY_COMMANDS } from './policy.commands.ts';
import { REGISTRATION_COMMANDS } from './registration.commands.ts';
import { RESOURCE_COMMANDS } from './resource.commands.ts';
import { SERVER_COMMANDS } from './server.commands.ts';
import type { CliDefaults } from './settings.ts';

export const COMMANDS: readonly Command[] = [
  ...RESOURCE_COMMANDS,
  ...CLIENT_COMMANDS,
  ...POLICY_COMMANDS,
  ...KEY_COMMANDS,
  ...REGISTRATION_COMMANDS,
  ...ADMIN_USER_COMMANDS,
  ...AUDIT_COMMANDS,
  ...DEMO_COMMANDS,
  ...SERVER_COMMANDS,
];

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  defaults: CliDefaults;
}

type Resolution =
  | { kind: 'main' }
  | { kind: 'group'; group: string }
  | { kind: 'command'; command: Command }
  | { kind: 'unknown'; message: string; helpFor: string };

function resolveCommand(words: readonly string[]): Resolution {
  const [first, second] = words;
  if (first === undefined) return { kind: 'main' };
  const group = COMMANDS.filter((c) => c.path[0] === first);
  if (!group.length) return { kind: 'unknown', message: `unknown command '${first}'`, helpFor: 'mayfly' };
  const single = group.find((c) => c.path.length === 1);
  if (single) return { kind: 'command', command: single };
  if (second === undefined) return { kind: 'group', group: first };
  const command = group.find((c) => c.path[1] === second);
  return command
    ? { kind: 'command', command }
    : { kind: 'unknown', message: `unknown command '${first} ${second}'`, helpFor: `mayfly ${first}` };
}

/** Runs one command line and resolves to the exit code: 0 success, 1 error, 2 bad usage. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const out = createOutput(io.stdout, io.stderr);
  const scanned = scanCommandLine(argv);
  // `mayfly help <command>` reads as `mayfly <command> --help`.
  const asksHelp = scanned.words[0] === 'help';
  const words = asksHelp ? scanned.words.slice(1) : scanned.words;
  const help = scanned.help || asksHelp;
  const resolved = resolveCommand(words);

  switch (resolved.kind) {
    case 'unknown':
      return reportUsage(out, resolved.message, resolved.helpFor);
    case 'main':
      if (help) {
        out.result(formatMainHelp(COMMANDS));
        return EXIT_OK;
      }
      out.note(formatMainHelp(COMMANDS));
      return EXIT_USAGE;
    case 'group':
      if (help) {
        out.result(formatGroupHelp(resolved.group, COMMANDS));
        return EXIT_OK;
      }
      out.note(
        `mayfly: missing command after '${resolved.group}'\n\n${formatGroupHelp(resolved.group, COMMANDS)}`,
      );
      return EXIT_USAGE;
    case 'command':
      break;
  }

  const { command } = resolved;
  if (help) {
    out.result(formatCommandHelp(command));
    return EXIT_OK;
  }
  const pathIndexes = new Set(scanned.wordIndexes.slice(0, command.path.length));
  const rest = argv.filter((_arg, i) => !pathIndexes.has(i));
  try {
    const { values, args } = parseCommandLine(command, rest);
    await command.run(values, args, createContext(values, io.defaults, out));
    return EXIT_OK;
  } catch (error) {
    if (error instanceof UsageError) return reportUsage(out, error.message, formatCommandName(command));
    if (error instanceof CliError) {
      out.note(`mayfly: ${error.message}\n`);
      return EXIT_ERROR;
    }
    out.note(`mayfly: unexpected error: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_ERROR;
  }
}

function reportUsage(out: Output, message: string, helpFor: string): number {
  out.note(`mayfly: ${message}\nRun '${helpFor} --help' for usage.\n`);
  return EXIT_USAGE;
}

function createContext(
  values: Readonly<Record<string, unknown>>,
  defaults: CliDefaults,
  out: Output,
): CommandContext {
  const url =
    typeof values.url === 'string'
      ? parseBaseUrl(values.url, '--url')
      : parseBaseUrl(defaults.url, 'MAYFLY_URL (or PORT)');
  const credentialsPath =
    typeof values.credentials === 'string' ? values.credentials : defaults.credentialsPath;
  const clients = new Map<AdminScope, Promise<AdminClient>>();
  return {
    out,
    json: values.json === true,
    url,
    credentialsPath,
    connect(scope) {
      let client = clients.get(scope);
      if (!client) {
        client = connectAdmin({ url, credentialsPath, scope });
        clients.set(scope, client);
      }
      return client;
    },
  };
}
