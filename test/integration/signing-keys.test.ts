import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  jwtVerify,
} from 'jose';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { listAuditEvents } from '../../src/audit/audit-event.repository.ts';
import type { Clock } from '../../src/clock.ts';
import { createMigrator } from '../../src/db/migrator.ts';
import { sealedWith, toKek } from '../../src/keys/envelope.ts';
import { rewrapKeys } from '../../src/keys/key.service.ts';
import { toPublicJwk } from '../../src/keys/jwk.ts';
import { adminCall, obtainAdminToken, readAdminCredentials } from '../support/admin.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const randomKek = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');

interface Parties {
  caller: { id: string; secret: string };
  resourceServer: { id: string; secret: string };
  key: DpopKey;
}

async function setUp(server: TestServer): Promise<Parties> {
  await server.createResource({ identifier: API, scopes: ['read'] });
  const caller = await server.createClient({ name: 'caller', grants: [{ resource: API, scopes: ['read'] }] });
  const rs = await server.createClient({ name: 'api', introspects: [API] });
  return {
    caller: { id: caller.client.id, secret: caller.clientSecret ?? '' },
    resourceServer: { id: rs.client.id, secret: rs.clientSecret ?? '' },
    key: await generateDpopKey(),
  };
}

async function issue(server: TestServer, parties: Parties): Promise<string> {
  const res = await requestToken(server.url, {
    clientId: parties.caller.id,
    secret: parties.caller.secret,
    resource: API,
    key: parties.key,
  });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

async function introspect(server: TestServer, parties: Parties, token: string): Promise<boolean> {
  const res = await request(server.url)
    .post('/token/introspection')
    .set('Authorization', basicAuth(parties.resourceServer.id, parties.resourceServer.secret))
    .type('form')
    .send({ token });
  expect(res.status).toBe(200);
  return (res.body as { active: boolean }).active;
}

async function jwks(server: TestServer) {
  const res = await request(server.url).get('/jwks');
  expect(res.status).toBe(200);
  return {
    kids: (JSON.parse(res.text) as { keys: { kid: string }[] }).keys.map((key) => key.kid),
    etag: res.headers.etag as string,
    document: JSON.parse(res.text) as Parameters<typeof createLocalJWKSet>[0],
  };
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;

describe('private keys at rest', () => {
  let database: TestDatabase;
  afterEach(async () => {
    await database.drop();
  });

  it('stores no private key material in clear: only a sealed blob, under the KEK the server was given', async () => {
    database = await createTestDatabase();
    const server = await startTestServer({ database });
    try {
      const { d } = server.app.keys.current.signer.privateJwk;
      expect(typeof d).toBe('string');
      const rows = await server.app.db.selectFrom('signing_key').selectAll().execute();
      expect(rows).toHaveLength(1);
      // The whole table as text, as a dump would carry it.
      const dump = await sql<{ row: string }>`select row_to_json(s)::text as row from signing_key s`.execute(
        server.app.db,
      );
      for (const { row } of dump.rows) {
        expect(row).not.toContain(String(d));
        expect(row).not.toMatch(/"d"\s*:/);
      }
      for (const row of rows) {
        expect(row.private_jwk).toBeNull();
        expect(row.sealed_private_jwk).toMatch(/^v1\.[\w-]{16}\.[\w-]+\.[\w-]+\.[\w-]+$/);
        expect(sealedWith(row.sealed_private_jwk ?? '')).toBe(
          toKek(Buffer.from(database.kek, 'base64url')).id,
        );
        expect(Object.keys(row.public_jwk).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      }
      expect(server.logs.text()).not.toContain(String(d));
      expect(server.logs.text()).not.toContain(database.kek);
    } finally {
      await server.close();
    }
  });

  it('seals a key stored in clear by an earlier version at start-up, and keeps signing with it', async () => {
    database = await createTestDatabase();
    // The schema as the previous release left it, with its key stored in clear.
    const migrated = await createMigrator(database.handle.db).migrateTo('20261127211500-admin-plane');
    expect(migrated.error).toBeUndefined();
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(jwk);
    const privateJwk = { ...jwk, kid, alg: 'ES256', use: 'sig' } as { kid: string; kty: string };
    await sql`insert into signing_key (kid, alg, public_jwk, private_jwk) values (${kid}, 'ES256',
      ${JSON.stringify(toPublicJwk(privateJwk))}::jsonb, ${JSON.stringify(privateJwk)}::jsonb)`.execute(
      database.handle.db,
    );

    const server = await startTestServer({ database });
    try {
      const row = await server.app.db
        .selectFrom('signing_key')
        .selectAll()
        .where('kid', '=', kid)
        .executeTakeFirstOrThrow();
      expect(row.private_jwk).toBeNull();
      expect(row.sealed_private_jwk).not.toContain(String(jwk.d));
      expect(row.recorded_phase).toBe('active');
      const parties = await setUp(server);
      expect(kidOf(await issue(server, parties))).toBe(kid);
      expect((await jwks(server)).kids).toEqual([kid]);
      const trail = await listAuditEvents(server.app.db, { action: 'signing_key.seal' }, { limit: 10 });
      expect(trail.map((event) => event.target_id)).toEqual([kid]);
    } finally {
      await server.close();
    }
  });

  it('re-wraps under a new KEK: the former one is accepted meanwhile, and refused once gone', async () => {
    database = await createTestDatabase();
    const oldKek = database.kek;
    const newKek = randomKek();
    const first = await startTestServer({ database });
    const kid = first.app.keys.current.signer.kid;
    const { port } = new URL(first.url);
    await first.close();

    // A KEK that opens nothing stops the start, naming the key and the way out; nothing is changed.
    await expect(startTestServer({ database, env: { MAYFLY_KEK: newKek } })).rejects.toThrow(
      new RegExp(
        `signing key ${kid} is wrapped with KEK [\\w-]{16}, which is neither MAYFLY_KEK .*MAYFLY_KEK_PREVIOUS`,
      ),
    );

    const during = await startTestServer({
      database,
      port: Number(port),
      env: { MAYFLY_KEK: newKek, MAYFLY_KEK_PREVIOUS: oldKek },
    });
    expect(during.app.keys.current.signer.kid).toBe(kid);
    const keks = [toKek(Buffer.from(newKek, 'base64url')), toKek(Buffer.from(oldKek, 'base64url'))];
    const deps = { ...during.app.admin, settings: during.app.config.keys, keks };
    expect(await rewrapKeys(deps, { id: 'system:test' })).toEqual({ sealed: 0, rewrapped: 1, unchanged: 0 });
    expect(await rewrapKeys(deps, { id: 'system:test' })).toEqual({ sealed: 0, rewrapped: 0, unchanged: 1 });
    const rows = await during.app.db.selectFrom('signing_key').select('sealed_private_jwk').execute();
    expect(rows.map((row) => sealedWith(row.sealed_private_jwk ?? ''))).toEqual([keks[0]?.id]);
    await during.close();

    const after = await startTestServer({ database, env: { MAYFLY_KEK: newKek } });
    expect(after.app.keys.current.signer.kid).toBe(kid);
    await after.close();
    await expect(startTestServer({ database, env: { MAYFLY_KEK: oldKek } })).rejects.toThrow(
      /MAYFLY_KEK_PREVIOUS/,
    );
  });
});

describe('an instance that cannot open the key it should sign with', () => {
  let database: TestDatabase;
  afterEach(async () => {
    await database.drop();
  });

  it('never signs or verifies with a revoked key: it refuses tokens and says not ready until it can', async () => {
    database = await createTestDatabase();
    const oldKek = database.kek;
    const newKek = randomKek();
    // A rolling KEK change, half done: one instance already on the new KEK, one still on the old one only.
    const behind = await startTestServer({ database });
    const ahead = await startTestServer({
      database,
      env: { MAYFLY_KEK: newKek, MAYFLY_KEK_PREVIOUS: oldKek },
    });
    try {
      const parties = await setUp(ahead);
      const compromised = behind.app.keys.current.signer.kid;
      const token = await issue(behind, parties);
      expect(kidOf(token)).toBe(compromised);

      const admin = await obtainAdminToken(ahead);
      const revoked = await adminCall(ahead, admin, 'POST', `/keys/${compromised}/revoke`);
      expect(revoked.status).toBe(200);
      // The successor is sealed under the new KEK: the instance behind cannot open it.
      await behind.app.keys.refresh();
      expect(behind.app.keys.current.signingProblem).toMatch(/MAYFLY_KEK_PREVIOUS.*no longer valid/);

      const refused = await requestToken(behind.url, {
        clientId: parties.caller.id,
        secret: parties.caller.secret,
        resource: API,
        key: parties.key,
      });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ error: 'temporarily_unavailable' });
      const ready = await request(behind.url).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.signing_key).toEqual({ status: 'failing', reason: 'no usable signing key' });
      expect((await jwks(behind)).kids).not.toContain(compromised);
      expect(await introspect(behind, parties, token)).toBe(false);
      expect(await introspect(ahead, parties, token)).toBe(false);
      // The instance ahead signs with the successor.
      expect(kidOf(await issue(ahead, parties))).toBe(revoked.body.signing_kid);
    } finally {
      await ahead.close();
      await behind.close();
    }
  });
});

