import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken } from '../support/admin.ts';
import type { TestDatabase } from '../support/database.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { startCluster, type Balancer, type Cluster } from '../support/instances.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import type { TestServer } from '../support/server.ts';

/**
 * Acceptance criterion "multi-instance" of the signing keys: two real `mayfly serve` processes on one Postgres
 * database, behind one public address, agree on the signing keys — at start, after rotations and after an
 * emergency revocation — and drop no request while the key swaps.
 *
 * Only with DATABASE_URL: the embedded PGlite default is single-process by design (one process owns its data
 * folder), so there is no second instance to agree with.
 */

type Name = 'a' | 'b';

const API = 'https://orders.example.com';
/** Bound of every wait for the other instance: with MAYFLY_KEY_CHECK_INTERVAL=1 it takes about a second. */
const PICKUP_BOUND_MS = 10_000;

interface SigningKeyInfo {
  kid: string;
  alg: string;
  phase: 'published' | 'active' | 'retired' | 'revoked';
}

/** Polls `check` until it holds; returns the time it took, or throws after `timeoutMs`. */
async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = PICKUP_BOUND_MS,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const kidOf = (token: string): string | undefined => decodeProtectedHeader(token).kid;

describe.skipIf(!process.env.DATABASE_URL)('two instances on one database behind one address', () => {
  let cluster: Cluster<Name> | undefined;
  let database: TestDatabase;
  let keysDir: string;
  let balancer: Balancer<Name>;

  let dpopKey: DpopKey;
  let caller: { id: string; secret: string };
  let resourceServer: { id: string; secret: string };

  /** Whatever `admin.ts` reads from a TestServer: the URL (the issuer) and the keys folder. */
  const publicAddress = () => ({ url: balancer.url, keysDir }) as TestServer;
  const through = (target: Name) => {
    balancer.target = target;
    return publicAddress();
  };

  /** An admin API call through `target`, with an admin token obtained there (it is signed by the current key). */
  async function admin(target: Name, method: 'GET' | 'POST', path: string, body?: unknown) {
    const server = through(target);
    const token = await obtainAdminToken(server);
    balancer.target = target;
    const res = await adminCall(server, token, method, path, body === undefined ? {} : { body });
    expect(res.headers['x-mayfly-instance'], 'the balancer routed the admin call').toBe(target);
    return res;
  }

  async function listKeys(target: Name): Promise<SigningKeyInfo[]> {
    const res = await admin(target, 'GET', '/keys');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body as { items: SigningKeyInfo[] }).items;
  }

  /** A DPoP-bound access token for API from `target`. */
  async function issue(target: Name): Promise<string> {
    balancer.target = target;
    const res = await requestToken(balancer.url, {
      clientId: caller.id,
      secret: caller.secret,
      resource: API,
      key: dpopKey,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.headers['x-mayfly-instance']).toBe(target);
    return (res.body as { access_token: string }).access_token;
  }

  async function introspect(target: Name, token: string): Promise<{ active: boolean }> {
    balancer.target = target;
    const res = await request(balancer.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(resourceServer.id, resourceServer.secret))
      .type('form')
      .send({ token });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.headers['x-mayfly-instance']).toBe(target);
    return res.body as { active: boolean };
  }

  async function jwks(
    target: Name,
  ): Promise<{ etag: string; body: string; kids: string[]; set: JSONWebKeySet }> {
    balancer.target = target;
    const res = await fetch(`${balancer.url}/jwks`);
    const body = await res.text();
    expect(res.status, body).toBe(200);
    expect(res.headers.get('x-mayfly-instance')).toBe(target);
    const set = JSON.parse(body) as JSONWebKeySet;
    return { etag: res.headers.get('etag') ?? '', body, kids: set.keys.map((key) => key.kid ?? ''), set };
  }

  const logsOf = () => cluster?.logs() ?? '';

  beforeAll(async () => {
    // Both start at the same moment on the empty database: migrations, first key and admin bootstrap race.
    cluster = await startCluster<Name>({ names: ['a', 'b'], env: { MAYFLY_KEY_CHECK_INTERVAL: '1' } });
    ({ database, keysDir, balancer } = cluster);

    const resource = await admin('a', 'POST', '/resources', { identifier: API, scopes: ['orders:read'] });
    expect(resource.status, JSON.stringify(resource.body)).toBe(201);
    const created = async (body: unknown) => {
      const res = await admin('a', 'POST', '/clients', body);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const { client_id: id, client_secret: secret } = res.body as {
        client_id: string;
        client_secret: string;
      };
      return { id, secret };
    };
    caller = await created({ name: 'orders-worker', grants: [{ resource: API, scopes: ['orders:read'] }] });
    resourceServer = await created({ name: 'orders-api', introspects: [API] });
    dpopKey = await generateDpopKey();
  }, 120_000);

  afterAll(async () => {
    // Stops both processes (SIGTERM, then SIGKILL), drops the database and removes the folder.
    await cluster?.close();
  }, 60_000);

  it(
    'a concurrent start on an empty database makes one signing key and one admin client',
    { timeout: 30_000 },
    async () => {
      const client = new pg.Client({
        connectionString: database.config.kind === 'postgres' ? database.config.url : '',
      });
      await client.connect();
      try {
        const keys = await client.query<{ kid: string }>('select kid from signing_key');
        expect(keys.rows).toHaveLength(1);
        // Clients holding rights on the admin API; the test's own clients hold none.
        const admins = await client.query<{ n: number }>(
          `select count(distinct g.client_id)::int as n
           from client_grant g join resource r on r.id = g.resource_id
          where r.identifier = $1`,
          [`${balancer.url}/admin`],
        );
        expect(admins.rows[0]?.n).toBe(1);
        const [a, b] = [await jwks('a'), await jwks('b')];
        expect(a.kids).toEqual([keys.rows[0]?.kid]);
        expect(a.etag).toMatch(/^"[\w-]+"$/);
        expect(b.etag).toBe(a.etag);
        expect(b.body).toBe(a.body);
      } finally {
        await client.end();
      }
      // One instance created the admin client and wrote its credentials; the other found it done.
      await access(join(keysDir, 'admin.json'));
      expect(logsOf().match(/"msg":"created the admin client/g) ?? []).toHaveLength(1);
    },
  );

  it(
    'a token issued by one instance is active and verifiable at the other',
    { timeout: 30_000 },
    async () => {
      for (const [issuer, other] of [
        ['a', 'b'],
        ['b', 'a'],
      ] as const) {
        const token = await issue(issuer);
        expect(await introspect(other, token)).toMatchObject({
          active: true,
          aud: API,
          client_id: caller.id,
        });
        const { set } = await jwks(other);
        const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(set), {
          issuer: balancer.url,
          audience: API,
          typ: 'at+jwt',
        });
        expect(protectedHeader.kid).toBe(set.keys[0]?.kid);
        expect(payload.client_id).toBe(caller.id);
      }
    },
  );

  it(
    'an immediate rotation through A reaches B within seconds; older tokens stay active',
    { timeout: 60_000 },
    async () => {
      const oldToken = await issue('b');
      const oldKid = kidOf(oldToken);
      expect(oldKid).toBeDefined();

      const rotated = await admin('a', 'POST', '/keys/rotate', { immediate: true });
      expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
      const { key, created } = rotated.body as { key: SigningKeyInfo; created: boolean };
      const started = Date.now();
      expect(created).toBe(true);
      expect(key.kid).not.toBe(oldKid);
      // A applied it before answering.
      expect(kidOf(await issue('a'))).toBe(key.kid);
      expect((await jwks('a')).kids).toContain(key.kid);

      await waitFor(
        'B publishes and signs with the new key',
        async () => (await jwks('b')).kids.includes(key.kid) && kidOf(await issue('b')) === key.kid,
      );
      expect(Date.now() - started, logsOf()).toBeLessThan(PICKUP_BOUND_MS);

      expect(kidOf(await issue('a'))).toBe(key.kid);
      expect(kidOf(await issue('b'))).toBe(key.kid);
      const [a, b] = [await jwks('a'), await jwks('b')];
      expect(a.kids).toEqual(expect.arrayContaining([oldKid, key.kid]));
      expect(b.etag).toBe(a.etag);
      // The old key retired but stays published: its unexpired tokens keep working everywhere.
      expect(await introspect('a', oldToken)).toMatchObject({ active: true });
      expect(await introspect('b', oldToken)).toMatchObject({ active: true });
    },
  );

  it(
    'a rotation through B publishes a successor on both while the current key keeps signing',
    { timeout: 60_000 },
    async () => {
      const current = kidOf(await issue('a'));
      const rotated = await admin('b', 'POST', '/keys/rotate', { immediate: false });
      expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
      const { key, created } = rotated.body as { key: SigningKeyInfo; created: boolean };
      expect(created).toBe(true);
      expect(key.phase).toBe('published');
      expect(key.kid).not.toBe(current);
      expect((await jwks('b')).kids).toContain(key.kid);

      await waitFor('A publishes the successor', async () => (await jwks('a')).kids.includes(key.kid));
      const [a, b] = [await jwks('a'), await jwks('b')];
      expect(b.etag).toBe(a.etag);
      // Published is not signing: the successor waits for the propagation time.
      expect(kidOf(await issue('a'))).toBe(current);
      expect(kidOf(await issue('b'))).toBe(current);
      const listed = await listKeys('a');
      expect(listed.find((item) => item.kid === key.kid)?.phase).toBe('published');
      expect(listed.find((item) => item.kid === current)?.phase).toBe('active');
    },
  );

  it(
    'revoking the signing key through B withdraws it from both and its tokens die',
    { timeout: 60_000 },
    async () => {
      const before = await listKeys('a');
      const signing = before.find((item) => item.phase === 'active')?.kid ?? '';
      const successor = before.find((item) => item.phase === 'published')?.kid;
      expect(successor, 'the previous test published a successor').toBeDefined();
      const doomed = await issue('a');
      expect(kidOf(doomed)).toBe(signing);

      const revoked = await admin('b', 'POST', `/keys/${encodeURIComponent(signing)}/revoke`);
      expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
      const result = revoked.body as { key: SigningKeyInfo; signing_kid: string };
      expect(result.key).toMatchObject({ kid: signing, phase: 'revoked' });
      // The published successor is promoted at once.
      expect(result.signing_kid).toBe(successor);
      // B withdrew it before answering.
      const atB = await jwks('b');
      expect(atB.kids).not.toContain(signing);
      expect(atB.kids).toContain(successor);
      expect(kidOf(await issue('b'))).toBe(successor);

      await waitFor(
        'A withdraws the revoked key and signs with the successor',
        async () => !(await jwks('a')).kids.includes(signing) && kidOf(await issue('a')) === successor,
      );
      expect((await jwks('a')).etag).toBe((await jwks('b')).etag);
      expect(await introspect('a', doomed)).toEqual({ active: false });
      expect(await introspect('b', doomed)).toEqual({ active: false });
      expect(kidOf(await issue('a'))).toBe(successor);
      expect(kidOf(await issue('b'))).toBe(successor);
    },
  );

  it('no request is dropped while both instances swap keys under load', { timeout: 60_000 }, async () => {
    const oldKid = kidOf(await issue('a'));
    // Obtained before the load: signed by the old key, which stays published after the rotation.
    const adminToken = await obtainAdminToken(through('a'));
    const MIN_REQUESTS = 100;
    const MAX_REQUESTS = 2_000;
    const WORKERS = 10;
    const failures: string[] = [];
    const kids: Record<Name, Set<string | undefined>> = { a: new Set(), b: new Set() };
    let sent = 0;
    let newKid: string | undefined;
    let rotation: Promise<void> | undefined;
    // Traffic goes on until both instances have signed with the new key (so each swap happened under load),
    // and at least MIN_REQUESTS were sent; bounded in count and by the test timeout.
    const swappedOnBoth = () => newKid !== undefined && kids.a.has(newKid) && kids.b.has(newKid);

    balancer.target = 'alternate';
    const worker = async () => {
      while (sent < MAX_REQUESTS && !(sent >= MIN_REQUESTS && swappedOnBoth())) {
        sent += 1;
        if (sent === 20) {
          // Through the balancer like the load: it lands on whichever instance has its turn.
          rotation = (async () => {
            const res = await adminCall(publicAddress(), adminToken, 'POST', '/keys/rotate', {
              body: { immediate: true },
            });
            if (res.status !== 200) failures.push(`rotation: ${res.status} ${JSON.stringify(res.body)}`);
            newKid = (res.body as { key?: { kid?: string } }).key?.kid;
          })();
        }
        try {
          const res = await requestToken(balancer.url, {
            clientId: caller.id,
            secret: caller.secret,
            resource: API,
            key: dpopKey,
          });
          const served = res.headers['x-mayfly-instance'] as Name;
          if (res.status !== 200) failures.push(`${served}: ${res.status} ${JSON.stringify(res.body)}`);
          else kids[served].add(kidOf((res.body as { access_token: string }).access_token));
        } catch (error) {
          failures.push(`connection: ${(error as Error).message}`);
        }
        await sleep(10);
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    await rotation;

    expect(failures, logsOf()).toEqual([]);
    expect(sent).toBeGreaterThanOrEqual(MIN_REQUESTS);
    expect(newKid).toBeDefined();
    expect(newKid).not.toBe(oldKid);
    for (const name of ['a', 'b'] as const) {
      // Each instance answered with both keys: its swap happened while requests flowed.
      expect(kids[name], `kids signed by ${name}`).toEqual(new Set([oldKid, newKid]));
    }
  });
});
