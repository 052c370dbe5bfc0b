import { createInterface } from 'node:readline';

import { z } from 'zod';

import { AdminUser, AdminUserWithTotp } from '../console/admin-user.schemas.ts';
import { PASSWORD_MIN_LENGTH } from '../console/password.ts';
import { parseChoice } from './args.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { CliError, UsageError } from './errors.ts';
import {
  deliverResult,
  formatRecord,
  formatTable,
  formatTime,
  printResult,
  SECRET_OUT_OPTION,
} from './output.ts';
import { readAs } from './views.ts';

const ROLES = ['read', 'write'] as const;

/**
 * The password: typed at a prompt (not echoed) on a terminal, else the first line of standard input, so that
 * `printf '%s\n' "$PASSWORD" | mayfly admin-user create alice` works in scripts. Never an argument: those show in
 * process lists and shell histories.
 */
async function readPassword(context: CommandContext, prompt: string, confirm: boolean): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const lines = createInterface({ input: stdin, crlfDelay: Infinity });
    for await (const line of lines) {
      lines.close();
      return line;
    }
    throw new UsageError('no password on standard input: give it on the first line, or run at a terminal');
  }
  const ask = (question: string) =>
    new Promise<string>((resolve) => {
      const rl = createInterface({ input: stdin, output: process.stderr, terminal: true });
      // Echo nothing of what is typed after the question.
      const write = (rl as unknown as { _writeToOutput: (text: string) => void })._writeToOutput;
      let asked = false;
      (rl as unknown as { _writeToOutput: (text: string) => void })._writeToOutput = (text: string) => {
        if (!asked) write.call(rl, text);
      };
      rl.question(question, (answer) => {
        rl.close();
        process.stderr.write('\n');
        resolve(answer);
      });
      asked = true;
    });
  const password = await ask(prompt);
  if (confirm && (await ask('Repeat the password: ')) !== password) {
    throw new CliError('the two passwords differ; nothing was changed');
  }
  return password;
}

function formatUser(user: AdminUser): string {
  return formatRecord([
    ['name', user.name],
    ['role', user.role],
    ['second factor', user.totp ? 'TOTP' : 'none'],
    ['status', user.status],
    ['created', formatTime(user.created_at)],
  ]);
}

function printUser(context: CommandContext, body: unknown, headline: string): void {
  const user = readAs(AdminUserWithTotp, body, 'admin user');
  printResult(context, body, () => `${headline}\n${formatUser(user)}`);
  if (user.totp_enrolment) {
    if (!context.json) {
      context.out.result(
        `\nTOTP secret: ${user.totp_enrolment.secret}\notpauth URI: ${user.totp_enrolment.otpauth_uri}\n`,
      );
    }
    context.out.note(
      'Add the secret to an authenticator app now (or import the otpauth URI): it is not shown again.\n',
    );
  }
}

const createAdminUser = defineCommand({
  path: ['admin-user', 'create'],
  summary: 'create a person who signs in to the web console (asks for the password)',
  description:
    'Create a console user. The password is asked for at the terminal, or read from the first line of\n' +
    `standard input; at least ${PASSWORD_MIN_LENGTH} characters. Only its scrypt hash is stored. --role read (the\n` +
    'default) sees everything and changes nothing; --role write may also make changes. --totp enrols a TOTP\n' +
    'second factor and prints its secret once.',
  synopsis: '<name> [--role read|write] [--totp]',
  arguments: [{ name: 'name', description: 'lowercase letters, digits, . _ -; at most 64' }],
  options: {
    role: { type: 'string', value: 'read|write', description: 'what the user may do (default read)' },
    totp: { type: 'boolean', description: 'require a TOTP code at sign-in; prints the secret once' },
    ...SECRET_OUT_OPTION,
  },
  globals: 'admin',
  examples: [
    'mayfly admin-user create alice --role write --totp',
    'printf \'%s\\n\' "$PASSWORD" | mayfly admin-user create ci-viewer',
  ],
  async run({ values, args }, context) {
    const role = values.role === undefined ? 'read' : parseChoice(values.role, '--role', ROLES);
    const password = await readPassword(context, `Password for ${args.name}: `, true);
    await deliverResult(context, values.out, async (into) => {
      const api = await into.connect('admin:write');
      const body = await api.send('POST', '/admin-users', {
        body: { name: args.name, password, role, totp: values.totp === true },
      });
      printUser(into, body, `Created admin user ${args.name}.`);
    });
    if (role === 'read')
      context.out.note(`${args.name} can read only; --role write lets a user make changes.\n`);
  },
});

