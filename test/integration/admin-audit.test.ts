import { createHash, randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import { adminCall, obtainAdminToken, readAdminCredentials, type AdminToken } from '../support/admin.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { postToken, requestToken } from '../support/oauth.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

/** The audit trail of admin changes: stored, listed with filters and pages, logged, and free of secrets. */

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const SECRET_PATTERN = /mfy_[A-Za-z0-9_-]{20,}/;

/** Moved forward a few seconds to spread events in time; the admin token stays valid throughout. */
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let admin: AdminToken;
let adminId: string;
let dpopKey: DpopKey;
/** Every client secret the API answered in this file: none may appear in the trail or the logs. */
const issuedSecrets: string[] = [];

beforeAll(async () => {
  server = await startTestServer({ clock });
  admin = await obtainAdminToken(server);
  adminId = (await readAdminCredentials(server)).client_id;
  dpopKey = await generateDpopKey();
});
afterAll(() => server.close());

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
const call = (method: Method, path: string, options: Parameters<typeof adminCall>[4] = {}) =>
  adminCall(server, admin, method, path, options);

interface AuditEvent {
  id: string;
  occurred_at: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

const unique = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;
const identifierOf = (label: string) => `https://${unique(label)}.example.com`;

function ok(res: { status: number; body: unknown }, status: number): Record<string, unknown> {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  return res.body as Record<string, unknown>;
}

/** One page of events. */
async function events(query: string): Promise<{ items: AuditEvent[]; next_cursor: string | null }> {
  const res = await call('GET', '/audit-events', { query });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { items: AuditEvent[]; next_cursor: string | null };
}

/** Every event matching the filters, following next_cursor with the given page size. */
async function allEvents(filters: string, limit = 200): Promise<AuditEvent[]> {
  const items: AuditEvent[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const parts = [filters, `limit=${limit}`];
    if (cursor !== null) parts.push(`cursor=${encodeURIComponent(cursor)}`);
    const page = await events(parts.filter(Boolean).join('&'));
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    cursor = page.next_cursor;
    pages += 1;
    expect(pages).toBeLessThan(500);
  } while (cursor !== null);
  return items;
}

async function latest(action: string, target: string): Promise<AuditEvent> {
  const page = await events(`action=${action}&target=${encodeURIComponent(target)}&limit=1`);
  expect(page.items).toHaveLength(1);
  return page.items[0]!;
}

async function newestEventId(): Promise<string | undefined> {
  return (await events('limit=1')).items[0]?.id;
}

/** The same record was logged as an admin_change line. */
function expectLogged(event: AuditEvent) {
  const lines = server.logs.audit('admin_change').filter((r) => r.id === event.id);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    component: 'audit',
    event: 'admin_change',
    occurred_at: event.occurred_at,
    actor: event.actor,
    action: event.action,
    target_type: event.target_type,
    target_id: event.target_id,
    before: event.before,
    after: event.after,
  });
}

function expectEvent(
  event: AuditEvent,
  expected: Pick<AuditEvent, 'action' | 'target_type' | 'target_id' | 'before' | 'after'>,
) {
  expect(event).toEqual({
    id: expect.stringMatching(/^\d+$/),
    occurred_at: expect.stringMatching(ISO),
    actor: adminId,
    ...expected,
  });
  expectLogged(event);
}

function withoutSecret(body: Record<string, unknown>): Record<string, unknown> {
  const { client_secret: secret, ...rest } = body;
  if (typeof secret === 'string') issuedSecrets.push(secret);
  return rest;
}