describe('the lifecycle on a clock', () => {
  /** Only the key schedule is moved forward; tokens are verified with the real time. */
  const clock: Clock & { offsetMs: number } = {
    offsetMs: 0,
    now: () => new Date(Date.now() + clock.offsetMs),
  };
  const ROTATION = 7_200;
  const PROPAGATION = 600;
  const RETENTION = 1_200;
  let server: TestServer;
  let parties: Parties;

  beforeAll(async () => {
    server = await startTestServer({
      clock,
      env: {
        MAYFLY_KEY_ROTATION_INTERVAL: String(ROTATION),
        MAYFLY_KEY_PROPAGATION: String(PROPAGATION),
        MAYFLY_KEY_RETENTION: String(RETENTION),
        MAYFLY_JWKS_MAX_AGE: '300',
      },
    });
    parties = await setUp(server);
  });
  afterAll(() => server.close());

  const at = async (seconds: number) => {
    clock.offsetMs = seconds * 1000;
    await server.app.keys.refresh();
  };

  async function verifies(token: string): Promise<boolean> {
    try {
      await jwtVerify(token, createLocalJWKSet((await jwks(server)).document), { issuer: server.url });
      return true;
    } catch {
      return false;
    }
  }

  it('publishes a successor one propagation time before it signs, and keeps the old key until its tokens expired', async () => {
    const first = server.app.keys.current.signer.kid;
    const initial = await jwks(server);
    expect(initial.kids).toEqual([first]);
    const res = await request(server.url).get('/jwks');
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect((await request(server.url).get('/jwks').set('If-None-Match', initial.etag)).status).toBe(304);

    // Not yet due: nothing changes.
    await at(ROTATION - PROPAGATION - 5);
    expect((await jwks(server)).etag).toBe(initial.etag);

    // Due: a successor is published, the first key still signs.
    await at(ROTATION - PROPAGATION + 5);
    const published = await jwks(server);
    expect(published.kids).toHaveLength(2);
    expect(published.etag).not.toBe(initial.etag);
    expect((await request(server.url).get('/jwks').set('If-None-Match', initial.etag)).status).toBe(200);
    const second = published.kids.find((kid) => kid !== first) ?? '';
    const beforeSwitch = await issue(server, parties);
    expect(kidOf(beforeSwitch)).toBe(first);
    const listed = await server.app.keys.list();
    const successor = listed.find((key) => key.kid === second);
    expect(successor).toMatchObject({
      phase: 'published',
      next_transition: { phase: 'active', planned: false },
    });
    expect(listed.find((key) => key.kid === first)).toMatchObject({
      phase: 'active',
      retires_at: successor?.activates_at,
      next_transition: { phase: 'retired', at: successor?.activates_at, planned: false },
    });
    const publishedFor =
      Date.parse(successor?.activates_at ?? '') - Date.parse(successor?.published_at ?? '');
    expect(publishedFor).toBe(PROPAGATION * 1000);

    // The successor signs; the first key stays published for its tokens.
    await at(ROTATION + 10);
    const afterSwitch = await issue(server, parties);
    expect(kidOf(afterSwitch)).toBe(second);
    expect((await jwks(server)).kids.sort()).toEqual([first, second].sort());
    expect(await verifies(beforeSwitch)).toBe(true);
    expect(await verifies(afterSwitch)).toBe(true);

    // After the retention time the first key is gone.
    await at(ROTATION + RETENTION + 10);
    expect((await jwks(server)).kids).toEqual([second]);
    expect(await server.app.db.selectFrom('signing_key').select('kid').execute()).toEqual([{ kid: second }]);

    const trail = await listAuditEvents(server.app.db, { actor: 'system:key-rotation' }, { limit: 50 });
    expect(
      trail.map((event) => `${event.action} ${event.target_id === first ? 'first' : 'second'}`).reverse(),
    ).toEqual([
      'signing_key.publish first',
      'signing_key.publish second',
      'signing_key.schedule first',
      'signing_key.activate second',
      'signing_key.retire first',
      'signing_key.remove first',
    ]);
  });
});

