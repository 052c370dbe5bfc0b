import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { exportJWK, generateKeyPair } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generateDpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import {
  expectFailure,
  findFreePort,
  runMayfly,
  startCliServer,
  type CliResult,
  type CliServer,
} from './helpers.ts';

/*
 * The admin commands against one real server (a server start is the costliest part of a test file): resources,
 * clients, the audit trail, and how the CLI finds the server and its credentials. The success path of every
 * command runs in the real binary, human and --json; refusals and edge cases run through the same entry
 * function in this process.
 */

const API = 'https://api.example.com';
const OTHER = 'https://other.example.com';

let cli: CliServer;
let dir: string;
let credentials: { issuer: string; client_id: string; private_jwk: Record<string, string> };
/** A resource server that may introspect tokens for API. */
let introspector: { id: string; secret: string };

beforeAll(async () => {
  cli = await startCliServer();
  dir = await mkdtemp(join(tmpdir(), 'mayfly-cli-'));
  credentials = JSON.parse(await readFile(cli.credentialsPath, 'utf8')) as typeof credentials;
  await cli.server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await cli.server.createResource({ identifier: OTHER, scopes: ['read'] });
  const created = await cli.server.createClient({ name: 'api-introspector', introspects: [API] });
  introspector = { id: created.client.client_id, secret: created.clientSecret ?? '' };
});
afterAll(async () => {
  await cli.close();
  await rm(dir, { recursive: true, force: true });
});

interface ResourcePage {
  items: { identifier: string; id: string }[];
  next_cursor: string | null;
}

interface ClientJson {
  client_id: string;
  client_secret?: string;
  name: string;
  auth_method: string;
  grants: { resource: string; scopes: string[] }[];
  introspects: string[];
  bearer_allowed: boolean;
  status: string;
  secrets: { id: string; expires_at: string | null }[];
}

interface ClientPage {
  items: ClientJson[];
  next_cursor: string | null;
}

async function tokenStatus(clientId: string, secret: string): Promise<number> {
  const response = await requestToken(cli.server.url, {
    clientId,
    secret,
    resource: API,
    key: await generateDpopKey(),
  });
  return response.status;
}

async function obtainToken(clientId: string, secret: string): Promise<string> {
  const response = await requestToken(cli.server.url, {
    clientId,
    secret,
    resource: API,
    key: await generateDpopKey(),
  });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return (response.body as { access_token: string }).access_token;
}

async function introspect(token: string): Promise<{ active: boolean }> {
  const response = await request(cli.server.url)
    .post('/token/introspection')
    .set('Authorization', basicAuth(introspector.id, introspector.secret))
    .type('form')
    .send({ token });
  return response.body as { active: boolean };
}

async function writeCredentials(name: string, content: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content), { mode: 0o600 });
  return path;
}

const secretIn = (result: CliResult) => /^client_secret: +(mfy_\S+)$/m.exec(result.stdout)?.[1] ?? '';
const idIn = (result: CliResult) => /^client_id: +(\S+)$/m.exec(result.stdout)?.[1] ?? '';
const WARNING = 'Save the client_secret now: Mayfly keeps only a hash of it and will not show it again.\n';

