import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ConsoleSession } from '../support/console.ts';
import { expectFailure, startCliServer, type CliServer } from './helpers.ts';

/** `mayfly admin-user`: console users, with the password read from standard input (never an argument). */

let cli: CliServer;
beforeAll(async () => {
  cli = await startCliServer();
});
afterAll(() => cli.close());

const PASSWORD = 'typed into standard input';

describe('mayfly admin-user', () => {
  it('create reads the password from standard input; the user signs in to the console with it', async () => {
    const created = await cli.spawn(['admin-user', 'create', 'alice', '--role', 'write'], {
      input: `${PASSWORD}\n`,
    });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(
      /^Created admin user alice\.\nname: +alice\nrole: +write\nsecond factor: +none\n/,
    );
    expect(created.stdout + created.stderr).not.toContain(PASSWORD);
    expect((await new ConsoleSession(cli.server).signIn('alice', PASSWORD)).status).toBe(303);
  });

  it('create --totp prints the secret and otpauth URI once; the default role is read', async () => {
    const created = await cli.spawn(['admin-user', 'create', 'bob', '--totp'], { input: `${PASSWORD}\n` });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^role: +read$/m);
    expect(created.stdout).toMatch(/^TOTP secret: [A-Z2-7]{32}$/m);
    expect(created.stdout).toMatch(/^otpauth URI: otpauth:\/\/totp\/.*:bob\?secret=[A-Z2-7]{32}&/m);
    expect(created.stderr).toContain('it is not shown again');
    expect(created.stderr).toContain('bob can read only; --role write lets a user make changes.');
    const listed = await cli.spawn(['admin-user', 'list']);
    expect(listed.stdout).toMatch(/^bob +read +totp +enabled /m);
    expect(listed.stdout).not.toMatch(/[A-Z2-7]{32}/);
  });

  it('update sets a new password from standard input, changes the role, disables and enables', async () => {
    await cli.spawn(['admin-user', 'create', 'carol'], { input: `${PASSWORD}\n` });
    const changed = await cli.spawn(['admin-user', 'update', 'carol', '--password', '--role', 'write'], {
      input: 'the second password\n',
    });
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toMatch(/^role: +write$/m);
    expect((await new ConsoleSession(cli.server).signIn('carol', 'the second password')).status).toBe(303);
    const disabled = await cli.spawn(['admin-user', 'update', 'carol', '--disable']);
    expect(disabled.stdout).toMatch(/^status: +disabled$/m);
    expect((await new ConsoleSession(cli.server).signIn('carol', 'the second password')).status).toBe(401);
    const json = await cli.json<{ status: string }>(['admin-user', 'update', 'carol', '--enable'], {
      spawn: true,
    });
    expect(json.status).toBe('enabled');
  });

  it('delete removes the user', async () => {
    await cli.spawn(['admin-user', 'create', 'dave'], { input: `${PASSWORD}\n` });
    const deleted = await cli.spawn(['admin-user', 'delete', 'dave']);
    expect(deleted.stdout).toBe('Deleted admin user dave.\n');
    expectFailure(await cli.spawn(['admin-user', 'delete', 'dave']), 1, 'no admin user named dave');
  });

  it('refuses bad input with a clear message and creates nothing', async () => {
    expectFailure(
      await cli.spawn(['admin-user', 'create', 'erin']),
      2,
      'no password on standard input: give it on the first line, or run at a terminal',
    );
    expectFailure(
      await cli.spawn(['admin-user', 'create', 'erin'], { input: 'short\n' }),
      1,
      /password: a password is at least 12 characters/,
    );
    expectFailure(
      await cli.spawn(['admin-user', 'create', 'Erin!'], { input: `${PASSWORD}\n` }),
      1,
      /name: a user name is 1 to 64 lowercase letters/,
    );
    expectFailure(
      await cli.spawn(['admin-user', 'create', 'erin', '--role', 'owner'], { input: `${PASSWORD}\n` }),
      2,
      /--role/,
    );
    expectFailure(
      await cli.spawn(['admin-user', 'create', 'alice'], { input: `${PASSWORD}\n` }),
      1,
      'an admin user named alice already exists',
    );
    expectFailure(await cli.spawn(['admin-user', 'update', 'alice']), 2, 'nothing to change');
    expectFailure(
      await cli.spawn(['admin-user', 'update', 'alice', '--disable', '--enable']),
      2,
      'give --disable or --enable, not both',
    );
    const listed = await cli.spawn(['admin-user', 'list']);
    expect(listed.stdout).not.toMatch(/^erin /m);
  });
});