describe('resource changes', () => {
  it('records create, update and delete with the admin client as actor and before/after as the API shows them', async () => {
    const identifier = identifierOf('audited');
    const created = ok(await call('POST', '/resources', { body: { identifier, scopes: ['a', 'b'] } }), 201);
    const id = created.id as string;
    expectEvent(await latest('resource.create', id), {
      action: 'resource.create',
      target_type: 'resource',
      target_id: id,
      before: null,
      after: created,
    });

    const updated = ok(
      await call('PATCH', `/resources/${id}`, { body: { name: 'Audited', scopes: ['a'], token_ttl: 60 } }),
      200,
    );
    expectEvent(await latest('resource.update', id), {
      action: 'resource.update',
      target_type: 'resource',
      target_id: id,
      before: created,
      after: updated,
    });

    expect((await call('DELETE', `/resources/${encodeURIComponent(identifier)}`)).status).toBe(204);
    const deleted = await latest('resource.delete', id);
    // The stored `before` adds the clients that depended on the resource (none here) to its representation.
    expectEvent(deleted, {
      action: 'resource.delete',
      target_type: 'resource',
      target_id: id,
      before: { ...updated, dependents: [] },
      after: null,
    });

    const trail = await events(`target=${id}`);
    expect(trail.items.map((e) => e.action)).toEqual([
      'resource.delete',
      'resource.update',
      'resource.create',
    ]);
    expect(trail.next_cursor).toBeNull();
  });

  it('records a forced delete with the clients that lost their grant', async () => {
    const identifier = identifierOf('forced');
    const resource = ok(await call('POST', '/resources', { body: { identifier, scopes: ['a'] } }), 201);
    const client = withoutSecret(
      ok(
        await call('POST', '/clients', {
          body: { name: unique('dependent'), grants: [{ resource: identifier, scopes: ['a'] }] },
        }),
        201,
      ),
    );
    expect(
      (await call('DELETE', `/resources/${resource.id as string}`, { query: 'force=true' })).status,
    ).toBe(204);
    const event = await latest('resource.delete', resource.id as string);
    expect(event.before).toEqual({ ...resource, dependents: [client.client_id] });
    expect(event.after).toBeNull();
    expectLogged(event);
  });
});