const listAdminUsers = defineCommand({
  path: ['admin-user', 'list'],
  summary: 'list console users',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'admin',
  async run(_input, context) {
    const api = await context.connect('admin:read');
    const body = await api.send('GET', '/admin-users');
    printResult(context, body, () => {
      const { items } = readAs(z.object({ items: z.array(AdminUser) }), body, 'admin user list');
      return items.length
        ? formatTable(
            ['NAME', 'ROLE', '2FA', 'STATUS', 'CREATED'],
            items.map((u) => [u.name, u.role, u.totp ? 'totp' : '-', u.status, formatTime(u.created_at)]),
          )
        : 'No admin users. Create one with: mayfly admin-user create <name> --role write\n';
    });
  },
});

const updateAdminUser = defineCommand({
  path: ['admin-user', 'update'],
  summary: "change a console user's password, role, status or second factor",
  description:
    'A new password (--password, asked for like at create), a new or removed second factor, or --disable\n' +
    'ends every session of the user at once.',
  synopsis: '<name> [--password] [--role read|write] [--disable|--enable] [--totp|--no-totp]',
  arguments: [{ name: 'name', description: 'the user' }],
  options: {
    password: { type: 'boolean', description: 'set a new password (asked for)' },
    role: { type: 'string', value: 'read|write', description: 'the new role' },
    disable: { type: 'boolean', description: 'refuse sign-in and end the sessions' },
    enable: { type: 'boolean', description: 'allow sign-in again' },
    totp: { type: 'boolean', description: 'enrol a new TOTP secret (printed once)' },
    'no-totp': { type: 'boolean', description: 'remove the second factor' },
    ...SECRET_OUT_OPTION,
  },
  globals: 'admin',
  async run({ values, args }, context) {
    if (values.disable && values.enable) throw new UsageError('give --disable or --enable, not both');
    if (values.totp && values['no-totp']) throw new UsageError('give --totp or --no-totp, not both');
    const body = {
      ...(values.role === undefined ? {} : { role: parseChoice(values.role, '--role', ROLES) }),
      ...(values.disable ? { status: 'disabled' } : values.enable ? { status: 'enabled' } : {}),
      ...(values.totp ? { totp: 'enroll' } : values['no-totp'] ? { totp: 'remove' } : {}),
      ...(values.password
        ? { password: await readPassword(context, `New password for ${args.name}: `, true) }
        : {}),
    };
    if (!Object.keys(body).length) {
      throw new UsageError(
        'nothing to change: give --password, --role, --disable, --enable, --totp or --no-totp',
      );
    }
    await deliverResult(context, values.out, async (into) => {
      const api = await into.connect('admin:write');
      printUser(
        into,
        await api.send('PATCH', `/admin-users/${encodeURIComponent(args.name)}`, { body }),
        `Updated admin user ${args.name}.`,
      );
    });
  },
});

const deleteAdminUser = defineCommand({
  path: ['admin-user', 'delete'],
  summary: 'delete a console user; its sessions end at once',
  synopsis: '<name>',
  arguments: [{ name: 'name', description: 'the user' }],
  options: {},
  globals: 'admin',
  async run({ args }, context) {
    const api = await context.connect('admin:write');
    await api.send('DELETE', `/admin-users/${encodeURIComponent(args.name)}`);
    printResult(context, { deleted: args.name }, () => `Deleted admin user ${args.name}.\n`);
  },
});

export const ADMIN_USER_COMMANDS = [
  createAdminUser,
  listAdminUsers,
  updateAdminUser,
  deleteAdminUser,
] as const;