describe('mayfly resource', () => {
  it('create, show, list, update and delete, as a record or table and as the JSON of the API', async () => {
    const created = await cli.spawn([
      'resource',
      'create',
      'https://orders.example.com',
      '--scopes',
      'orders:read orders:write',
      '--name',
      'Orders',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/^Created resource\.\nidentifier: +https:\/\/orders\.example\.com\n/);
    expect(created.stdout).toMatch(/^scopes: +orders:read orders:write$/m);
    expect(created.stdout).toMatch(/^token ttl: +300 s$/m);
    expect(created.stdout).toMatch(/^token format: +jwt$/m);

    const json = await cli.json([
      'resource',
      'create',
      'https://stock.example.com',
      '--scopes',
      'stock:read',
      '--ttl',
      '120',
      '--format',
      'opaque',
    ]);
    expect(json).toMatchObject({
      identifier: 'https://stock.example.com',
      name: null,
      scopes: ['stock:read'],
      token_ttl: 120,
      token_format: 'opaque',
      reserved: false,
    });
    expect(json.id).toEqual(expect.any(String));

    const shown = await cli.spawn(['resource', 'show', 'https://stock.example.com']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^identifier: +https:\/\/stock\.example\.com\nname: +-\n/);
    expect(await cli.json(['resource', 'show', 'https://stock.example.com'])).toEqual(json);

    const table = await cli.spawn(['resource', 'list']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IDENTIFIER +NAME +SCOPES +TTL +FORMAT$/);
    expect(lines).toContainEqual(
      expect.stringMatching(/^https:\/\/orders\.example\.com +Orders +orders:read orders:write +300s +jwt$/),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(/^https:\/\/stock\.example\.com +- +stock:read +120s +opaque$/),
    );
    const page = await cli.json<ResourcePage>(['resource', 'list'], { spawn: true });
    expect(page.next_cursor).toBeNull();
    expect(page.items.map((r) => r.identifier)).toEqual(
      expect.arrayContaining([
        'https://orders.example.com',
        'https://stock.example.com',
        `${cli.server.url}/admin`,
      ]),
    );

    const updated = await cli.spawn([
      'resource',
      'update',
      'https://stock.example.com',
      '--scopes',
      'stock:read stock:write',
      '--name',
      'Stock',
    ]);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toMatch(/^Updated resource\.\n/);
    expect(updated.stdout).toMatch(/^scopes: +stock:read stock:write$/m);
    expect(
      await cli.json([
        'resource',
        'update',
        'https://stock.example.com',
        '--ttl',
        '60',
        '--format',
        'jwt',
        '--name',
        '',
      ]),
    ).toMatchObject({
      name: null,
      token_ttl: 60,
      token_format: 'jwt',
      scopes: ['stock:read', 'stock:write'],
    });

    const deleted = await cli.spawn(['resource', 'delete', 'https://stock.example.com']);
    expect(deleted).toEqual({ code: 0, stdout: 'Deleted resource https://stock.example.com.\n', stderr: '' });
    expect(await cli.run(['resource', 'delete', 'https://orders.example.com', '--json'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expectFailure(
      await cli.run(['resource', 'show', 'https://stock.example.com']),
      1,
      '(resource_not_found)',
    );
  });

  it('refuses bad input with the API message and code, writing nothing', async () => {
    await cli.server.createResource({ identifier: 'https://held.example.com', scopes: ['a', 'b'] });
    await cli.server.createClient({
      name: 'holder',
      grants: [{ resource: 'https://held.example.com', scopes: ['a'] }],
    });

    expectFailure(
      await cli.run(['resource', 'create', 'https://held.example.com', '--scopes', 'x']),
      1,
      'a resource with identifier https://held.example.com exists (resource_exists)',
    );
    expectFailure(
      await cli.run(['resource', 'create', 'not a uri', '--scopes', 'x']),
      1,
      /identifier: .* \(invalid_input\)$/m,
    );
    expectFailure(
      await cli.run(['resource', 'create', 'https://long.example.com', '--scopes', 'x', '--ttl', '99999']),
      1,
      /at most 900 seconds.*\(invalid_input\)/,
    );
    expectFailure(
      await cli.run(['resource', 'create', 'https://quote.example.com', '--scopes', 'a"b']),
      1,
      '(invalid_input)',
    );
    expectFailure(
      await cli.run(['resource', 'create', 'https://nan.example.com', '--scopes', 'x', '--ttl', 'ten']),
      2,
      '--ttl expects seconds',
    );
    const identifiers = (await cli.json<ResourcePage>(['resource', 'list'])).items.map((r) => r.identifier);
    expect(identifiers).not.toEqual(expect.arrayContaining(['https://long.example.com']));
    expect(identifiers.filter((i) => /long|quote|nan/.test(i))).toEqual([]);

    expectFailure(
      await cli.run(['resource', 'update', 'https://held.example.com', '--scopes', 'b']),
      1,
      /cannot remove a.*\(scope_in_use\)/,
    );
    expectFailure(
      await cli.run(['resource', 'update', 'https://held.example.com', '--scopes', 'b c', '--ttl', '99999']),
      1,
      '(invalid_input)',
    );
    expect(await cli.json(['resource', 'show', 'https://held.example.com'])).toMatchObject({
      scopes: ['a', 'b'],
      token_ttl: 300,
    });
    expectFailure(
      await cli.run(['resource', 'update', `${cli.server.url}/admin`, '--ttl', '60']),
      1,
      '(resource_reserved)',
    );
    expectFailure(
      await cli.run(['resource', 'delete', `${cli.server.url}/admin`, '--force']),
      1,
      '(resource_reserved)',
    );
    expectFailure(
      await cli.run(['resource', 'update', 'https://none.example.com', '--ttl', '60']),
      1,
      '(resource_not_found)',
    );

    expectFailure(
      await cli.run(['resource', 'delete', 'https://held.example.com']),
      1,
      /hold grants on or introspect https:\/\/held\.example\.com.*\(resource_in_use\)/,
    );
    expect((await cli.run(['resource', 'show', 'https://held.example.com'])).code).toBe(0);
    expect((await cli.run(['resource', 'delete', 'https://held.example.com', '--force'])).code).toBe(0);
    expectFailure(await cli.run(['resource', 'show', 'https://held.example.com']), 1, '(resource_not_found)');
  });

  it('pages with --limit, follows next_cursor with --all, resumes with --cursor', async () => {
    for (const name of ['p1', 'p2', 'p3']) {
      await cli.server.createResource({ identifier: `https://${name}.paging.example`, scopes: ['s'] });
    }
    const total = (await cli.json<ResourcePage>(['resource', 'list', '--all'])).items.length;
    expect(total).toBeGreaterThanOrEqual(4);

    const first = await cli.run(['resource', 'list', '--limit', '2']);
    expect(first.code).toBe(0);
    expect(first.stdout.trimEnd().split('\n')).toHaveLength(3);
    const cursor = /--cursor (\S+) for the next page/.exec(first.stderr)?.[1];
    expect(cursor).toBeDefined();
    const second = await cli.json<ResourcePage>([
      'resource',
      'list',
      '--limit',
      '2',
      '--cursor',
      cursor ?? '',
    ]);
    expect(second.items).toHaveLength(2);

    const all = await cli.json<ResourcePage>(['resource', 'list', '--limit', '2', '--all']);
    expect(all.next_cursor).toBeNull();
    expect(all.items).toHaveLength(total);
    expect(new Set(all.items.map((r) => r.id)).size).toBe(total);
  });
});

describe('mayfly client', () => {
  it('create prints the client and its secret once, with a warning on stderr; the secret is never shown again', async () => {
    const created = await cli.spawn(['client', 'create', '--name', 'billing', '--grant', `${API}=read`]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toBe(WARNING);
    expect(created.stdout).toMatch(
      /^Created client\.\nclient_id: +\S+\nclient_secret: +mfy_\S+\nname: +billing\n/,
    );
    expect(created.stdout).toMatch(/^grants: +https:\/\/api\.example\.com {2}read$/m);
    expect(created.stdout).toMatch(/^bearer: +no \(DPoP required\)$/m);
    const id = idIn(created);
    const secret = secretIn(created);
    expect(await tokenStatus(id, secret)).toBe(200);

    const shown = await cli.spawn(['client', 'show', id]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^client_id: +${id}\\nname: +billing\\n`));
    expect(shown.stdout).toMatch(/^secrets: +\S+ {2}created \S+, no expiry$/m);
    const shownJson = await cli.json<ClientJson>(['client', 'show', id]);
    expect(shownJson).toMatchObject({ client_id: id, name: 'billing', status: 'enabled' });
    expect(shownJson).not.toHaveProperty('client_secret');
    const afterwards = [
      shown,
      await cli.run(['client', 'list', '--json']),
      await cli.run(['audit', 'list', '--json']),
    ];
    for (const result of afterwards) {
      expect(result.stdout + result.stderr).not.toContain(secret);
      expect(result.stdout).not.toMatch(/mfy_/);
    }
  });

  it('create --json prints the API answer: client_id, client_secret once, grants, rights, auth method, bearer', async () => {
    const result = await cli.spawn([
      'client',
      'create',
      '--name',
      'orders-worker',
      '--grant',
      `${API}=read,write`,
      '--grant',
      `${OTHER}=read`,
      '--introspects',
      OTHER,
      '--auth',
      'client_secret_post',
      '--bearer',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe(WARNING);
    const client = JSON.parse(result.stdout) as ClientJson;
    expect(client).toMatchObject({
      name: 'orders-worker',
      auth_method: 'client_secret_post',
      grants: [
        { resource: API, scopes: ['read', 'write'] },
        { resource: OTHER, scopes: ['read'] },
      ],
      introspects: [OTHER],
      bearer_allowed: true,
      status: 'enabled',
    });
    expect(client.client_secret).toMatch(/^mfy_/);
  });

  it('create private_key_jwt from a --jwks file (a JWKS or one JWK); a private key is refused before it is sent', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const publicJwk = await exportJWK(publicKey);
    await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [publicJwk] }));
    await writeFile(join(dir, 'jwk.json'), JSON.stringify(publicJwk));
    const privateJwk = await exportJWK(privateKey);
    await writeFile(join(dir, 'private.json'), JSON.stringify(privateJwk));

    const created = await cli.run([
      'client',
      'create',
      '--name',
      'signer',
      '--auth',
      'private_key_jwt',
      '--jwks',
      join(dir, 'jwks.json'),
      '--grant',
      `${API}=read`,
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toBe('');
    expect(created.stdout).not.toMatch(/client_secret/);
    expect(created.stdout).toMatch(/^jwks: +1 key\(s\)$/m);
    const single = await cli.json<ClientJson>([
      'client',
      'create',
      '--name',
      'signer-2',
      '--auth',
      'private_key_jwt',
      '--jwks',
      join(dir, 'jwk.json'),
    ]);
    expect(single).not.toHaveProperty('client_secret');

    const refused = await cli.run([
      'client',
      'create',
      '--name',
      'leaky',
      '--auth',
      'private_key_jwt',
      '--jwks',
      join(dir, 'private.json'),
    ]);
    expectFailure(refused, 1, 'holds a private key: give the public keys only');
    expect(refused.stderr).not.toContain(privateJwk.d);
    expectFailure(
      await cli.run([
        'client',
        'create',
        '--name',
        'x',
        '--auth',
        'private_key_jwt',
        '--jwks',
        join(dir, 'missing.json'),
      ]),
      1,
      'cannot read it (ENOENT)',
    );
    expectFailure(
      await cli.run(['client', 'create', '--name', 'x', '--auth', 'private_key_jwt']),
      1,
      /private_key_jwt needs exactly one of jwks or jwks_uri.*\(invalid_input\)/,
    );
    expect((await cli.json<ClientPage>(['client', 'list', '--name', 'leaky'])).items).toEqual([]);
  });

  it('list filters by --name, --status, --resource and --auth, and pages with --limit and --all', async () => {
    for (const name of ['filter-a', 'filter-b', 'filter-c']) {
      await cli.server.createClient({ name, grants: [{ resource: OTHER, scopes: ['read'] }] });
    }
    const table = await cli.spawn(['client', 'list', '--name', 'FILTER-']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CLIENT_ID +NAME +STATUS +AUTH +GRANTS$/);
    expect(lines.slice(1).map((line) => line.split(/ {2,}/)[1])).toEqual([
      'filter-a',
      'filter-b',
      'filter-c',
    ]);
    expect(lines[1]).toMatch(/ +filter-a +enabled +client_secret_basic +https:\/\/other\.example\.com=read$/);
    const page = await cli.json<ClientPage>(['client', 'list', '--name', 'filter-']);
    expect(page.items.map((c) => c.name)).toEqual(['filter-a', 'filter-b', 'filter-c']);

    const limited = await cli.run(['client', 'list', '--name', 'filter-', '--limit', '2']);
    expect(limited.stdout.trimEnd().split('\n')).toHaveLength(3);
    expect(limited.stderr).toMatch(/^More results: add --all, or --cursor \S+ for the next page\.\n$/);
    const all = await cli.json<ClientPage>(['client', 'list', '--name', 'filter-', '--limit', '2', '--all']);
    expect(all).toMatchObject({ next_cursor: null });
    expect(all.items.map((c) => c.name)).toEqual(['filter-a', 'filter-b', 'filter-c']);

    const onOther = (await cli.json<ClientPage>(['client', 'list', '--resource', OTHER, '--all'])).items.map(
      (c) => c.name,
    );
    expect(onOther).toEqual(expect.arrayContaining(['filter-a', 'orders-worker']));
    expect(onOther).not.toContain('billing');
    const keyed = (
      await cli.json<ClientPage>(['client', 'list', '--auth', 'private_key_jwt', '--all'])
    ).items.map((c) => c.name);
    expect(keyed).toEqual(expect.arrayContaining(['signer', 'Mayfly admin']));
    expect(keyed).not.toContain('billing');
    expect(
      (await cli.json<ClientPage>(['client', 'list', '--status', 'disabled', '--name', 'filter-'])).items,
    ).toEqual([]);
    expect((await cli.run(['client', 'list', '--name', 'no such client'])).stdout).toBe('No clients.\n');
  });

  it('update replaces grants and introspection rights, switches the bearer exception; --no-grants clears', async () => {
    const { client } = await cli.server.createClient({
      name: 'changing',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const updated = await cli.spawn([
      'client',
      'update',
      client.client_id,
      '--name',
      'changed',
      '--grant',
      `${API}=read,write`,
      '--introspects',
      OTHER,
      '--bearer',
    ]);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toMatch(/^Updated client\.\n/);
    expect(updated.stdout).toMatch(/^name: +changed$/m);
    expect(updated.stdout).toMatch(/^grants: +https:\/\/api\.example\.com {2}read write$/m);
    expect(updated.stdout).toMatch(/^introspects: +https:\/\/other\.example\.com$/m);
    expect(updated.stdout).toMatch(/^bearer: +allowed/m);
    expect(
      await cli.json([
        'client',
        'update',
        client.client_id,
        '--no-bearer',
        '--no-grants',
        '--no-introspects',
      ]),
    ).toMatchObject({
      name: 'changed',
      grants: [],
      introspects: [],
      bearer_allowed: false,
    });
  });

  it('bad input changes nothing: unknown resource, undefined scope, no secret to rotate, the last admin, unknown client', async () => {
    const { client } = await cli.server.createClient({
      name: 'steady',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    expectFailure(
      await cli.run(['client', 'create', '--name', 'ghost', '--grant', 'https://nowhere.example.com=read']),
      1,
      'no resource with identifier https://nowhere.example.com (resource_not_found)',
    );
    expectFailure(
      await cli.run(['client', 'create', '--name', 'ghost', '--grant', `${API}=delete`]),
      1,
      /does not define delete.*\(scope_not_defined\)/,
    );
    expectFailure(
      await cli.run(['client', 'create', '--name', 'ghost', '--introspects', 'https://nowhere.example.com']),
      1,
      '(resource_not_found)',
    );
    expectFailure(
      await cli.run([
        'client',
        'create',
        '--name',
        'ghost',
        '--grant',
        `${API}=read`,
        '--grant',
        `${API}=write`,
      ]),
      1,
      /only one grant.*\(invalid_input\)/,
    );
    expectFailure(
      await cli.run(['client', 'create', '--name', 'ghost', '--grant', 'nope']),
      2,
      "malformed --grant 'nope'",
    );
    expect((await cli.json<ClientPage>(['client', 'list', '--name', 'ghost'])).items).toEqual([]);

    expectFailure(
      await cli.run([
        'client',
        'update',
        client.client_id,
        '--grant',
        `${API}=read`,
        '--grant',
        'https://nowhere.example.com=read',
      ]),
      1,
      '(resource_not_found)',
    );
    expectFailure(await cli.run(['client', 'update', client.client_id, '--name', ' ']), 1, '(invalid_input)');
    expect(await cli.json(['client', 'show', client.client_id])).toMatchObject({
      name: 'steady',
      grants: [{ resource: API, scopes: ['read'] }],
    });

    const { client: signer } = await cli.server.createClient({
      name: 'keyed',
      auth_method: 'private_key_jwt',
      jwks_uri: 'https://keys.example.com/jwks',
    });
    expectFailure(
      await cli.run(['client', 'rotate-secret', signer.client_id]),
      1,
      /private_key_jwt.*\(invalid_input\)/,
    );
    expectFailure(
      await cli.run(['client', 'update', client.client_id, '--jwks-uri', 'https://keys.example.com/jwks']),
      1,
      '(invalid_input)',
    );
    const admin = JSON.parse(await readFile(cli.credentialsPath, 'utf8')) as { client_id: string };
    expectFailure(await cli.run(['client', 'disable', admin.client_id]), 1, '(last_admin_client)');
    expectFailure(await cli.run(['client', 'delete', admin.client_id]), 1, '(last_admin_client)');
    expect((await cli.run(['client', 'list'])).code).toBe(0);
    for (const verb of ['show', 'disable', 'enable', 'delete', 'rotate-secret']) {
      expectFailure(
        await cli.run(['client', verb, 'no-such-client']),
        1,
        'no-such-client (client_not_found)',
      );
    }
  });

  it('rotate-secret --overlap keeps the previous secret working; --now stops every previous one at once', async () => {
    const created = await cli.server.createClient({
      name: 'rotating',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const id = created.client.client_id;
    const first = created.clientSecret ?? '';

    const rotated = await cli.spawn(['client', 'rotate-secret', id, '--overlap', '600']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toBe(WARNING);
    expect(rotated.stdout).toMatch(/^New client secret issued\.\n/);
    const second = secretIn(rotated);
    expect(second).toMatch(/^mfy_/);
    expect(second).not.toBe(first);
    expect(rotated.stdout).toMatch(
      /^secrets: +\S+ {2}created \S+, expires \S+\n +\S+ {2}created \S+, no expiry$/m,
    );
    expect(await tokenStatus(id, first)).toBe(200);
    expect(await tokenStatus(id, second)).toBe(200);

    const now = await cli.spawn(['client', 'rotate-secret', id, '--now', '--json']);
    expect(now.code, now.stderr).toBe(0);
    expect(now.stderr).toBe(WARNING);
    const third = (JSON.parse(now.stdout) as ClientJson).client_secret ?? '';
    expect(third).toMatch(/^mfy_/);
    expect((JSON.parse(now.stdout) as ClientJson).secrets).toHaveLength(1);
    expect(await tokenStatus(id, first)).toBe(401);
    expect(await tokenStatus(id, second)).toBe(401);
    expect(await tokenStatus(id, third)).toBe(200);
  });

  it('disable: its tokens introspect inactive for good and it gets no new one; enable restores the client', async () => {
    const created = await cli.server.createClient({
      name: 'pausing',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const id = created.client.client_id;
    const secret = created.clientSecret ?? '';
    const token = await obtainToken(id, secret);
    expect(await introspect(token)).toMatchObject({ active: true });

    const disabled = await cli.spawn(['client', 'disable', id]);
    expect(disabled.code, disabled.stderr).toBe(0);
    expect(disabled.stdout).toMatch(/^Disabled client\.\n/);
    expect(disabled.stdout).toMatch(/^status: +disabled since \S+Z$/m);
    expect(await introspect(token)).toEqual({ active: false });
    expect(await tokenStatus(id, secret)).toBe(401);
    expect(
      (await cli.json<ClientPage>(['client', 'list', '--status', 'disabled', '--name', 'pausing'])).items,
    ).toHaveLength(1);

    expect(await cli.json(['client', 'enable', id])).toMatchObject({
      status: 'enabled',
      disabled_at: null,
    });
    expect(await tokenStatus(id, secret)).toBe(200);
    // Enabling does not revive the token issued before the disable.
    expect(await introspect(token)).toEqual({ active: false });
    expect(await cli.json(['client', 'disable', id])).toMatchObject({ status: 'disabled' });
    const enabled = await cli.spawn(['client', 'enable', id]);
    expect(enabled.stdout).toMatch(/^Enabled client\.\n(?:.*\n)*status: +enabled$/m);
  });

  it('delete: the client is gone and its tokens are inactive', async () => {
    const created = await cli.server.createClient({
      name: 'leaving',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const id = created.client.client_id;
    const token = await obtainToken(id, created.clientSecret ?? '');
    expect(await cli.spawn(['client', 'delete', id])).toEqual({
      code: 0,
      stdout: `Deleted client ${id}.\n`,
      stderr: '',
    });
    expect(await introspect(token)).toEqual({ active: false });
    expectFailure(await cli.run(['client', 'show', id]), 1, '(client_not_found)');

    const other = await cli.server.createClient({ name: 'leaving-too' });
    expect(await cli.run(['client', 'delete', other.client.client_id, '--json'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
  });
});

describe('mayfly audit list', () => {
  interface AuditPage {
    items: {
      actor: string;
      action: string;
      target_type: string;
      target_id: string;
      after: Record<string, unknown> | null;
    }[];
    next_cursor: string | null;
  }

  it('shows admin changes newest first, filtered by client, resource, action and time', async () => {
    const created = await cli.json<ClientJson>([
      'client',
      'create',
      '--name',
      'audited',
      '--grant',
      `${API}=read`,
    ]);
    await cli.run(['client', 'disable', created.client_id]);
    await cli.run(['client', 'rotate-secret', created.client_id, '--now']);

    const table = await cli.spawn(['audit', 'list', '--client', created.client_id]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME +ACTION +TARGET +ACTOR$/);
    expect(lines.slice(1).map((line) => line.split(/ {2,}/)[1])).toEqual([
      'client.rotate_secret',
      'client.disable',
      'client.create',
    ]);
    expect(lines[1]).toContain(`client ${created.client_id}`);

    const json = await cli.json<AuditPage>([
      'audit',
      'list',
      '--client',
      created.client_id,
      '--action',
      'client.create',
    ]);
    expect(json.items).toHaveLength(1);
    expect(json.items[0]).toMatchObject({
      action: 'client.create',
      target_type: 'client',
      target_id: created.client_id,
    });
    expect(JSON.stringify(json)).not.toContain(created.client_secret);

    const admin = JSON.parse(await readFile(cli.credentialsPath, 'utf8')) as { client_id: string };
    expect(json.items[0]?.actor).toBe(admin.client_id);
    expect(
      (await cli.json<AuditPage>(['audit', 'list', '--actor', admin.client_id, '--limit', '1'])).items,
    ).toHaveLength(1);

    await cli.run(['resource', 'create', 'https://audited.example.com', '--scopes', 'a']);
    const onResource = await cli.json<AuditPage>([
      'audit',
      'list',
      '--resource',
      'https://audited.example.com',
    ]);
    expect(onResource.items.map((e) => e.action)).toEqual(['resource.create']);
    expect((await cli.json<AuditPage>(['audit', 'list', '--since', '2999-01-01'])).items).toEqual([]);
    expect(
      (
        await cli.json<AuditPage>([
          'audit',
          'list',
          '--client',
          created.client_id,
          '--until',
          '2000-01-01T00:00:00Z',
        ])
      ).items,
    ).toEqual([]);
    expectFailure(
      await cli.run(['audit', 'list', '--resource', 'https://unknown.example.com']),
      1,
      '(resource_not_found)',
    );
  });
});

describe('where the CLI connects, and with what', () => {
  it('--url and --credentials win over the environment, before or after the command', async () => {
    const port = await findFreePort();
    const env = { MAYFLY_URL: `http://127.0.0.1:${port}`, MAYFLY_CREDENTIALS: join(dir, 'nowhere.json') };
    const result = await cli.spawn(
      ['--url', cli.server.url, '--credentials', cli.credentialsPath, 'resource', 'list'],
      { env },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^IDENTIFIER/);
    const after = await cli.spawn(
      ['resource', 'list', `--url=${cli.server.url}/`, `--credentials=${cli.credentialsPath}`, '--json'],
      { env },
    );
    expect(after.code, after.stderr).toBe(0);
  });

  it('reads ./keys/admin.json by default, relative to where it runs', async () => {
    const project = join(dir, 'project');
    await mkdir(join(project, 'keys'), { recursive: true });
    await copyFile(cli.credentialsPath, join(project, 'keys', 'admin.json'));
    const result = await runMayfly(['resource', 'list', '--json'], {
      cwd: project,
      env: { MAYFLY_URL: cli.server.url },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ next_cursor: null });
  });

  it('sends credentials only to the issuer or a loopback address of it, signing admin requests for the issuer', async () => {
    const foreign = await cli.run(['resource', 'list', '--url', 'https://auth.attacker.example']);
    expectFailure(
      foreign,
      1,
      /--url https:\/\/auth\.attacker\.example is not the server these credentials belong to/,
    );
    // localhost is another name of the issuer 127.0.0.1 here: allowed, and the admin API still sees proofs for
    // the issuer's URL.
    const alias = cli.server.url.replace('127.0.0.1', 'localhost');
    const listed = await cli.spawn(['resource', 'list', '--json', '--url', alias]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject({ items: expect.any(Array) });
  });

  it('an unreachable server: exit 1 naming the URL, with npm start and --url as the ways out', async () => {
    const port = await findFreePort();
    const result = await runMayfly(['client', 'list'], {
      env: { MAYFLY_URL: `http://127.0.0.1:${port}`, MAYFLY_CREDENTIALS: cli.credentialsPath },
    });
    expectFailure(
      result,
      1,
      `mayfly: cannot reach Mayfly at http://127.0.0.1:${port} (connection refused). Start it with 'npm start', or point --url (or MAYFLY_URL) at a running server.`,
    );
    // Without MAYFLY_URL the URL is http://localhost:$PORT.
    const byPort = await runMayfly(['resource', 'show', 'https://a.example'], {
      env: { PORT: String(port), MAYFLY_CREDENTIALS: cli.credentialsPath },
    });
    expectFailure(byPort, 1, `cannot reach Mayfly at http://localhost:${port}`);
  });

  it('an HTTP server that is not Mayfly: exit 1 saying so', async () => {
    const other = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<h1>Not Found</h1>');
    }).listen(0, '127.0.0.1');
    await once(other, 'listening');
    try {
      const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
      expectFailure(
        await cli.run(['resource', 'list', '--url', url]),
        1,
        `the token request to ${url}/token failed`,
      );
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('a missing credentials file: exit 1 naming the path and how the file comes to be', async () => {
    const missing = join(dir, 'missing', 'admin.json');
    const result = await runMayfly(['resource', 'list'], {
      env: { MAYFLY_URL: cli.server.url, MAYFLY_CREDENTIALS: missing },
    });
    expectFailure(
      result,
      1,
      `mayfly: no admin credentials at ${missing}. Mayfly writes admin.json into its keys folder (MAYFLY_KEYS_DIR, default ./keys) when it first starts`,
    );
    expect(result.stderr).toContain('--credentials <file>');
    const byDefault = await runMayfly(['resource', 'list'], {
      cwd: dir,
      env: { MAYFLY_URL: cli.server.url },
    });
    expectFailure(byDefault, 1, 'no admin credentials at ./keys/admin.json');
  });

  it('corrupt credentials: exit 1 naming the problem, never quoting the file', async () => {
    const truncated = await writeCredentials('truncated.json', JSON.stringify(credentials).slice(0, -20));
    const notJson = await cli.run(['resource', 'list', '--credentials', truncated]);
    expectFailure(notJson, 1, `${truncated} is not valid JSON`);
    expect(notJson.stderr).not.toContain(credentials.private_jwk.d?.slice(0, 8));

    const incomplete = await writeCredentials('incomplete.json', {
      issuer: 'not a url',
      private_jwk: { kty: 'EC' },
    });
    expectFailure(
      await cli.run(['resource', 'list', '--credentials', incomplete]),
      1,
      /is not an admin credentials file: missing or invalid issuer, client_id, private_jwk\.d/,
    );

    const unusable = await writeCredentials('unusable.json', {
      ...credentials,
      private_jwk: { ...credentials.private_jwk, d: 'AAAA' },
    });
    expectFailure(
      await cli.run(['resource', 'list', '--credentials', unusable]),
      1,
      'private_jwk is not a usable ES256 private key',
    );
  });

  it('credentials this server does not know: exit 1 saying that --url and --credentials must name one server', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const stranger = await writeCredentials('stranger.json', {
      ...credentials,
      private_jwk: { ...(await exportJWK(privateKey)), kid: 'other' },
    });
    const result = await cli.run(['resource', 'list', '--credentials', stranger]);
    expectFailure(
      result,
      1,
      `${cli.server.url} refused the admin credentials in ${stranger} (invalid_client`,
    );
    expect(result.stderr).toContain('check that --url and --credentials name the same server and database');
  });

  it('asks for only the scope a command needs: read-only credentials list, and cannot change', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const reader = await cli.server.createClient({
      name: 'auditor',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kty: 'EC', kid: 'auditor' }] },
      grants: [{ resource: `${cli.server.url}/admin`, scopes: ['admin:read'] }],
    });
    const path = await writeCredentials('auditor.json', {
      issuer: cli.server.url,
      client_id: reader.client.client_id,
      private_jwk: { ...(await exportJWK(privateKey)), kid: 'auditor', alg: 'ES256' },
    });
    expect((await cli.run(['resource', 'list', '--credentials', path])).code).toBe(0);
    expect((await cli.run(['audit', 'list', '--credentials', path])).code).toBe(0);
    const refused = await cli.run([
      'resource',
      'create',
      'https://denied.example.com',
      '--scopes',
      'a',
      '--credentials',
      path,
    ]);
    expectFailure(
      refused,
      1,
      `does not grant these credentials admin:write on ${cli.server.url}/admin (invalid_scope`,
    );
    expectFailure(
      await cli.run(['resource', 'show', 'https://denied.example.com']),
      1,
      '(resource_not_found)',
    );
  });
});