describe('client changes', () => {
  it('records create, update, disable, enable, rotate_secret and delete, with secrets redacted', async () => {
    const identifier = identifierOf('granted');
    ok(await call('POST', '/resources', { body: { identifier, scopes: ['r', 'w'] } }), 201);
    const createdBody = ok(
      await call('POST', '/clients', {
        body: { name: unique('audited'), grants: [{ resource: identifier, scopes: ['r'] }] },
      }),
      201,
    );
    const secret = createdBody.client_secret as string;
    const created = withoutSecret(createdBody);
    const id = created.client_id as string;
    const path = `/clients/${id}`;
    expectEvent(await latest('client.create', id), {
      action: 'client.create',
      target_type: 'client',
      target_id: id,
      before: null,
      after: { ...created, client_secret: '[redacted]' },
    });

    const updated = ok(
      await call('PATCH', path, {
        body: { name: unique('renamed'), grants: [{ resource: identifier, scopes: ['w'] }] },
      }),
      200,
    );
    expectEvent(await latest('client.update', id), {
      action: 'client.update',
      target_type: 'client',
      target_id: id,
      before: created,
      after: updated,
    });

    const disabled = ok(await call('POST', `${path}/disable`), 200);
    expectEvent(await latest('client.disable', id), {
      action: 'client.disable',
      target_type: 'client',
      target_id: id,
      before: updated,
      after: disabled,
    });
    const enabled = ok(await call('POST', `${path}/enable`), 200);
    expectEvent(await latest('client.enable', id), {
      action: 'client.enable',
      target_type: 'client',
      target_id: id,
      before: disabled,
      after: enabled,
    });

    // The secrets are used once at /token, so that the logs had every chance to capture them.
    expect(
      (await requestToken(server.url, { clientId: id, secret, resource: identifier, key: dpopKey })).status,
    ).toBe(200);
    const rotatedBody = ok(await call('POST', `${path}/secrets`), 201);
    const rotated = withoutSecret(rotatedBody);
    const rotation = await latest('client.rotate_secret', id);
    expectEvent(rotation, {
      action: 'client.rotate_secret',
      target_type: 'client',
      target_id: id,
      before: enabled,
      after: { ...rotated, client_secret: '[redacted]', previous_secret_expires_in: 86_400 },
    });
    const shownBeforeSecondRotation = ok(await call('GET', path), 200);
    const rotatedAgain = withoutSecret(
      ok(await call('POST', `${path}/secrets`, { body: { previous_secret_expires_in: 0 } }), 201),
    );
    const secondRotation = await latest('client.rotate_secret', id);
    expect(secondRotation.id).not.toBe(rotation.id);
    expect(secondRotation.before).toEqual(shownBeforeSecondRotation);
    expect(secondRotation.after).toEqual({
      ...rotatedAgain,
      client_secret: '[redacted]',
      previous_secret_expires_in: 0,
    });
    const newest = issuedSecrets.at(-1) ?? '';
    expect(
      (
        await postToken(
          server.url,
          { grant_type: 'client_credentials', resource: identifier, client_id: id, client_secret: newest },
          { key: dpopKey },
        )
      ).status,
    ).toBe(200);

    const beforeDelete = ok(await call('GET', path), 200);
    expect((await call('DELETE', path)).status).toBe(204);
    expectEvent(await latest('client.delete', id), {
      action: 'client.delete',
      target_type: 'client',
      target_id: id,
      before: beforeDelete,
      after: null,
    });

    const trail = await allEvents(`target=${id}`);
    expect(trail.map((e) => e.action)).toEqual([
      'client.delete',
      'client.rotate_secret',
      'client.rotate_secret',
      'client.enable',
      'client.disable',
      'client.update',
      'client.create',
    ]);
    // Newest first, by id and by time.
    const ids = trail.map((e) => BigInt(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0)));
    const times = trail.map((e) => Date.parse(e.occurred_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it('records a private_key_jwt client with its public keys only and no secret member', async () => {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwks = { keys: [await exportJWK(publicKey)] };
    const created = ok(
      await call('POST', '/clients', {
        body: { name: unique('keyed'), auth_method: 'private_key_jwt', jwks },
      }),
      201,
    );
    const event = await latest('client.create', created.client_id as string);
    expect(event.after).toEqual(created);
    expect(event.after).not.toHaveProperty('client_secret');
    expectLogged(event);
  });
});

describe('secrets', () => {
  it('never stores or logs a secret value or its hash', async () => {
    // At least one secret from every kind of answer that carries one.
    const created = ok(
      await call('POST', '/clients', {
        body: { name: unique('secretive'), auth_method: 'client_secret_post' },
      }),
      201,
    );
    withoutSecret(created);
    withoutSecret(ok(await call('POST', `/clients/${created.client_id as string}/secrets`), 201));
    expect(issuedSecrets.length).toBeGreaterThanOrEqual(2);

    const storedHashes = (
      await server.app.db.selectFrom('client_secret').select('secret_hash').execute()
    ).map((row) => row.secret_hash);
    const forbidden = [
      ...issuedSecrets,
      ...storedHashes,
      ...issuedSecrets.map((s) => createHash('sha256').update(s).digest('base64url')),
      ...issuedSecrets.map((s) => createHash('sha256').update(s).digest('hex')),
      ...issuedSecrets.map((s) => createHash('sha256').update(s).digest('base64')),
    ];
    const trail = JSON.stringify(await allEvents(''));
    const logs = server.logs.text();
    for (const value of forbidden) {
      expect(trail).not.toContain(value);
      expect(logs).not.toContain(value);
    }
    expect(trail).not.toMatch(SECRET_PATTERN);
    expect(logs).not.toMatch(SECRET_PATTERN);
    expect(trail).not.toContain('secret_hash');
    expect(logs).not.toContain('secret_hash');
  });
});

describe('GET /audit-events', () => {
  it('records the bootstrap as system:bootstrap and service-layer changes as their own actor; filters by actor', async () => {
    const bootstrap = await allEvents('actor=system%3Abootstrap');
    expect(bootstrap.map((e) => [e.action, e.target_id])).toEqual([
      ['client.create', adminId],
      ['resource.create', expect.any(String)],
    ]);
    expect(bootstrap[1]?.after).toMatchObject({ identifier: `${server.url}/admin`, reserved: true });

    const viaService = await server.createResource({ identifier: identifierOf('service'), scopes: ['a'] });
    const byTest = await allEvents(`actor=${encodeURIComponent(TEST_ACTOR.id)}`);
    expect(byTest.map((e) => e.target_id)).toContain(viaService.id);
    expect(byTest.every((e) => e.actor === TEST_ACTOR.id)).toBe(true);
    const byAdmin = await allEvents(`actor=${adminId}`);
    expect(byAdmin.length).toBeGreaterThan(0);
    expect(byAdmin.every((e) => e.actor === adminId)).toBe(true);
    expect(byAdmin.map((e) => e.target_id)).not.toContain(viaService.id);
    expect(await allEvents('actor=nobody')).toEqual([]);
  });

  it('filters by action and target, alone and together', async () => {
    const identifier = identifierOf('filtered');
    const resource = ok(await call('POST', '/resources', { body: { identifier, scopes: ['a'] } }), 201);
    const id = resource.id as string;
    ok(await call('PATCH', `/resources/${id}`, { body: { name: 'one' } }), 200);
    ok(await call('PATCH', `/resources/${id}`, { body: { name: 'two' } }), 200);

    const updates = await allEvents('action=resource.update');
    expect(updates.every((e) => e.action === 'resource.update')).toBe(true);
    expect(updates.filter((e) => e.target_id === id)).toHaveLength(2);
    const forTarget = await allEvents(`target=${id}`);
    expect(forTarget.every((e) => e.target_id === id)).toBe(true);
    expect(forTarget.map((e) => e.action)).toEqual(['resource.update', 'resource.update', 'resource.create']);
    const both = await allEvents(`target=${id}&action=resource.update&actor=${adminId}`);
    expect(both.map((e) => e.after?.name)).toEqual(['two', 'one']);
    expect(await allEvents(`target=${id}&action=resource.delete`)).toEqual([]);
    expect(await allEvents('action=client.explode')).toEqual([]);
  });

  it('filters by since (inclusive) and until (exclusive), with any UTC offset', async () => {
    const made: AuditEvent[] = [];
    try {
      for (const offset of [0, 10_000, 20_000]) {
        clock.offsetMs = offset;
        const created = ok(
          await call('POST', '/resources', { body: { identifier: identifierOf('timed'), scopes: ['a'] } }),
          201,
        );
        made.push(await latest('resource.create', created.id as string));
      }
    } finally {
      clock.offsetMs = 0;
    }
    const [a, b, c] = made as [AuditEvent, AuditEvent, AuditEvent];
    expect(Date.parse(b.occurred_at) - Date.parse(a.occurred_at)).toBeGreaterThanOrEqual(9_000);
    const ids = async (query: string) => {
      const found = new Set((await allEvents(`action=resource.create&${query}`)).map((e) => e.id));
      return [a, b, c].filter((e) => found.has(e.id)).map((e) => e.id);
    };
    const at = (event: AuditEvent) => encodeURIComponent(event.occurred_at);
    expect(await ids(`since=${at(b)}`)).toEqual([b.id, c.id]);
    expect(await ids(`until=${at(b)}`)).toEqual([a.id]);
    expect(await ids(`since=${at(a)}&until=${at(c)}`)).toEqual([a.id, b.id]);
    expect(await ids(`since=${at(c)}&until=${at(a)}`)).toEqual([]);

    // The same instant written with a +02:00 offset.
    const shifted = new Date(Date.parse(b.occurred_at) + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
    expect(await ids(`since=${encodeURIComponent(shifted)}`)).toEqual([b.id, c.id]);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect(await allEvents(`since=${encodeURIComponent(future)}`)).toEqual([]);
  });

  it('pages newest first with limit and next_cursor until null, over every event and over a filter', async () => {
    const identifier = identifierOf('paged');
    const resource = ok(await call('POST', '/resources', { body: { identifier, scopes: ['a'] } }), 201);
    for (let i = 0; i < 4; i += 1) {
      ok(await call('PATCH', `/resources/${resource.id as string}`, { body: { name: `n${i}` } }), 200);
    }
    const everything = await allEvents('');
    expect(everything.length).toBeGreaterThan(5);
    const ids = everything.map((e) => BigInt(e.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...ids].sort((x, y) => (x > y ? -1 : x < y ? 1 : 0)));

    const firstPage = await events('limit=2');
    expect(firstPage.items).toHaveLength(2);
    expect(typeof firstPage.next_cursor).toBe('string');
    expect(await allEvents('', 2)).toEqual(everything);
    expect(await allEvents('', 3)).toEqual(everything);

    const filtered = await allEvents(`target=${resource.id as string}`, 2);
    expect(filtered.map((e) => e.action)).toEqual([
      'resource.update',
      'resource.update',
      'resource.update',
      'resource.update',
      'resource.create',
    ]);
    expect(filtered.map((e) => e.after?.name ?? null)).toEqual(['n3', 'n2', 'n1', 'n0', null]);
  });

  it.each([
    ['limit 0', 'limit=0', 'limit'],
    ['limit 201', 'limit=201', 'limit'],
    ['a word as limit', 'limit=all', 'limit'],
    ['a cursor that is not base64url JSON', 'cursor=%25', 'cursor'],
    ['a cursor holding a word', `cursor=${Buffer.from('"abc"').toString('base64url')}`, 'cursor'],
    [
      'a cursor of the resource list',
      `cursor=${Buffer.from('"https://a.example.com"').toString('base64url')}`,
      'cursor',
    ],
    ['since without a time', 'since=2026-01-31', 'since'],
    ['since as a word', 'since=yesterday', 'since'],
    ['until as epoch seconds', 'until=1767225600', 'until'],
    ['an empty actor', 'actor=', 'actor'],
    ['a repeated action', 'action=client.create&action=client.delete', 'action'],
    ['a repeated target', 'target=a&target=b', 'target'],
    ['an unknown parameter', 'type=client', ''],
  ])('refuses %s with 400 invalid_input', async (_case, query, path) => {
    const res = await call('GET', '/audit-events', { query });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'invalid_input' });
    expect(res.body.details).toEqual(expect.arrayContaining([expect.objectContaining({ path })]));
  });

  it('needs admin:read: a token with admin:write only is refused with 403', async () => {
    const writer = await obtainAdminToken(server, { scope: 'admin:write' });
    const res = await adminCall(server, writer, 'GET', '/audit-events');
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 403, code: 'insufficient_scope' });
  });
});

