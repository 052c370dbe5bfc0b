import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { loadConfig } from '../../src/config/config.ts';
import { createAppContext } from '../../src/context.ts';
import { connectDatabase } from '../../src/db/connect.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer } from '../support/server.ts';

const API = 'https://api.example.com';
let dir: string;
let database: TestDatabase;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mayfly-persistence-'));
  // PGlite in a real data folder (not memory), or a fresh Postgres database.
  database = await createTestDatabase({ pgliteDir: join(dir, 'data') });
});
afterAll(async () => {
  await database.drop();
  await rm(dir, { recursive: true, force: true });
});

it('keeps clients, the signing key and issued tokens across a restart', async () => {
  const first = await startTestServer({ database });
  await first.createResource({ identifier: API, scopes: ['read'], token_format: 'jwt' });
  await first.createResource({ identifier: `${API}/opaque`, scopes: ['read'], token_format: 'opaque' });
  const client = await first.createClient({
    name: 'survivor',
    grants: [
      { resource: API, scopes: ['read'] },
      { resource: `${API}/opaque`, scopes: ['read'] },
    ],
    introspects: [API, `${API}/opaque`],
  });
  const secret = client.clientSecret ?? '';
  const key = await generateDpopKey();
  const jwt = (await requestToken(first.url, { clientId: client.client.id, secret, resource: API, key })).body
    .access_token;
  const opaque = (
    await requestToken(first.url, { clientId: client.client.id, secret, resource: `${API}/opaque`, key })
  ).body.access_token;
  const jwksBefore = (await request(first.url).get('/jwks')).body;
  await first.close();
  await database.handle.close();

  // A new process would open the same database afresh.
  const reopened = { ...database, handle: await connectDatabase(database.config) };
  database = reopened;
  const second = await startTestServer({ database: reopened, port: Number(new URL(first.url).port) });
  try {
    expect((await request(second.url).get('/jwks')).body).toEqual(jwksBefore);
    for (const token of [jwt, opaque]) {
      const res = await request(second.url)
        .post('/token/introspection')
        .set('Authorization', basicAuth(client.client.id, secret))
        .type('form')
        .send({ token });
      expect(res.body).toMatchObject({ active: true, client_id: client.client.id });
    }
    const again = await requestToken(second.url, { clientId: client.client.id, secret, resource: API, key });
    expect(again.status).toBe(200);
  } finally {
    await second.close();
  }
});

it('stores opaque token ids and secrets only as hashes', async () => {
  const server = await startTestServer();
  try {
    await server.createResource({ identifier: API, scopes: ['read'], token_format: 'opaque' });
    const { client, clientSecret } = await server.createClient({
      name: 'c',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const token = (
      await requestToken(server.url, {
        clientId: client.id,
        secret: clientSecret ?? '',
        resource: API,
        key: await generateDpopKey(),
      })
    ).body.access_token as string;
    const dump = JSON.stringify([
      await server.app.db.selectFrom('oidc_payload').selectAll().execute(),
      await server.app.db.selectFrom('client_secret').selectAll().execute(),
      await server.app.db.selectFrom('client').selectAll().execute(),
    ]);
    expect(token).toMatch(/^[\w-]{43}$/);
    expect(dump).not.toContain(token);
    expect(dump).not.toContain(clientSecret);
  } finally {
    await server.close();
  }
});

it('creates exactly one first signing key when instances start together on a fresh database', async () => {
  const fresh = await createTestDatabase();
  // The admin bootstrap writes its credentials here: never into the repository's own keys folder.
  const keysDir = await mkdtemp(join(tmpdir(), 'mayfly-keys-'));
  try {
    const config = loadConfig({
      MAYFLY_KEYS_DIR: keysDir,
      MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
      MAYFLY_KEK: fresh.kek,
      ...(fresh.config.kind === 'postgres' ? { DATABASE_URL: fresh.config.url } : {}),
      LOG_LEVEL: 'silent',
    });
    const handles =
      fresh.config.kind === 'postgres'
        ? await Promise.all([0, 1, 2].map(() => connectDatabase(fresh.config)))
        : [fresh.handle, fresh.handle, fresh.handle];
    const contexts = await Promise.all(
      handles.map((handle) => createAppContext(config, { database: handle, jobs: false })),
    );
    const kids = new Set(contexts.map((c) => c.keys.current.publicJwks.keys.map((k) => k.kid).join()));
    expect(kids.size).toBe(1);
    const rows = await fresh.handle.db.selectFrom('signing_key').select('kid').execute();
    expect(rows).toHaveLength(1);
    await Promise.all(contexts.map((c) => c.close()));
    if (fresh.config.kind === 'postgres') await Promise.all(handles.map((h) => h.close()));
  } finally {
    await fresh.drop();
    await rm(keysDir, { recursive: true, force: true });
  }
});
