import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { exportJWK, generateKeyPair } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { AdminCredentials } from '../../src/admin/bootstrap.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createAppContext } from '../../src/context.ts';
import { adminCall, obtainAdminToken } from '../support/admin.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** Issue 3, item 3: a first admin client without a default password, its key never logged or overwritten. */
let keysDir: string;
let database: TestDatabase;
const servers: TestServer[] = [];

beforeEach(async () => {
  keysDir = await mkdtemp(join(tmpdir(), 'mayfly-bootstrap-'));
  database = await createTestDatabase();
});

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
  await database.drop();
  await rm(keysDir, { recursive: true, force: true });
});

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  const server = await startTestServer({ database, env: { MAYFLY_KEYS_DIR: keysDir, ...env } });
  servers.push(server);
  return server;
}

async function listAdminClients(server: TestServer) {
  const admin = await obtainAdminToken(server, { scope: 'admin:read' });
  const response = await adminCall(server, admin, 'GET', '/clients', {
    query: `resource=${encodeURIComponent(`${server.url}/admin`)}`,
  });
  expect(response.status).toBe(200);
  return (response.body as { items: { client_id: string; name: string; auth_method: string }[] }).items;
}

describe('admin bootstrap', () => {
  it('creates one admin client on first start and writes its credentials once, mode 0600, never logging the key', async () => {
    const server = await start();
    const path = join(keysDir, 'admin.json');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const credentials = JSON.parse(await readFile(path, 'utf8')) as AdminCredentials;
    expect(credentials).toMatchObject({
      issuer: server.url,
      client_id: expect.any(String),
      private_jwk: { kty: 'EC', crv: 'P-256', alg: 'ES256', d: expect.any(String), kid: expect.any(String) },
    });

    const created = server.logs.records().find((r) => r.component === 'bootstrap');
    expect(created).toMatchObject({ client_id: credentials.client_id, credentials_file: path });
    expect(created?.msg).toContain(path);
    expect(server.logs.text()).not.toContain(credentials.private_jwk.d);

    const admins = await listAdminClients(server);
    expect(admins).toEqual([
      expect.objectContaining({ client_id: credentials.client_id, auth_method: 'private_key_jwt' }),
    ]);
    const trail = await adminCall(server, await obtainAdminToken(server), 'GET', '/audit-events', {
      query: 'actor=system%3Abootstrap',
    });
    expect((trail.body as { items: { action: string }[] }).items.map((e) => e.action)).toEqual([
      'client.create',
      'resource.create',
    ]);
    expect(JSON.stringify(trail.body)).not.toContain(credentials.private_jwk.d);
  });

  it('creates nothing more on a restart, and leaves the credentials file as it was', async () => {
    const first = await start();
    const before = await readFile(join(keysDir, 'admin.json'), 'utf8');
    const port = Number(new URL(first.url).port);
    await first.close();
    servers.splice(0);
    const second = await startTestServer({ database, port, env: { MAYFLY_KEYS_DIR: keysDir } });
    servers.push(second);
    expect(await readFile(join(keysDir, 'admin.json'), 'utf8')).toBe(before);
    expect(await listAdminClients(second)).toHaveLength(1);
  });

  it('never overwrites an existing credentials file: it warns and creates no admin client', async () => {
    const path = join(keysDir, 'admin.json');
    await writeFile(path, '{"kept": true}\n', { mode: 0o600 });
    const server = await start();
    expect(await readFile(path, 'utf8')).toBe('{"kept": true}\n');
    const warning = server.logs.records().find((r) => r.component === 'bootstrap');
    expect(warning).toMatchObject({ level: 'warn', credentials_file: path });
    expect(warning?.msg).toMatch(/never overwritten/);
    const clients = await server.app.db
      .selectFrom('client_grant as g')
      .innerJoin('resource as r', 'r.id', 'g.resource_id')
      .select('g.client_id')
      .where('r.identifier', '=', `${server.url}/admin`)
      .execute();
    expect(clients).toEqual([]);
  });

  it('creates the admin client from an operator-provided public JWKS and writes no private key', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwksFile = join(keysDir, 'operator-jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] }));
    const server = await start({ MAYFLY_ADMIN_JWKS_FILE: jwksFile, MAYFLY_ADMIN_CLIENT_ID: 'ops-admin' });
    await expect(stat(join(keysDir, 'admin.json'))).rejects.toThrow(/ENOENT/);

    const credentials: AdminCredentials = {
      issuer: server.url,
      client_id: 'ops-admin',
      private_jwk: { ...(await exportJWK(privateKey)), alg: 'ES256' },
    };
    const admin = await obtainAdminToken(server, { credentials });
    const clients = await adminCall(server, admin, 'GET', '/clients/ops-admin');
    expect(clients.status).toBe(200);
    expect(clients.body).toMatchObject({
      grants: [{ resource: `${server.url}/admin`, scopes: ['admin:read', 'admin:write'] }],
    });
  });

  it.each([
    ['a missing file', () => Promise.resolve(join(keysDir, 'absent.json')), /cannot read/],
    [
      'a private key',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        const file = join(keysDir, 'private.json');
        await writeFile(file, JSON.stringify({ keys: [await exportJWK(privateKey)] }));
        return file;
      },
      /public keys only/,
    ],
    [
      'a file that is not JSON',
      async () => {
        const file = join(keysDir, 'garbage.json');
        await writeFile(file, 'not json');
        return file;
      },
      /not JSON/,
    ],
  ])('refuses to start with MAYFLY_ADMIN_JWKS_FILE naming %s', async (_name, makeFile, reason) => {
    const file = await makeFile();
    await expect(start({ MAYFLY_ADMIN_JWKS_FILE: file })).rejects.toThrow(reason);
    await expect(start({ MAYFLY_ADMIN_JWKS_FILE: file })).rejects.toThrow(/MAYFLY_ADMIN_JWKS_FILE/);
  });

  it('creates exactly one admin client when instances of one deployment start together on a fresh database', async () => {
    const config = loadConfig({
      MAYFLY_ISSUER: 'https://auth.example.com',
      MAYFLY_KEYS_DIR: keysDir,
      MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
      MAYFLY_KEK: database.kek,
      LOG_LEVEL: 'silent',
      ...(database.config.kind === 'postgres' ? { DATABASE_URL: database.config.url } : {}),
    });
    const contexts = await Promise.all(
      [1, 2, 3].map(() => createAppContext(config, { database: database.handle, jobs: false })),
    );
    try {
      const credentials = JSON.parse(await readFile(join(keysDir, 'admin.json'), 'utf8')) as AdminCredentials;
      const holders = await database.handle.db
        .selectFrom('client_grant as g')
        .innerJoin('resource as r', 'r.id', 'g.resource_id')
        .select('g.client_id')
        .where('r.identifier', '=', 'https://auth.example.com/admin')
        .execute();
      expect(holders).toEqual([{ client_id: credentials.client_id }]);
    } finally {
      for (const context of contexts) await context.close();
    }
  });
});