describe.each(['EdDSA', 'PS256'] as const)('a change of algorithm to %s', (alg) => {
  const clock: Clock & { offsetMs: number } = {
    offsetMs: 0,
    now: () => new Date(Date.now() + clock.offsetMs),
  };
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database.drop());

  it('rotates through the same lifecycle: published first, signing after the propagation time', async () => {
    // The shortest propagation the settings allow, so tokens issued before the switch are still live after it.
    const env = { MAYFLY_JWKS_MAX_AGE: '0', MAYFLY_KEY_PROPAGATION: '65' };
    const before = await startTestServer({ database, clock, env });
    const parties = await setUp(before);
    const es256 = before.app.keys.current.signer.kid;
    const { port } = new URL(before.url);
    await before.close();

    const server = await startTestServer({
      database,
      clock,
      port: Number(port),
      env: { ...env, MAYFLY_SIGNING_ALG: alg },
    });
    try {
      const oldToken = await issue(server, parties);
      expect(decodeProtectedHeader(oldToken)).toMatchObject({ alg: 'ES256', kid: es256 });
      const keys = await server.app.keys.list();
      expect(keys.map((key) => [key.alg, key.phase])).toEqual([
        [alg, 'published'],
        ['ES256', 'active'],
      ]);

      clock.offsetMs = 66_000;
      await server.app.keys.refresh();
      const newToken = await issue(server, parties);
      expect(decodeProtectedHeader(newToken).alg).toBe(alg);
      const document = (await jwks(server)).document;
      for (const token of [oldToken, newToken]) {
        await expect(
          jwtVerify(token, createLocalJWKSet(document), { issuer: server.url }),
        ).resolves.toBeDefined();
        expect(await introspect(server, parties, token)).toBe(true);
      }
      const trail = await listAuditEvents(server.app.db, { action: 'signing_key.publish' }, { limit: 10 });
      expect(trail[0]?.after).toMatchObject({ alg, reason: 'algorithm' });
    } finally {
      await server.close();
      clock.offsetMs = 0;
    }
  });
});

