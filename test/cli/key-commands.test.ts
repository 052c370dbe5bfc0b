import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { calculateJwkThumbprint, decodeProtectedHeader } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { connectDatabase, type Db } from '../../src/db/connect.ts';
import type { SigningKeyRow } from '../../src/db/tables/signing-key.table.ts';
import { openTotpSecret } from '../../src/console/admin-user.service.ts';
import { toKek, unseal, type Kek } from '../../src/keys/envelope.ts';
import { adminCall, obtainAdminToken, readAdminCredentials } from '../support/admin.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { createConsoleUser } from '../support/console.ts';
import { startTestServer, TEST_ACTOR } from '../support/server.ts';
import { expectFailure, runMayfly, startCliServer, type CliResult, type CliServer } from './helpers.ts';

/*
 * `mayfly key`. The admin commands (list, rotate, revoke) run against one real server, in the order of a key's
 * life, each test starting from the keys the previous one left (a server start is the costliest part of a file).
 * `mayfly key rewrap` is a local command: it runs against a database of its own, with its server stopped.
 */

/** Not the default (3600 s): a successor's activation time shows where it comes from. */
const PROPAGATION = 1_800;
const API = 'https://api.example.com';

interface KeyInfo {
  kid: string;
  alg: string;
  phase: 'published' | 'active' | 'retired' | 'revoked';
  published_at: string;
  activates_at: string;
  retires_at: string | null;
  removes_at: string | null;
  revoked_at: string | null;
  next_transition: { phase: 'active' | 'retired' | 'removed'; at: string; planned: boolean } | null;
}

interface Rotation {
  key: KeyInfo;
  created: boolean;
}

interface Revocation {
  key: KeyInfo;
  signing_kid: string;
}

/** How the CLI prints an instant: ISO without milliseconds. */
const shown = (iso: string) => new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The 32-byte KEK values the servers and commands get, as base64url. */
const newSecret = () => randomBytes(32).toString('base64url');
const kekOf = (secret: string): Kek => toKek(Buffer.from(secret, 'base64url'));

/** Everything any command printed in this file, checked for key material at the end of each block. */
const printed: string[] = [];

function remember(result: CliResult): CliResult {
  printed.push(result.stdout, result.stderr);
  return result;
}

/** The private `d` of every stored signing key, opened with `keks`. */
function privateParts(rows: readonly SigningKeyRow[], keks: readonly Kek[]): string[] {
  return rows.map((row) => {
    const d = unseal(keks, row.kid, row.sealed_private_jwk ?? '').d;
    if (typeof d !== 'string' || !d) throw new Error(`signing key ${row.kid} has no private d`);
    return d;
  });
}

function selectKeys(db: Db): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().orderBy('kid').execute();
}

