import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken, readAdminCredentials, type AdminToken } from '../support/admin.ts';
import { ConsoleSession } from '../support/console.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** Console users through the admin API: what `mayfly admin-user` calls. */

let server: TestServer;
let admin: AdminToken;
beforeAll(async () => {
  server = await startTestServer();
  admin = await obtainAdminToken(server);
});
afterAll(() => server.close());

const PASSWORD = 'a long enough password';
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
const call = (method: Method, path: string, body?: unknown) =>
  adminCall(server, admin, method, path, body === undefined ? {} : { body });

const userCount = async () =>
  Number(
    (
      await server.app.db
        .selectFrom('admin_user')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

describe('create', () => {
  it('answers the user without any credential, read-only unless asked, and records it', async () => {
    const created = await call('POST', '/admin-users', { name: 'alice', password: PASSWORD });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      name: 'alice',
      role: 'read',
      totp: false,
      status: 'enabled',
      disabled_at: null,
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    const event = await server.app.db
      .selectFrom('audit_event')
      .selectAll()
      .where('action', '=', 'admin_user.create')
      .where('target_id', '=', 'alice')
      .executeTakeFirstOrThrow();
    expect(event.actor).toBe((await readAdminCredentials(server)).client_id);
    expect(JSON.stringify(event)).not.toContain(PASSWORD);
    expect(JSON.stringify(event)).not.toContain('scrypt$');
    const row = await server.app.db
      .selectFrom('admin_user')
      .selectAll()
      .where('name', '=', 'alice')
      .executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^scrypt\$/);
    expect(row.password_hash).not.toContain(PASSWORD);
    expect(server.logs.text()).not.toContain(PASSWORD);
  });

  it('enrols a TOTP second factor on request and answers its secret this once', async () => {
    const created = await call('POST', '/admin-users', {
      name: 'bob',
      password: PASSWORD,
      role: 'write',
      totp: true,
    });
    expect(created.status).toBe(201);
    expect(created.body.totp).toBe(true);
    expect(created.body.totp_enrolment.secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(created.body.totp_enrolment.otpauth_uri).toContain(`secret=${created.body.totp_enrolment.secret}`);
    const shown = await call('GET', '/admin-users/bob');
    expect(shown.body).not.toHaveProperty('totp_enrolment');
    expect(JSON.stringify((await call('GET', '/admin-users')).body)).not.toContain(
      created.body.totp_enrolment.secret,
    );
    expect(server.logs.text()).not.toContain(created.body.totp_enrolment.secret);
  });

  it('refuses each bad input with the field named, and stores nothing', async () => {
    const before = await userCount();
    const cases: [unknown, string, RegExp][] = [
      [{ name: 'Alice', password: PASSWORD }, 'name', /lowercase letters/],
      [{ name: '-x', password: PASSWORD }, 'name', /starting with a letter or digit/],
      [{ name: 'a'.repeat(65), password: PASSWORD }, 'name', /1 to 64/],
      [{ name: 'has space', password: PASSWORD }, 'name', /lowercase/],
      [{ name: 'short', password: 'tooshort' }, 'password', /at least 12 characters/],
      [{ name: 'long', password: 'x'.repeat(1025) }, 'password', /at most 1024/],
      [{ name: 'samename1234', password: 'SameName1234' }, 'password', /must not be the user name/],
      [{ name: 'role', password: PASSWORD, role: 'admin' }, 'role', /expected read or write/],
      [{ name: 'totp', password: PASSWORD, totp: 'yes' }, 'totp', /expected true or false/],
      [{ name: 'extra', password: PASSWORD, password_hash: 'scrypt$1' }, '', /password_hash/],
      [{ name: 'nopassword' }, 'password', /expected a password/],
    ];
    for (const [body, path, message] of cases) {
      const response = await call('POST', '/admin-users', body);
      expect(response.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(response.body.code).toBe('invalid_input');
      expect(response.body.message).toMatch(message);
      if (path) expect(response.body.details.map((d: { path: string }) => d.path)).toContain(path);
    }
    expect(await userCount()).toBe(before);
  });

  it('refuses a name already taken with 409 and keeps the first user', async () => {
    await call('POST', '/admin-users', { name: 'taken', password: PASSWORD, role: 'write' });
    const again = await call('POST', '/admin-users', { name: 'taken', password: 'another long password' });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({
      code: 'admin_user_exists',
      message: 'an admin user named taken already exists',
    });
    expect((await call('GET', '/admin-users/taken')).body.role).toBe('write');
    // The first password still signs in.
    expect((await new ConsoleSession(server).signIn('taken', PASSWORD)).status).toBe(303);
  });
});

describe('read, update, delete', () => {
  it('lists in name order and shows one', async () => {
    await call('POST', '/admin-users', { name: 'zed', password: PASSWORD });
    const list = await call('GET', '/admin-users');
    const names = list.body.items.map((u: { name: string }) => u.name);
    expect(names).toEqual([...names].sort());
    expect(names).toContain('zed');
    expect(list.body.items.every((u: object) => !('password_hash' in u) && !('totp_secret' in u))).toBe(true);
    expect((await call('GET', '/admin-users/zed')).body.name).toBe('zed');
    const missing = await call('GET', '/admin-users/nobody');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({
      code: 'admin_user_not_found',
      message: 'no admin user named nobody',
    });
    expect((await call('GET', '/admin-users/Not%20A%20Name')).status).toBe(400);
  });

  it('changes the password (the old one stops working), the role and the status, recording each', async () => {
    await call('POST', '/admin-users', { name: 'carol', password: PASSWORD, role: 'read' });
    const changed = await call('PATCH', '/admin-users/carol', {
      password: 'a brand new password',
      role: 'write',
    });
    expect(changed.status).toBe(200);
    expect(changed.body.role).toBe('write');
    expect((await new ConsoleSession(server).signIn('carol', PASSWORD)).status).toBe(401);
    expect((await new ConsoleSession(server).signIn('carol', 'a brand new password')).status).toBe(303);
    const disabled = await call('PATCH', '/admin-users/carol', { status: 'disabled' });
    expect(disabled.body).toMatchObject({ status: 'disabled', disabled_at: expect.any(String) });
    expect((await new ConsoleSession(server).signIn('carol', 'a brand new password')).status).toBe(401);
    const events = await server.app.db
      .selectFrom('audit_event')
      .select(['action', 'before', 'after'])
      .where('target_id', '=', 'carol')
      .orderBy('id')
      .execute();
    expect(events.map((e) => e.action)).toEqual([
      'admin_user.create',
      'admin_user.update',
      'admin_user.update',
    ]);
    expect(events[1]?.after).toMatchObject({ role: 'write', password: '[changed]' });
    expect(JSON.stringify(events)).not.toContain('a brand new password');
  });

  it('records nothing for a change that changes nothing, and refuses an empty or bad change', async () => {
    await call('POST', '/admin-users', { name: 'dave', password: PASSWORD, role: 'read' });
    const same = await call('PATCH', '/admin-users/dave', { role: 'read', status: 'enabled' });
    expect(same.status).toBe(200);
    const updates = await server.app.db
      .selectFrom('audit_event')
      .select('id')
      .where('target_id', '=', 'dave')
      .where('action', '=', 'admin_user.update')
      .execute();
    expect(updates).toHaveLength(0);
    for (const [body, message] of [
      [{}, /nothing to update/],
      [{ totp: 'maybe' }, /expected enroll or remove/],
      [{ status: 'gone' }, /expected enabled or disabled/],
      [{ password: 'short' }, /at least 12/],
    ] as const) {
      const response = await call('PATCH', '/admin-users/dave', body);
      expect(response.status).toBe(400);
      expect(response.body.message).toMatch(message);
    }
    expect((await call('PATCH', '/admin-users/nobody', { role: 'write' })).status).toBe(404);
  });

  it('enrols and removes the second factor', async () => {
    await call('POST', '/admin-users', { name: 'erin', password: PASSWORD });
    const enrolled = await call('PATCH', '/admin-users/erin', { totp: 'enroll' });
    expect(enrolled.body.totp).toBe(true);
    expect(enrolled.body.totp_enrolment.secret).toMatch(/^[A-Z2-7]{32}$/);
    expect((await new ConsoleSession(server).signIn('erin', PASSWORD)).status).toBe(401);
    const removed = await call('PATCH', '/admin-users/erin', { totp: 'remove' });
    expect(removed.body).toMatchObject({ totp: false });
    expect(removed.body).not.toHaveProperty('totp_enrolment');
    expect((await new ConsoleSession(server).signIn('erin', PASSWORD)).status).toBe(303);
  });

  it('deletes a user and keeps its past changes in the trail', async () => {
    await call('POST', '/admin-users', { name: 'frank', password: PASSWORD });
    expect((await call('DELETE', '/admin-users/frank')).status).toBe(204);
    expect((await call('DELETE', '/admin-users/frank')).status).toBe(404);
    expect((await call('GET', '/admin-users/frank')).status).toBe(404);
    const trail = await call('GET', '/audit-events', undefined);
    expect(trail.status).toBe(200);
    const actions = await server.app.db
      .selectFrom('audit_event')
      .select('action')
      .where('target_id', '=', 'frank')
      .orderBy('id')
      .execute();
    expect(actions.map((a) => a.action)).toEqual(['admin_user.create', 'admin_user.delete']);
  });
});