describe('rotation and revocation through the admin API', () => {
  let server: TestServer;
  let parties: Parties;
  beforeAll(async () => {
    server = await startTestServer();
    parties = await setUp(server);
  });
  afterAll(() => server.close());

  it('rotate publishes a successor once; immediate signs with a new key at once', async () => {
    const admin = await obtainAdminToken(server);
    const signer = server.app.keys.current.signer.kid;
    const rotated = await adminCall(server, admin, 'POST', '/keys/rotate', { body: {} });
    expect(rotated.status).toBe(200);
    const { key, created } = rotated.body as {
      key: { kid: string; phase: string; activates_at: string };
      created: boolean;
    };
    expect(created).toBe(true);
    expect(key.phase).toBe('published');
    expect(Date.parse(key.activates_at) - Date.now()).toBeGreaterThan(3_500_000);
    expect((await jwks(server)).kids).toContain(key.kid);
    expect(kidOf(await issue(server, parties))).toBe(signer);

    const again = await adminCall(server, admin, 'POST', '/keys/rotate');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, key: { kid: key.kid } });

    const bad = await adminCall(server, admin, 'POST', '/keys/rotate', { body: { immediate: 'yes' } });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'invalid_input', details: [{ path: 'immediate' }] });

    const now = await adminCall(server, admin, 'POST', '/keys/rotate', { body: { immediate: true } });
    expect(now.status).toBe(200);
    // The published successor is promoted rather than a third key made.
    expect(now.body).toMatchObject({ key: { kid: key.kid, phase: 'active' } });
    expect(kidOf(await issue(server, parties))).toBe(key.kid);
    expect((await jwks(server)).kids.sort()).toEqual([signer, key.kid].sort());
  });

  it('revoke drops the key from the JWKS at once, promotes a successor, and its tokens turn inactive', async () => {
    let admin = await obtainAdminToken(server);
    const revoked = server.app.keys.current.signer.kid;
    const token = await issue(server, parties);
    expect(await introspect(server, parties, token)).toBe(true);

    const res = await adminCall(server, admin, 'POST', `/keys/${revoked}/revoke`);
    expect(res.status).toBe(200);
    const body = res.body as { key: { kid: string; phase: string }; signing_kid: string };
    expect(body.key).toMatchObject({ kid: revoked, phase: 'revoked' });
    expect(body.signing_kid).not.toBe(revoked);
    expect((await jwks(server)).kids).not.toContain(revoked);
    expect((await jwks(server)).kids).toContain(body.signing_kid);
    expect(await introspect(server, parties, token)).toBe(false);
    const fresh = await issue(server, parties);
    expect(kidOf(fresh)).toBe(body.signing_kid);
    expect(await introspect(server, parties, fresh)).toBe(true);

    // The admin's own token was signed by the revoked key: refused too.
    const refused = await adminCall(server, admin, 'GET', '/keys');
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'invalid_token' });

    admin = await obtainAdminToken(server);
    const listed = await adminCall(server, admin, 'GET', '/keys');
    expect(listed.status).toBe(200);
    const items = (listed.body as { items: { kid: string; phase: string; next_transition: unknown }[] })
      .items;
    expect(items.find((key) => key.kid === revoked)).toMatchObject({
      phase: 'revoked',
      next_transition: { phase: 'removed', planned: false },
    });
    expect(items.filter((key) => key.phase === 'active').map((key) => key.kid)).toEqual([body.signing_kid]);

    const twice = await adminCall(server, admin, 'POST', `/keys/${revoked}/revoke`);
    expect(twice.status).toBe(200);
    expect(twice.body).toMatchObject({
      key: { kid: revoked, phase: 'revoked' },
      signing_kid: body.signing_kid,
    });
    const unknown = await adminCall(server, admin, 'POST', '/keys/no-such-kid/revoke');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({
      code: 'key_not_found',
      message: 'no signing key with kid no-such-kid',
    });

    const trail = await listAuditEvents(server.app.db, { action: 'signing_key.revoke' }, { limit: 10 });
    const { client_id: adminId } = await readAdminCredentials(server);
    expect(trail.map((event) => [event.target_id, event.actor])).toEqual([[revoked, adminId]]);
  });
});