describe('mayfly key list, rotate, revoke', () => {
  let cli: CliServer;
  let client: { id: string; secret: string };
  let introspector: { id: string; secret: string };

  beforeAll(async () => {
    cli = await startCliServer({ env: { MAYFLY_KEY_PROPAGATION: String(PROPAGATION) } });
    await cli.server.createResource({ identifier: API, scopes: ['read'] });
    const caller = await cli.server.createClient({
      name: 'caller',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    client = { id: caller.client.client_id, secret: caller.clientSecret ?? '' };
    const checker = await cli.server.createClient({ name: 'checker', introspects: [API] });
    introspector = { id: checker.client.client_id, secret: checker.clientSecret ?? '' };
  });
  afterAll(async () => {
    await cli.close();
  });

  /** In this process by default; `spawn` runs the real binary. */
  const mayfly = async (args: readonly string[], options: { spawn?: boolean } = {}) =>
    remember(options.spawn ? await cli.spawn(args) : await cli.run(args));

  async function mayflyJson<T>(args: readonly string[], options: { spawn?: boolean } = {}): Promise<T> {
    const result = await mayfly([...args, '--json'], options);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as T;
  }

  const listKeys = async () => (await mayflyJson<{ items: KeyInfo[] }>(['key', 'list'])).items;

  async function keyOf(kid: string): Promise<KeyInfo> {
    const key = (await listKeys()).find((candidate) => candidate.kid === kid);
    if (!key) throw new Error(`mayfly key list does not show ${kid}`);
    return key;
  }

  /** The kids a resource server finds at the JWKS URI now. */
  async function publishedKids(): Promise<string[]> {
    const response = await fetch(`${cli.server.url}/jwks`);
    expect(response.status).toBe(200);
    const body = JSON.parse(await response.text()) as { keys: { kid: string }[] };
    return body.keys.map((key) => key.kid);
  }

  async function obtainToken(): Promise<string> {
    const response = await requestToken(cli.server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      key: await generateDpopKey(),
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    return (response.body as { access_token: string }).access_token;
  }

  /** The kid the server signs new tokens with: read from a fresh token's JWS header. */
  async function signingKid(): Promise<string | undefined> {
    return decodeProtectedHeader(await obtainToken()).kid;
  }

  async function introspect(token: string): Promise<boolean> {
    const response = await request(cli.server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(introspector.id, introspector.secret))
      .type('form')
      .send({ token });
    expect(response.status).toBe(200);
    return (response.body as { active: boolean }).active;
  }

  /** The kids, in order of their life, as the tests create them. */
  const kids: string[] = [];
  const kid = (index: number): string => {
    const value = kids[index];
    if (!value) throw new Error(`no key #${index} yet: the tests of this block run in order`);
    return value;
  };

  it('list: the single active key of a new server, as a table and as the API’s {items}', async () => {
    const table = await mayfly(['key', 'list'], { spawn: true });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stderr).toBe('');
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^KID +ALG +PHASE +PUBLISHED +SIGNS FROM +NEXT$/);

    const { items } = await mayflyJson<{ items: KeyInfo[] }>(['key', 'list'], { spawn: true });
    expect(items).toHaveLength(1);
    const [key] = items as [KeyInfo];
    expect(key).toMatchObject({
      alg: 'ES256',
      phase: 'active',
      retires_at: null,
      removes_at: null,
      revoked_at: null,
    });
    // No successor yet: the retirement is an estimate from the rotation schedule, marked ~ in the table.
    expect(key.next_transition).toMatchObject({ phase: 'retired', planned: true });
    expect(lines[1]).toBe(
      `${key.kid}  ES256  active  ${shown(key.published_at)}  ${shown(key.activates_at)}  ` +
        `retired ~${shown(key.next_transition?.at ?? '')}`,
    );
    // --json prints the admin API's answer as is.
    const admin = await obtainAdminToken(cli.server, { scope: 'admin:read' });
    const api = await adminCall(cli.server, admin, 'GET', '/keys');
    expect(api.status).toBe(200);
    expect(api.body).toEqual({ items });

    expect(await publishedKids()).toEqual([key.kid]);
    expect(await signingKid()).toBe(key.kid);
    kids.push(key.kid);
  });

  it('rotate publishes a successor that signs after the propagation time; again, it keeps that one', async () => {
    const before = Date.now();
    const rotated = await mayfly(['key', 'rotate'], { spawn: true });
    const after = Date.now();
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toBe('');
    const [, successor = '', signsFrom = ''] =
      /^Published key (\S+); it signs from (\S+)\.\n/.exec(rotated.stdout) ?? [];
    expect(successor).not.toBe(kid(0));
    // Second precision in the output: the window starts at the second of `before`.
    const activation = Date.parse(signsFrom);
    expect(activation).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + PROPAGATION * 1000);
    expect(activation).toBeLessThanOrEqual(after + PROPAGATION * 1000);
    expect(rotated.stdout).toMatch(new RegExp(`^kid: +${successor}$`, 'm'));
    expect(rotated.stdout).toMatch(/^phase: +published$/m);
    expect(rotated.stdout).toMatch(new RegExp(`^next: +active ${signsFrom}$`, 'm'));
    kids.push(successor);

    // A second rotation while a successor waits publishes nothing more: the same key, created false.
    const again = await mayflyJson<Rotation>(['key', 'rotate']);
    expect(again.created).toBe(false);
    expect(again.key).toMatchObject({ kid: successor, phase: 'published' });
    expect(shown(again.key.activates_at)).toBe(signsFrom);
    const human = await mayfly(['key', 'rotate']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(
      new RegExp(`^Key ${successor} is already published and signs from ${signsFrom}\\.\\n`),
    );

    // The active key now retires exactly when its successor signs: no longer an estimate.
    const keys = await listKeys();
    expect(keys.map((key) => [key.kid, key.phase])).toEqual(
      expect.arrayContaining([
        [kid(0), 'active'],
        [successor, 'published'],
      ]),
    );
    expect(keys).toHaveLength(2);
    const active = await keyOf(kid(0));
    expect(active.retires_at).toBe(again.key.activates_at);
    expect(active.next_transition).toEqual({ phase: 'retired', at: again.key.activates_at, planned: false });
    const table = await mayfly(['key', 'list']);
    expect(table.stdout).toMatch(
      new RegExp(`^${kid(0)} +ES256 +active +\\S+ +\\S+ +retired ${signsFrom}$`, 'm'),
    );
    expect(table.stdout).toMatch(
      new RegExp(`^${successor} +ES256 +published +\\S+ +${signsFrom} +active ${signsFrom}$`, 'm'),
    );

    // Published ahead: resource servers can fetch it already, while tokens are still signed by the active key.
    expect(await publishedKids()).toEqual(expect.arrayContaining([kid(0), successor]));
    expect(await signingKid()).toBe(kid(0));
  });

  it('rotate --now: the published successor signs at once, the warning goes to stderr, the old key stays in the JWKS', async () => {
    const rotated = await mayfly(['key', 'rotate', '--now'], { spawn: true });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(new RegExp(`^Key ${kid(1)} signs now\\.\\n`));
    expect(rotated.stdout).toMatch(/^phase: +active$/m);
    expect(rotated.stdout).not.toContain('Warning');
    expect(rotated.stderr).toMatch(
      /^Warning: resource servers that cached the JWKS before now reject tokens/,
    );
    expect(rotated.stderr).toContain('MAYFLY_JWKS_MAX_AGE');
    expect(rotated.stderr).not.toMatch(/^mayfly:/m);

    expect(await publishedKids()).toEqual(expect.arrayContaining([kid(1), kid(0)]));
    expect(await signingKid()).toBe(kid(1));
    expect((await keyOf(kid(0))).phase).toBe('retired');
    expect((await keyOf(kid(1))).phase).toBe('active');
  });

  it('rotate --now without a published successor: a new key signs at once; --json keeps stdout to the JSON', async () => {
    const before = Date.now();
    const result = await mayfly(['key', 'rotate', '--now', '--json'], { spawn: true });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/^Warning: /);
    const rotation = JSON.parse(result.stdout) as Rotation;
    expect(rotation.created).toBe(true);
    expect(rotation.key.phase).toBe('active');
    expect(kids).not.toContain(rotation.key.kid);
    expect(Date.parse(rotation.key.activates_at)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(rotation.key.activates_at)).toBeLessThanOrEqual(Date.now());
    kids.push(rotation.key.kid);

    // Tokens already issued by the former keys still verify: both stay published, retired.
    expect(await publishedKids()).toEqual(expect.arrayContaining([kid(2), kid(1), kid(0)]));
    expect(await signingKid()).toBe(kid(2));
    const former = await keyOf(kid(1));
    expect(former.phase).toBe('retired');
    expect(former.next_transition).toMatchObject({ phase: 'removed', planned: false });
  });

  it('revoke the signing key: it leaves the JWKS at once, its tokens are inactive, the named successor signs', async () => {
    const token = await obtainToken();
    expect(decodeProtectedHeader(token).kid).toBe(kid(2));
    expect(await introspect(token)).toBe(true);

    const revoked = await mayfly(['key', 'revoke', kid(2)], { spawn: true });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stderr).toBe('');
    const [, successor = ''] =
      new RegExp(`^Revoked key ${kid(2)}; key (\\S+) signs\\.\\n`).exec(revoked.stdout) ?? [];
    // No published successor was waiting: a new key was made to sign at once.
    expect(successor).toMatch(/^[\w-]{43}$/);
    expect(kids).not.toContain(successor);
    expect(revoked.stdout).toMatch(/^phase: +revoked$/m);
    expect(revoked.stdout).toMatch(/^revoked: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
    kids.push(successor);

    const published = await publishedKids();
    expect(published).not.toContain(kid(2));
    expect(published).toEqual(expect.arrayContaining([successor, kid(1), kid(0)]));
    expect(await introspect(token)).toBe(false);
    expect(await signingKid()).toBe(successor);
  });

  it('revoke a retired key: the signer stays; revoking it again answers the same and records nothing more', async () => {
    const first = await mayflyJson<Revocation>(['key', 'revoke', kid(0)]);
    expect(first.signing_kid).toBe(kid(3));
    expect(first.key).toMatchObject({ kid: kid(0), phase: 'revoked' });
    expect(first.key.revoked_at).toEqual(expect.any(String));
    expect(await publishedKids()).not.toContain(kid(0));

    const second = await mayfly(['key', 'revoke', kid(0)], { spawn: true });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(new RegExp(`^Revoked key ${kid(0)}; key ${kid(3)} signs\\.\\n`));
    expect(second.stdout).toMatch(new RegExp(`^revoked: +${shown(first.key.revoked_at ?? '')}$`, 'm'));
    expect(await mayflyJson<Revocation>(['key', 'revoke', kid(0)])).toEqual(first);

    const events = await cli.server.database.handle.db
      .selectFrom('audit_event')
      .select(['actor', 'action'])
      .where('target_id', '=', kid(0))
      .where('action', '=', 'signing_key.revoke')
      .execute();
    // Attributed to the admin client that ran the command, once.
    const { client_id: admin } = await readAdminCredentials(cli.server);
    expect(events).toEqual([{ actor: admin, action: 'signing_key.revoke' }]);
    expect(await signingKid()).toBe(kid(3));
  });

  it('revoke the published successor: the signer keeps signing, its retirement is an estimate again', async () => {
    const published = await mayflyJson<Rotation>(['key', 'rotate']);
    expect(published).toMatchObject({ created: true, key: { phase: 'published' } });
    kids.push(published.key.kid);
    expect((await keyOf(kid(3))).retires_at).toBe(published.key.activates_at);

    const revoked = await mayfly(['key', 'revoke', kid(4)]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^Revoked key ${kid(4)}; key ${kid(3)} signs\\.\\n`));
    expect(await publishedKids()).not.toContain(kid(4));
    const signer = await keyOf(kid(3));
    expect(signer.retires_at).toBeNull();
    expect(signer.next_transition).toMatchObject({ phase: 'retired', planned: true });

    // The next rotation publishes a fresh successor, never the revoked one.
    const next = await mayflyJson<Rotation>(['key', 'rotate']);
    expect(next.created).toBe(true);
    expect(kids).not.toContain(next.key.kid);
    kids.push(next.key.kid);
    expect(await signingKid()).toBe(kid(3));
  });

  it('revoke an unknown kid: exit 1 with the API message and code, nothing changes', async () => {
    const before = await listKeys();
    expectFailure(
      remember(await cli.spawn(['key', 'revoke', 'no-such-kid'])),
      1,
      'no signing key with kid no-such-kid (key_not_found)',
    );
    // A kid shaped like a path stays one path segment: it reaches no other route.
    expectFailure(
      await mayfly(['key', 'revoke', '../rotate']),
      1,
      'no signing key with kid ../rotate (key_not_found)',
    );
    expectFailure(await mayfly(['key', 'revoke']), 2, 'missing <kid>');
    expect(await listKeys()).toEqual(before);
  });

  it('nothing printed holds key material: no private d of a signing key, not the KEK', async () => {
    const rows = await selectKeys(cli.server.database.handle.db);
    expect(rows.map((row) => row.kid).sort()).toEqual([...kids].sort());
    const secrets = [...privateParts(rows, [kekOf(cli.server.database.kek)]), cli.server.database.kek];
    const all = printed.join('\n');
    for (const secret of secrets) expect(all).not.toContain(secret);
  });
});

// Each run of the command opens the embedded database from its folder in a new process: seconds, not millis.
describe('mayfly key rewrap', { timeout: 60_000 }, () => {
  let dir: string;
  let database: TestDatabase;
  const oldKek = () => database.kek;
  const newKek = newSecret();
  const nonceSecret = newSecret();
  /** The keys as the server left them: signing, published, revoked. */
  let stored: SigningKeyRow[];

  /**
   * Opens the database for one look and closes it: an embedded (PGlite) data folder admits one process, and the
   * command runs in another.
   */
  async function readKeys(): Promise<SigningKeyRow[]> {
    const handle = await connectDatabase(database.config);
    try {
      return await selectKeys(handle.db);
    } finally {
      await handle.close();
    }
  }

  async function rewrapEvents(): Promise<
    { actor: string; target_id: string; before: unknown; after: unknown }[]
  > {
    const handle = await connectDatabase(database.config);
    try {
      return await handle.db
        .selectFrom('audit_event')
        .select(['actor', 'target_id', 'before', 'after'])
        .where('action', '=', 'signing_key.rewrap')
        .orderBy('target_id')
        .execute();
    } finally {
      await handle.close();
    }
  }

  /** Configured by the environment like `mayfly migrate`: the database, and the KEKs under test. */
  function rewrap(kek: string, previous?: string): Promise<CliResult> {
    const target =
      database.config.kind === 'postgres'
        ? { DATABASE_URL: database.config.url, MAYFLY_DPOP_NONCE_SECRET: nonceSecret }
        : { MAYFLY_DATA_DIR: join(dir, 'data'), MAYFLY_KEYS_DIR: join(dir, 'keys') };
    const env = { ...target, MAYFLY_KEK: kek, ...(previous ? { MAYFLY_KEK_PREVIOUS: previous } : {}) };
    return runMayfly(['key', 'rewrap'], { env, cwd: dir }).then(remember);
  }

  /** What re-wrapping must leave alone: everything but the sealed private key. */
  const schedule = (rows: readonly SigningKeyRow[]) =>
    rows.map(({ sealed_private_jwk: _sealed, ...rest }) => rest);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mayfly-rewrap-'));
    // PGlite in a data folder the command can open once the server has stopped; or a Postgres database.
    database = await createTestDatabase({ pgliteDir: join(dir, 'data') });
    const server = await startTestServer({ database });
    try {
      // Three keys in three phases, all sealed under the server's KEK: each one has to be re-wrapped.
      const first = (await server.app.keys.list())[0]?.kid ?? '';
      await server.app.keys.rotate(TEST_ACTOR, true);
      await server.app.keys.rotate(TEST_ACTOR, false);
      await server.app.keys.revoke(TEST_ACTOR, first);
      // A console user's TOTP seed is sealed under the KEK too.
      await createConsoleUser(server, 'second-factor', { totp: true });
    } finally {
      await server.close();
    }
    if (database.config.kind === 'pglite') await database.handle.close();
    stored = await readKeys();
  });
  afterAll(async () => {
    if (database.config.kind === 'postgres') await database.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the keys under test: three, in three phases, sealed under the server’s KEK', () => {
    expect(stored.map((row) => row.recorded_phase).sort()).toEqual(['active', 'published', 'revoked']);
    for (const row of stored)
      expect(row.sealed_private_jwk).toMatch(new RegExp(`^v1\\.${kekOf(oldKek()).id}\\.`));
  });

  it('a KEK that opens nothing: exit 1 naming the kid and MAYFLY_KEK_PREVIOUS; nothing changes', async () => {
    const stranger = newSecret();
    const result = await rewrap(stranger);
    expectFailure(result, 1, 'MAYFLY_KEK_PREVIOUS');
    const [, named = ''] = /^mayfly: signing key (\S+) is wrapped with KEK /.exec(result.stderr) ?? [];
    expect(stored.map((row) => row.kid)).toContain(named);
    // The message names KEKs by their public ids only.
    expect(result.stderr).toContain(kekOf(oldKek()).id);
    expect(result.stderr).toContain(kekOf(stranger).id);
    expect(await readKeys()).toEqual(stored);
    expect(await rewrapEvents()).toEqual([]);
  });

  it('MAYFLY_KEK new and MAYFLY_KEK_PREVIOUS old: every key is re-wrapped under the new KEK, nothing else changes', async () => {
    const { id } = kekOf(newKek);
    const result = await rewrap(newKek, oldKek());
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `Re-wrapped 3 key(s) under KEK ${id}; sealed 0 stored in clear; 0 already under it.\n` +
        'Re-wrapped 1 console second factor(s); 0 already under it.\n',
    );
    const handle = await connectDatabase(database.config);
    try {
      const user = await handle.db
        .selectFrom('admin_user')
        .select(['name', 'totp_secret'])
        .executeTakeFirstOrThrow();
      expect(user.totp_secret).toMatch(new RegExp(`^v1\\.${id}\\.`));
      // The new KEK alone opens the seed.
      expect(openTotpSecret([kekOf(newKek)], user.name, user.totp_secret ?? '')).toHaveLength(20);
    } finally {
      await handle.close();
    }

    const rows = await readKeys();
    expect(schedule(rows)).toEqual(schedule(stored));
    for (const row of rows) {
      expect(row.sealed_private_jwk).toMatch(new RegExp(`^v1\\.${id}\\.`));
      // The new KEK alone opens each key, and it is still the private half of the published key.
      const jwk = unseal([kekOf(newKek)], row.kid, row.sealed_private_jwk ?? '');
      expect(await calculateJwkThumbprint(row.public_jwk)).toBe(row.kid);
      expect(await calculateJwkThumbprint(jwk)).toBe(row.kid);
    }
    expect(privateParts(rows, [kekOf(newKek)])).toEqual(privateParts(stored, [kekOf(oldKek())]));

    const events = await rewrapEvents();
    expect(events).toEqual(
      stored.map((row) => ({
        actor: 'system:key-rewrap',
        target_id: row.kid,
        before: { kek: kekOf(oldKek()).id },
        after: { kek: id },
      })),
    );
  });

  it('again: 0 re-wrapped, 3 unchanged, the sealed values untouched, with or without the former KEK', async () => {
    const before = await readKeys();
    const expected =
      `Re-wrapped 0 key(s) under KEK ${kekOf(newKek).id}; sealed 0 stored in clear; 3 already under it.\n` +
      'Re-wrapped 0 console second factor(s); 1 already under it.\n';
    const again = await rewrap(newKek, oldKek());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(expected);
    // Nothing needs the former KEK any more: it can leave the configuration.
    const without = await rewrap(newKek);
    expect(without.code, without.stderr).toBe(0);
    expect(without.stdout).toBe(expected);
    expect(await readKeys()).toEqual(before);
    expect(await rewrapEvents()).toHaveLength(3);
  });

  it('the former KEK alone no longer opens the keys: exit 1, nothing changes', async () => {
    const before = await readKeys();
    const result = await rewrap(oldKek());
    expectFailure(result, 1, /^mayfly: signing key \S+ is wrapped with KEK \S+, which is neither MAYFLY_KEK/);
    expect(result.stderr).toContain('MAYFLY_KEK_PREVIOUS');
    expect(await readKeys()).toEqual(before);
  });

  it('a server started with the new KEK alone signs with the re-wrapped key', async () => {
    const handle = await connectDatabase(database.config);
    const server = await startTestServer({ database: { ...database, handle, kek: newKek } });
    try {
      const signer = stored.find((row) => row.recorded_phase === 'active');
      expect(server.app.keys.current.signer.kid).toBe(signer?.kid);
    } finally {
      await server.close();
      await handle.close();
    }
  });

  it('nothing printed holds key material: neither KEK, no private d', () => {
    const all = printed.join('\n');
    expect(all).toContain(kekOf(newKek).id);
    for (const secret of [newKek, oldKek(), ...privateParts(stored, [kekOf(oldKek())])]) {
      expect(all).not.toContain(secret);
    }
  });
});

describe('mayfly key --help', () => {
  it('the group lists the four commands; rotate --help tells the propagation time and the risk of --now', async () => {
    const group = remember(await runMayfly(['key', '--help']));
    expect(group.code).toBe(0);
    for (const name of ['list', 'rotate', 'revoke', 'rewrap'])
      expect(group.stdout).toMatch(new RegExp(`^  key ${name} `, 'm'));
    expect(group.stdout).toContain("Run 'mayfly key <command> --help'");

    const rotate = remember(await runMayfly(['key', 'rotate', '--help']));
    expect(rotate.code).toBe(0);
    expect(rotate.stdout).toMatch(/^Usage: mayfly key rotate \[--now\]$/m);
    expect(rotate.stdout).toContain('propagation time');
    expect(rotate.stdout).toContain('MAYFLY_KEY_PROPAGATION');
    expect(rotate.stdout).toMatch(/--now +sign with the new key at once \(risks unknown-kid rejections\)/);
    expect(rotate.stdout.replace(/\s+/g, ' ')).toContain(
      'a resource server holding a cached JWKS rejects its tokens (unknown kid) until it refetches the JWKS',
    );
  });
});