describe('refused and read-only requests', () => {
  it('leave no audit event and no admin_change log line', async () => {
    const identifier = identifierOf('stable');
    ok(await call('POST', '/resources', { body: { identifier, scopes: ['a', 'b'] } }), 201);
    const holder = withoutSecret(
      ok(
        await call('POST', '/clients', {
          body: { name: unique('holder'), grants: [{ resource: identifier, scopes: ['b'] }] },
        }),
        201,
      ),
    );
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const keyed = ok(
      await call('POST', '/clients', {
        body: {
          name: unique('keyed'),
          auth_method: 'private_key_jwt',
          jwks: { keys: [await exportJWK(publicKey)] },
        },
      }),
      201,
    );
    const newest = await newestEventId();
    const logged = server.logs.audit('admin_change').length;
    const ref = `/resources/${encodeURIComponent(identifier)}`;
    const holderPath = `/clients/${holder.client_id as string}`;
    const reader = await obtainAdminToken(server, { scope: 'admin:read' });

    const refused: [Method, string, unknown, number][] = [
      ['POST', '/resources', { identifier: 'relative', scopes: ['a'] }, 400],
      ['POST', '/resources', { identifier, scopes: ['a'] }, 409],
      ['POST', '/resources', '{"identifier":', 400],
      ['PATCH', ref, { token_ttl: 901 }, 400],
      ['PATCH', ref, { scopes: ['a'] }, 409],
      ['PATCH', `/resources/${encodeURIComponent(identifierOf('ghost'))}`, { name: 'x' }, 404],
      ['PATCH', `/resources/${encodeURIComponent(`${server.url}/admin`)}`, { name: 'x' }, 409],
      ['DELETE', ref, undefined, 409],
      ['DELETE', `/resources/${encodeURIComponent(`${server.url}/admin`)}`, undefined, 409],
      ['POST', '/clients', { name: 'x', grants: [{ resource: identifierOf('ghost'), scopes: ['a'] }] }, 404],
      ['POST', '/clients', { name: 'x', grants: [{ resource: identifier, scopes: ['c'] }] }, 400],
      ['POST', '/clients', { name: 'x', auth_method: 'private_key_jwt' }, 400],
      ['PATCH', holderPath, { name: 'y', grants: [{ resource: identifier, scopes: ['z'] }] }, 400],
      ['PATCH', holderPath, { jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] } }, 400],
      ['POST', `${holderPath}/secrets`, { previous_secret_expires_in: -1 }, 400],
      ['POST', `/clients/${keyed.client_id as string}/secrets`, undefined, 400],
      ['POST', '/clients/ghost/disable', undefined, 404],
      ['DELETE', '/clients/ghost', undefined, 404],
      ['POST', `/clients/${adminId}/disable`, undefined, 409],
      ['DELETE', `/clients/${adminId}`, undefined, 409],
    ];
    for (const [method, path, body, status] of refused) {
      const res = await call(
        method,
        path,
        body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) },
      );
      expect(`${method} ${path} → ${res.status}`).toBe(`${method} ${path} → ${status}`);
    }
    const forbidden = await adminCall(server, reader, 'POST', '/resources', {
      body: { identifier: identifierOf('reader'), scopes: ['a'] },
    });
    expect(forbidden.status).toBe(403);
    // Reads are not changes either.
    for (const path of ['/resources', ref, '/clients', holderPath, '/audit-events']) {
      expect((await call('GET', path)).status).toBe(200);
    }

    expect(await newestEventId()).toBe(newest);
    expect(server.logs.audit('admin_change')).toHaveLength(logged);
    // The refusals are logged as admin requests instead.
    const failures = server.logs.audit('admin_request').filter((r) => r.outcome === 'failure');
    expect(failures.length).toBeGreaterThanOrEqual(refused.length + 1);
  });
});

describe('changes that change nothing', () => {
  it('records no event for disabling a disabled client or enabling an enabled one', async () => {
    const created = ok(await call('POST', '/clients', { body: { name: unique('idle') } }), 201);
    const id = created.client_id as string;
    ok(await call('POST', `/clients/${id}/disable`), 200);
    ok(await call('POST', `/clients/${id}/disable`), 200);
    ok(await call('POST', `/clients/${id}/enable`), 200);
    ok(await call('POST', `/clients/${id}/enable`), 200);
    const actions = (await allEvents(`target=${encodeURIComponent(id)}`)).map((event) => event.action);
    expect(actions).toEqual(['client.enable', 'client.disable', 'client.create']);
  });
});
