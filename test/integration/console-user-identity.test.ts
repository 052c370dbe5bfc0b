import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  claimTotpStep,
  deleteAdminUser,
  findAdminUser,
  recordTotpFailure,
} from '../../src/console/admin-user.service.ts';
import { createSession, findSession } from '../../src/console/sessions.ts';
import { totpStep } from '../../src/console/totp.ts';
import { createMigrator } from '../../src/db/migrator.ts';
import { down, up } from '../../migrations/20261208030000-admin-user-id.ts';
import { ConsoleSession, createConsoleUser, TEST_PASSWORD } from '../support/console.ts';
import { createTestDatabase } from '../support/database.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

/**
 * A console user deleted and created again under the same name is another person: nothing the first one earned (a
 * device cookie, a session whose sign-in raced the deletion, TOTP state) counts for the second, although the name
 * and the credentials version (which starts at 0 again) are the same. Each is bound to the user's random id.
 */

const DEVICE = 'mayfly-console-device';
const NEW_PASSWORD = 'the password of the new alice';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('device cookies', () => {
  let limited: TestServer;
  beforeAll(async () => {
    limited = await startTestServer({
      env: {
        MAYFLY_CONSOLE_SIGNIN_PER_USER: '3',
        MAYFLY_TRUST_PROXY: 'true',
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '100',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '101',
      },
    });
  });
  afterAll(() => limited.close());

  const signInFrom = async (browser: ConsoleSession, user: string, password: string, address: string) => {
    const from = { 'x-forwarded-for': address };
    await browser.get('/console/sign-in', from);
    return browser.post('/console/sign-in', { user, password }, from);
  };

  it('does not count a device cookie earned by a deleted user for one created again under the same name', async () => {
    await createConsoleUser(limited, 'alice');
    const before = await findAdminUser(limited.app.db, 'alice');
    const formerBrowser = new ConsoleSession(limited);
    expect((await signInFrom(formerBrowser, 'alice', TEST_PASSWORD, '192.0.2.1')).status).toBe(303);
    const earned = formerBrowser.cookies.get(DEVICE) ?? '';
    expect(earned).toMatch(/^[\w-]+\.0\.\d+\.[\w-]{43}$/);

    await deleteAdminUser(limited.app.admin, TEST_ACTOR, 'alice');
    await createConsoleUser(limited, 'alice', { password: NEW_PASSWORD });
    const after = await findAdminUser(limited.app.db, 'alice');
    // Same name, same credentials version: only the id tells the two apart.
    expect(after?.credentials_version).toBe(before?.credentials_version);
    expect(after?.id).toMatch(UUID);
    expect(after?.id).not.toBe(before?.id);

    // The new alice signs in from a browser of her own, which earns a cookie of its own.
    const ownBrowser = new ConsoleSession(limited);
    expect((await signInFrom(ownBrowser, 'alice', NEW_PASSWORD, '192.0.2.2')).status).toBe(303);
    // Others spend the name's budget.
    for (let i = 0; i < 3; i++) {
      await signInFrom(new ConsoleSession(limited), 'alice', 'a guess that is wrong', `198.51.100.${i}`);
    }
    expect((await signInFrom(new ConsoleSession(limited), 'alice', NEW_PASSWORD, '203.0.113.1')).status).toBe(
      429,
    );

    // The cookie the deleted alice earned shares the name's (spent) budget, from her browser or copied elsewhere.
    expect((await signInFrom(formerBrowser, 'alice', NEW_PASSWORD, '192.0.2.3')).status).toBe(429);
    const copied = new ConsoleSession(limited);
    copied.cookies.set(DEVICE, earned);
    expect((await signInFrom(copied, 'alice', NEW_PASSWORD, '203.0.113.2')).status).toBe(429);
    expect(limited.logs.audit('console_sign_in').at(-1)).toMatchObject({
      outcome: 'failure',
      user: 'alice',
      reason: 'too many sign-in attempts for this user',
    });

    // The new alice's own cookie still has a budget of its own.
    expect((await signInFrom(ownBrowser, 'alice', NEW_PASSWORD, '192.0.2.4')).status).toBe(303);
  });

  it('keeps counting a device cookie for the user who earned it, while others spend that user’s budget', async () => {
    await createConsoleUser(limited, 'bob');
    const own = new ConsoleSession(limited);
    expect((await signInFrom(own, 'bob', TEST_PASSWORD, '192.0.2.10')).status).toBe(303);
    for (let i = 0; i < 3; i++) {
      await signInFrom(new ConsoleSession(limited), 'bob', 'a guess that is wrong', `198.51.100.${10 + i}`);
    }
    expect((await signInFrom(new ConsoleSession(limited), 'bob', TEST_PASSWORD, '203.0.113.10')).status).toBe(
      429,
    );
    expect((await signInFrom(own, 'bob', TEST_PASSWORD, '192.0.2.11')).status).toBe(303);
    // A copy of the cookie in another browser is the same device: it counts there too.
    const copied = new ConsoleSession(limited);
    copied.cookies.set(DEVICE, own.cookies.get(DEVICE) ?? '');
    expect((await signInFrom(copied, 'bob', TEST_PASSWORD, '192.0.2.12')).status).toBe(303);
  });
});

