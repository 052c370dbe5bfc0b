import { describe, expect, it } from 'vitest';

import { parseGrant, parseWholeNumber, scanCommandLine } from '../../src/cli/args.ts';
import { COMMANDS } from '../../src/cli/cli.ts';
import { formatRecord, formatTable, formatTime } from '../../src/cli/output.ts';
import { readCliDefaults } from '../../src/cli/settings.ts';
import { expectFailure, runInProcess, runMayfly } from './helpers.ts';

const paths = COMMANDS.map((command) => command.path.join(' '));

describe('help', () => {
  it.each(paths)('mayfly %s --help prints its usage, arguments and options, exit 0', async (path) => {
    for (const flag of ['--help', '-h']) {
      const result = await runInProcess([...path.split(' '), flag]);
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(new RegExp(`^Usage: mayfly ${path}`));
      expect(result.stdout).toContain('-h, --help');
    }
    // `help` as a word, and --help wins over arguments that would otherwise be wrong.
    expect((await runInProcess(['help', ...path.split(' ')])).stdout).toMatch(
      new RegExp(`^Usage: mayfly ${path}`),
    );
    expect((await runInProcess([...path.split(' '), '--help', '--bogus', 'x', 'y', 'z'])).code).toBe(0);
  });

  it.each(['resource', 'client', 'audit'])('mayfly %s --help lists the subcommands', async (group) => {
    const result = await runInProcess([group, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Usage: mayfly ${group} <command>`));
    for (const path of paths.filter((p) => p.startsWith(`${group} `))) expect(result.stdout).toContain(path);
  });

  it('mayfly --help lists every command; the real binary prints the same', async () => {
    const inProcess = await runInProcess(['--help']);
    expect(inProcess.code).toBe(0);
    for (const path of paths) expect(inProcess.stdout).toContain(path);
    const spawned = await runMayfly(['--help']);
    expect(spawned).toEqual({ code: 0, stdout: inProcess.stdout, stderr: '' });
    expect((await runMayfly(['client', 'rotate-secret', '-h'])).stdout).toMatch(/--overlap <seconds>/);
  });

  it('shows what the admin commands share: --json, --url, --credentials and their defaults', async () => {
    const { stdout } = await runInProcess(['client', 'list', '--help']);
    expect(stdout).toMatch(/--json +print the admin API's JSON as is/);
    expect(stdout).toMatch(/--url <url> +.*\$MAYFLY_URL, else http:\/\/localhost:\$PORT/);
    expect(stdout).toMatch(/--credentials <file> +.*\$MAYFLY_CREDENTIALS, else \.\/keys\/admin\.json/);
  });
});

describe('usage errors: exit 2 with a message and a pointer to --help, before anything is read or sent', () => {
  const cases: [string, string[], RegExp | string][] = [
    ['no command', [], /mayfly: .*|Usage: mayfly <command>/],
    ['an unknown command', ['frobnicate'], "unknown command 'frobnicate'"],
    ['an unknown subcommand', ['resource', 'frobnicate'], "unknown command 'resource frobnicate'"],
    ['an unknown option', ['resource', 'list', '--bogus'], "unknown option '--bogus'"],
    [
      'an argument that looks like an option (a client_id may start with "-")',
      ['client', 'show', '--Xy3_AbC'],
      "unknown option '--Xy3_AbC'; if it is the <client_id> argument, put it after '--': mayfly client show [options] -- --Xy3_AbC",
    ],
    [
      'an option without its value',
      ['resource', 'create', 'https://a.example', '--scopes'],
      '--scopes needs a value',
    ],
    ['a value for a flag', ['resource', 'list', '--all=yes'], '--all does not take a value'],
    ['a malformed --url', ['resource', 'list', '--url', 'localhost:3000'], '--url expects an http(s) URL'],
    ['resource create without <uri>', ['resource', 'create', '--scopes', 'a'], 'missing <uri>'],
    ['resource create without --scopes', ['resource', 'create', 'https://a.example'], '--scopes is required'],
    [
      'resource create with empty --scopes',
      ['resource', 'create', 'https://a.example', '--scopes', ' '],
      '--scopes expects at least one scope',
    ],
    [
      'resource create with a non-numeric --ttl',
      ['resource', 'create', 'https://a.example', '--scopes', 'a', '--ttl', 'abc'],
      "--ttl expects seconds (a whole number of at least 1), got 'abc'",
    ],
    [
      'resource create with --ttl 0',
      ['resource', 'create', 'https://a.example', '--scopes', 'a', '--ttl', '0'],
      "got '0'",
    ],
    [
      'resource create with a negative --ttl',
      ['resource', 'create', 'https://a.example', '--scopes', 'a', '--ttl=-5'],
      "got '-5'",
    ],
    [
      'resource create with an unknown --format',
      ['resource', 'create', 'https://a.example', '--scopes', 'a', '--format', 'xml'],
      '--format expects jwt or opaque',
    ],
    [
      'resource create with an extra argument',
      ['resource', 'create', 'https://a.example', 'extra', '--scopes', 'a'],
      "unexpected argument 'extra'",
    ],
    [
      'resource list with a bad --limit',
      ['resource', 'list', '--limit', 'ten'],
      '--limit expects a page size',
    ],
    [
      'resource list with --all and --cursor',
      ['resource', 'list', '--all', '--cursor', 'abc'],
      'give --all or --cursor, not both',
    ],
    ['resource show without <uri>', ['resource', 'show'], 'missing <uri>'],
    [
      'resource update with nothing to change',
      ['resource', 'update', 'https://a.example'],
      'nothing to update',
    ],
    [
      'resource update with a bad --format',
      ['resource', 'update', 'https://a.example', '--format', 'JWT'],
      '--format expects jwt or opaque',
    ],
    ['resource delete without <uri>', ['resource', 'delete', '--force'], 'missing <uri>'],
    ['client create without --name', ['client', 'create'], '--name is required'],
    [
      'client create with a --grant without scopes',
      ['client', 'create', '--name', 'n', '--grant', 'https://a.example'],
      "malformed --grant 'https://a.example'",
    ],
    [
      'client create with a --grant without a resource',
      ['client', 'create', '--name', 'n', '--grant', '=read'],
      "malformed --grant '=read'",
    ],
    [
      'client create with a --grant with empty scopes',
      ['client', 'create', '--name', 'n', '--grant', 'https://a.example=,'],
      'malformed --grant',
    ],
    [
      'client create with an unknown --auth',
      ['client', 'create', '--name', 'n', '--auth', 'basic'],
      '--auth expects client_secret_basic or client_secret_post or private_key_jwt',
    ],
    [
      'client create with --jwks and --jwks-uri',
      [
        'client',
        'create',
        '--name',
        'n',
        '--auth',
        'private_key_jwt',
        '--jwks',
        'k.json',
        '--jwks-uri',
        'https://k.example',
      ],
      'give --jwks or --jwks-uri, not both',
    ],
    [
      'client list with a bad --status',
      ['client', 'list', '--status', 'on'],
      '--status expects enabled or disabled',
    ],
    [
      'client list with a bad --limit',
      ['client', 'list', '--limit', '0'],
      "--limit expects a page size (a whole number of at least 1), got '0'",
    ],
    ['client show without <client_id>', ['client', 'show'], 'missing <client_id>'],
    ['client disable without <client_id>', ['client', 'disable'], 'missing <client_id>'],
    ['client enable with two ids', ['client', 'enable', 'a', 'b'], "unexpected argument 'b'"],
    ['client delete without <client_id>', ['client', 'delete'], 'missing <client_id>'],
    ['client update with nothing to change', ['client', 'update', 'abc'], 'nothing to update'],
    [
      'client update with --bearer and --no-bearer',
      ['client', 'update', 'abc', '--bearer', '--no-bearer'],
      'give --bearer or --no-bearer, not both',
    ],
    [
      'client update with --grant and --no-grants',
      ['client', 'update', 'abc', '--grant', 'https://a.example=r', '--no-grants'],
      'give --grant or --no-grants, not both',
    ],
    [
      'client update with a malformed --grant',
      ['client', 'update', 'abc', '--grant', 'read'],
      "malformed --grant 'read'",
    ],
    [
      'client rotate-secret with a non-numeric --overlap',
      ['client', 'rotate-secret', 'abc', '--overlap', '1h'],
      "--overlap expects seconds (a whole number), got '1h'",
    ],
    [
      'client rotate-secret with --overlap and --now',
      ['client', 'rotate-secret', 'abc', '--overlap', '60', '--now'],
      'give --overlap or --now, not both',
    ],
    ['client rotate-secret without <client_id>', ['client', 'rotate-secret', '--now'], 'missing <client_id>'],
    [
      'audit list with a bad --since',
      ['audit', 'list', '--since', 'yesterday'],
      '--since expects a date or time',
    ],
    [
      'audit list with --client and --resource',
      ['audit', 'list', '--client', 'a', '--resource', 'https://a.example'],
      'give --client or --resource, not both',
    ],
    ['demo without --client', ['demo', '--resource-server', 'rs.json'], '--client <file> is required'],
    [
      'demo without --resource-server',
      ['demo', '--client', 'c.json'],
      '--resource-server <file> is required',
    ],
    [
      'demo with an admin option',
      ['demo', '--client', 'c.json', '--resource-server', 'rs.json', '--credentials', 'a.json'],
      "unknown option '--credentials'",
    ],
    ['serve with an argument', ['serve', 'now'], "unexpected argument 'now'"],
    ['migrate with an option', ['migrate', '--url', 'http://localhost:3000'], "unknown option '--url'"],
  ];

  it.each(cases)('%s', async (_name, args, message) => {
    const result = await runInProcess(args);
    if (args.length === 0) {
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^Usage: mayfly <command>/);
      return;
    }
    expectFailure(result, 2, message);
  });

  it('a group without a subcommand prints the group usage on stderr', async () => {
    const result = await runInProcess(['client']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /^mayfly: missing command after 'client'\n\nUsage: mayfly client <command>/,
    );
  });

  it('the real binary exits 2 the same way', async () => {
    expectFailure(
      await runMayfly(['client', 'create', '--name', 'n', '--grant', 'nope']),
      2,
      "malformed --grant 'nope'",
    );
  });
});

describe('argument parsing', () => {
  it("takes an argument that starts with '-' after '--'", async () => {
    // Parsed, then refused only because the defaults of these tests name no credentials file.
    const result = await runInProcess(['client', 'show', '--json', '--', '--Xy3_AbC']);
    expectFailure(result, 1, 'no admin credentials at /nonexistent/admin.json');
  });

  it('finds the command wherever the shared options are', () => {
    expect(scanCommandLine(['--url', 'http://x', 'client', 'show', 'abc', '--json']).words).toEqual([
      'client',
      'show',
      'abc',
    ]);
    expect(scanCommandLine(['client', '--url=http://x', 'show', 'abc']).words).toEqual([
      'client',
      'show',
      'abc',
    ]);
    expect(scanCommandLine(['client', 'list', '-h']).help).toBe(true);
  });

  it('splits --grant at the first "=": identifiers should carry no query (RFC 8707 §2), scopes may hold "="', () => {
    expect(parseGrant('https://api.example.com=orders:read,orders:write')).toEqual({
      resource: 'https://api.example.com',
      scopes: ['orders:read', 'orders:write'],
    });
    expect(parseGrant('urn:example:api=a=b')).toEqual({ resource: 'urn:example:api', scopes: ['a=b'] });
  });

  it('reads whole numbers only', () => {
    expect(parseWholeNumber('300', '--ttl', 'seconds', 1)).toBe(300);
    expect(parseWholeNumber('0', '--overlap', 'seconds')).toBe(0);
    for (const bad of ['', '1.5', '1e3', '0x10', ' ', '-1', '9999999999']) {
      expect(() => parseWholeNumber(bad, '--ttl', 'seconds')).toThrow(/--ttl expects seconds/);
    }
  });

  it('takes its defaults from MAYFLY_URL, PORT and MAYFLY_CREDENTIALS, blank meaning unset', () => {
    expect(readCliDefaults({})).toEqual({
      url: 'http://localhost:3000',
      credentialsPath: './keys/admin.json',
    });
    expect(readCliDefaults({ PORT: '8080' }).url).toBe('http://localhost:8080');
    expect(readCliDefaults({ PORT: '8080', MAYFLY_URL: 'https://auth.example.com' }).url).toBe(
      'https://auth.example.com',
    );
    expect(readCliDefaults({ MAYFLY_URL: ' ', MAYFLY_CREDENTIALS: '' })).toEqual(readCliDefaults({}));
    expect(readCliDefaults({ MAYFLY_CREDENTIALS: '/etc/mayfly/admin.json' }).credentialsPath).toBe(
      '/etc/mayfly/admin.json',
    );
  });
});

describe('output', () => {
  it('aligns tables on the widest cell, without trailing spaces', () => {
    expect(
      formatTable(
        ['A', 'LONG HEADER'],
        [
          ['wide cell', 'x'],
          ['b', ''],
        ],
      ),
    ).toBe('A          LONG HEADER\nwide cell  x\nb\n');
  });

  it('aligns records, continuing multi-line values under the first line', () => {
    expect(
      formatRecord([
        ['id', '1'],
        ['grants', 'a\nb'],
      ]),
    ).toBe('id:     1\ngrants: a\n        b\n');
  });

  it('shows instants to the second', () => {
    expect(formatTime('2026-01-31T12:00:00.123Z')).toBe('2026-01-31T12:00:00Z');
    expect(formatTime(null)).toBe('-');
  });
});
