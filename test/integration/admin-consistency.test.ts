import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken, type AdminToken } from '../support/admin.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** Issue 3: admin changes stay consistent under concurrency, and odd input is refused before the database. */
let server: TestServer;
let admin: AdminToken;
const API = 'https://consistency.example.com';

beforeAll(async () => {
  server = await startTestServer();
  admin = await obtainAdminToken(server);
  await server.createResource({ identifier: API, scopes: ['read'] });
});

afterAll(async () => {
  await server.close();
});

describe('concurrent changes to one client', () => {
  it('leaves exactly one working secret after concurrent rotations that end the previous ones at once', async () => {
    const { client } = await server.createClient({ name: 'rotated concurrently' });
    const rotations = await Promise.all(
      [1, 2, 3, 4].map(() =>
        adminCall(server, admin, 'POST', `/clients/${client.id}/secrets`, {
          body: { previous_secret_expires_in: 0 },
        }),
      ),
    );
    expect(rotations.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    const shown = await adminCall(server, admin, 'GET', `/clients/${client.id}`);
    expect((shown.body as { secrets: unknown[] }).secrets).toHaveLength(1);
  });

  it('deletes a client once when deletes race: one 204, the others 404, one audit event', async () => {
    const { client } = await server.createClient({ name: 'deleted concurrently' });
    const deletes = await Promise.all(
      [1, 2, 3].map(() => adminCall(server, admin, 'DELETE', `/clients/${client.id}`)),
    );
    expect(deletes.map((r) => r.status).sort()).toEqual([204, 404, 404]);
    const trail = await adminCall(server, admin, 'GET', '/audit-events', {
      query: `target=${encodeURIComponent(client.id)}&action=client.delete`,
    });
    expect((trail.body as { items: unknown[] }).items).toHaveLength(1);
  });
});

describe('admin rights taken away', () => {
  it('ends a demoted admin client’s write access at once, not when its token expires', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const operator = await server.createClient({
      name: 'demoted operator',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kty: 'EC', alg: 'ES256' }] },
      grants: [{ resource: `${server.url}/admin`, scopes: ['admin:read', 'admin:write'] }],
    });
    const token = await obtainAdminToken(server, {
      credentials: {
        issuer: server.url,
        client_id: operator.client.id,
        private_jwk: { ...(await exportJWK(privateKey)), alg: 'ES256' },
      },
    });
    const before = await adminCall(server, token, 'POST', '/resources', {
      body: { identifier: 'https://demoted-before.example.com', scopes: ['a'] },
    });
    expect(before.status).toBe(201);

    const demoted = await adminCall(server, admin, 'PATCH', `/clients/${operator.client.id}`, {
      body: { grants: [{ resource: `${server.url}/admin`, scopes: ['admin:read'] }] },
    });
    expect(demoted.status).toBe(200);
    const after = await adminCall(server, token, 'POST', '/resources', {
      body: { identifier: 'https://demoted-after.example.com', scopes: ['a'] },
    });
    expect(after.status).toBe(403);
    expect(after.body).toMatchObject({ code: 'insufficient_scope' });
    expect((await adminCall(server, token, 'GET', '/resources')).status).toBe(200);
  });
});

describe('text Postgres cannot store', () => {
  it('refuses a NUL character hidden in a cursor with 400, and accepts the literal text \\u0000', async () => {
    for (const [path, value] of [
      ['/resources', 'a\u0000'],
      ['/clients', ['a\u0000', 'b']],
    ] as const) {
      const cursor = Buffer.from(JSON.stringify(value)).toString('base64url');
      const response = await adminCall(server, admin, 'GET', path, { query: `cursor=${cursor}` });
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({
        code: 'invalid_input',
        message: expect.stringMatching(/cursor/),
      });
    }
    const created = await adminCall(server, admin, 'POST', '/clients', {
      body: { name: 'literal \\u0000 text' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'literal \\u0000 text' });
  });
});