describe('a sign-in racing the deletion of its user', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('stores no session for a user created again under the same name meanwhile', async () => {
    await createConsoleUser(server, 'carol');
    // Read for checking the credentials; then deleted and created again before the session is stored.
    const read = await findAdminUser(server.app.db, 'carol');
    await deleteAdminUser(server.app.admin, TEST_ACTOR, 'carol');
    await createConsoleUser(server, 'carol', { password: NEW_PASSWORD });
    const now = new Date();
    await expect(createSession(server.app.db, read!, now, 3600)).rejects.toMatchObject({ code: '23503' });
    const stored = await server.app.db
      .selectFrom('console_session')
      .select('id_hash')
      .where('user_name', '=', 'carol')
      .execute();
    expect(stored).toEqual([]);
    // The new carol's own sessions open.
    const current = await findAdminUser(server.app.db, 'carol');
    const own = await createSession(server.app.db, current!, now, 3600);
    expect(await findSession(server.app.db, own.id, now, 600)).toMatchObject({ userName: 'carol' });
  });

  it('changes no TOTP state of a user created again under the same name', async () => {
    await createConsoleUser(server, 'erin', { totp: true });
    const read = await findAdminUser(server.app.db, 'erin');
    await deleteAdminUser(server.app.admin, TEST_ACTOR, 'erin');
    await createConsoleUser(server, 'erin', { totp: true, password: NEW_PASSWORD });
    expect(await claimTotpStep(server.app.db, read!, totpStep(new Date()))).toBe(false);
    expect(await recordTotpFailure(server.app.db, read!)).toBe(0);
    const current = await findAdminUser(server.app.db, 'erin');
    expect(current).toMatchObject({ totp_last_step: null, totp_failures: 0 });
    // The current user's own state is still recorded.
    expect(await recordTotpFailure(server.app.db, current!)).toBe(1);
    expect(await claimTotpStep(server.app.db, current!, totpStep(new Date()))).toBe(true);
  });
});

describe('the migration', () => {
  it('gives every existing user a random id of its own and every session its user’s, and goes back down', async () => {
    const database = await createTestDatabase();
    try {
      const db = database.handle.db;
      const migrated = await createMigrator(db).migrateTo('20261207230000-replay-markers');
      expect(migrated.error).toBeUndefined();
      for (const name of ['first', 'second']) {
        await sql`insert into admin_user (name, password_hash, role) values (${name}, 'scrypt$x', 'read')`.execute(
          db,
        );
      }
      await sql`insert into console_session (id_hash, user_name, credentials_version, csrf_token, created_at,
        last_seen_at, expires_at) values ('h', 'second', 0, 'c', now(), now(), now() + interval '1 hour')`.execute(
        db,
      );

      await up(db);
      const users = await sql<{
        name: string;
        id: string;
      }>`select name, id::text as id from admin_user order by name`.execute(db);
      expect(users.rows.map((u) => u.name)).toEqual(['first', 'second']);
      for (const user of users.rows) expect(user.id).toMatch(UUID);
      expect(users.rows[0]?.id).not.toBe(users.rows[1]?.id);
      const sessions = await sql<{
        user_id: string;
      }>`select user_id::text as user_id from console_session`.execute(db);
      expect(sessions.rows).toEqual([{ user_id: users.rows[1]?.id }]);
      // Deleting the user still ends its sessions.
      await sql`delete from admin_user where name = 'second'`.execute(db);
      expect((await sql`select 1 from console_session`.execute(db)).rows).toEqual([]);

      await down(db);
      const columns = await sql<{ column_name: string }>`select column_name from information_schema.columns
        where table_name in ('admin_user', 'console_session') and column_name in ('id', 'user_id')`.execute(
        db,
      );
      expect(columns.rows).toEqual([]);
      await up(db);
      const again = await sql<{ id: string }>`select id::text as id from admin_user`.execute(db);
      expect(again.rows[0]?.id).toMatch(UUID);
      expect(again.rows[0]?.id).not.toBe(users.rows[0]?.id);
    } finally {
      await database.drop();
    }
  });
});
