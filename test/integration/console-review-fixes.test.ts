import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { getClient } from '../../src/clients/client.service.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { signedIn, type ConsoleResponse, type ConsoleSession } from '../support/console.ts';
import { decode, errorSummary, fieldError, inputValue, squash, tags, versionOf } from '../support/pages.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * The console pages after a security review: rights on the admin API cannot grow through the console, an admin
 * client's credentials and DPoP binding are left to the CLI and the admin API, a form shown before someone else's
 * change cannot undo it, rights on resources a form does not show are kept, and a page leading to a change is for
 * the write role only.
 */

const API = 'https://api.example.com';
const BILLING = 'https://billing.example.com';

let server: TestServer;
let alice: ConsoleSession;
let bob: ConsoleSession;
let reader: ConsoleSession;
let adminAudience: string;
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer();
  adminAudience = `${server.url}/admin`;
  await server.createResource({ identifier: API, name: 'Orders API', scopes: ['read', 'write'] });
  await server.createResource({ identifier: BILLING, scopes: ['invoices:read'] });
  alice = await signedIn(server, 'alice', 'write');
  bob = await signedIn(server, 'bob', 'write');
  reader = await signedIn(server, 'rob', 'read');
  key = await generateDpopKey();
});
afterAll(() => server.close());

// ---------------------------------------------------------------------------------------------------------------
// Reading the pages

/** The values of the checkboxes named `name`, and whether each is ticked. */
const checkboxes = (page: string, name: string) =>
  tags(page, 'input')
    .filter((a) => a.type === 'checkbox' && a.name === name)
    .map((a) => [a.value, a.checked === true] as const);

const formActions = (page: string) => tags(page, 'form').map((a) => a.action);

// ---------------------------------------------------------------------------------------------------------------
// The server side

const clientNow = (id: string) => getClient(server.app.admin, id);
const secretRows = (id: string) =>
  server.app.db.selectFrom('client_secret').selectAll().where('client_id', '=', id).orderBy('id').execute();
const resourceRow = (identifier: string) =>
  server.app.db
    .selectFrom('resource')
    .selectAll()
    .where('identifier', '=', identifier)
    .executeTakeFirstOrThrow();

async function secretClient(
  name: string,
  options: {
    grants?: { resource: string; scopes: string[] }[];
    introspects?: string[];
    bearer_allowed?: boolean;
    dpop_jkts?: string[];
  } = {},
) {
  const created = await server.createClient({
    name,
    grants: [{ resource: API, scopes: ['read'] }],
    ...options,
  });
  return { id: created.client.id, secret: created.clientSecret ?? '' };
}

/** Opens a client's page and posts its edit form with the version shown and these fields. */
async function saveClient(
  session: ConsoleSession,
  id: string,
  fields: Record<string, string | string[] | undefined>,
): Promise<ConsoleResponse> {
  const page = await session.get(`/console/clients/${id}`);
  expect(page.status).toBe(200);
  return session.post(`/console/clients/${id}`, { _version: versionOf(page.text), ...fields });
}

// ---------------------------------------------------------------------------------------------------------------

describe('rights on the admin API', () => {
  it('offers only the admin scopes a client holds, and refuses adding admin:write (400, nothing changed)', async () => {
    const { id } = await secretClient('admin-reader', {
      grants: [
        { resource: API, scopes: ['read'] },
        { resource: adminAudience, scopes: ['admin:read'] },
      ],
    });
    const page = await alice.get(`/console/clients/${id}`);
    expect(checkboxes(page.text, `grant:${adminAudience}`)).toEqual([['admin:read', true]]);
    expect(checkboxes(page.text, 'introspects').map(([value]) => value)).not.toContain(adminAudience);

    const before = await clientNow(id);
    const answer = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(page.text),
      name: 'admin-reader',
      [`grant:${API}`]: 'read',
      [`grant:${adminAudience}`]: ['admin:read', 'admin:write'],
    });
    expect(answer.status).toBe(400);
    expect(fieldError(answer.text, `grant:${adminAudience}`)).toContain(
      'admin:write: not held by this client',
    );
    expect(errorSummary(answer.text)?.links).toEqual([`field-grant:${adminAudience}`]);
    expect(answer.text).toContain(`id="field-grant:${adminAudience}"`);
    // The form shown again still offers only what the client holds.
    expect(checkboxes(answer.text, `grant:${adminAudience}`).map(([value]) => value)).toEqual(['admin:read']);
    expect(await clientNow(id)).toEqual(before);
  });

  it('lets a write user remove admin rights, and never give them back', async () => {
    const { id } = await secretClient('admin-demoted', {
      grants: [
        { resource: API, scopes: ['read'] },
        { resource: adminAudience, scopes: ['admin:read', 'admin:write'] },
      ],
    });
    const kept = await saveClient(alice, id, {
      name: 'admin-demoted',
      [`grant:${API}`]: 'read',
      [`grant:${adminAudience}`]: 'admin:read',
    });
    expect(kept.status).toBe(303);
    expect((await clientNow(id)).grants).toEqual(
      expect.arrayContaining([{ resource: adminAudience, scopes: ['admin:read'] }]),
    );

    const removed = await saveClient(alice, id, { name: 'admin-demoted', [`grant:${API}`]: 'read' });
    expect(removed.status).toBe(303);
    const demoted = await clientNow(id);
    expect(demoted.grants).toEqual([{ resource: API, scopes: ['read'] }]);

    const page = await alice.get(`/console/clients/${id}`);
    expect(checkboxes(page.text, `grant:${adminAudience}`)).toEqual([]);
    const regained = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(page.text),
      name: 'admin-demoted',
      [`grant:${API}`]: 'read',
      [`grant:${adminAudience}`]: 'admin:read',
    });
    expect(regained.status).toBe(400);
    expect(fieldError(regained.text, 'grants')).toContain("is the admin API's own resource");
    expect(await clientNow(id)).toEqual(demoted);
  });

  it('never offers introspecting the admin API, and refuses it when posted', async () => {
    const { id } = await secretClient('would-introspect');
    const page = await alice.get(`/console/clients/${id}`);
    expect(checkboxes(page.text, 'introspects').map(([value]) => value)).toEqual([API, BILLING]);
    const before = await clientNow(id);
    const answer = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(page.text),
      name: 'would-introspect',
      [`grant:${API}`]: 'read',
      introspects: adminAudience,
    });
    expect(answer.status).toBe(400);
    expect(fieldError(answer.text, 'introspects')).toContain("is the admin API's own resource");
    expect(await clientNow(id)).toEqual(before);
  });

  it('does not rotate the secret of a client with admin rights: no form, and 403 with the CLI command', async () => {
    const { id, secret } = await secretClient('admin-with-secret', {
      grants: [
        { resource: API, scopes: ['read'] },
        { resource: adminAudience, scopes: ['admin:read'] },
      ],
    });
    const page = await alice.get(`/console/clients/${id}`);
    expect(formActions(page.text)).not.toContain(`/console/clients/${id}/rotate-secret`);
    expect(squash(page.text)).toContain(
      `its secret is an admin API credential: the console never issues or shows one. Rotate it with the mayfly ` +
        `CLI, mayfly client rotate-secret ${id}, or with the admin API.`,
    );

    const secretsBefore = await secretRows(id);
    for (const overlap of ['', '0']) {
      const refused = await alice.post(`/console/clients/${id}/rotate-secret`, {
        previous_secret_expires_in: overlap,
      });
      expect(refused.status).toBe(403);
      expect(refused.text).not.toContain('id="client-secret"');
      expect(refused.text).not.toContain('mfy_');
      const summary = errorSummary(refused.text)?.text ?? '';
      expect(summary).toContain('Not rotated: admin-with-secret holds rights on the admin API');
      expect(summary).toContain(`mayfly client rotate-secret ${id}`);
    }
    expect(await secretRows(id)).toEqual(secretsBefore);
    // The secret it had still works, and no other does.
    const issued = await requestToken(server.url, { clientId: id, secret, resource: API, key });
    expect(issued.status).toBe(200);
  });

  it('counts introspecting the admin API as a right on it: no rotation either', async () => {
    const { id } = await secretClient('admin-introspector', { introspects: [adminAudience] });
    const page = await alice.get(`/console/clients/${id}`);
    // Held, so shown to be kept or removed.
    expect(checkboxes(page.text, 'introspects')).toContainEqual([adminAudience, true]);
    const secretsBefore = await secretRows(id);
    const refused = await alice.post(`/console/clients/${id}/rotate-secret`, {});
    expect(refused.status).toBe(403);
    expect(await secretRows(id)).toEqual(secretsBefore);

    const removed = await saveClient(alice, id, { name: 'admin-introspector', [`grant:${API}`]: 'read' });
    expect(removed.status).toBe(303);
    expect((await clientNow(id)).introspects).toEqual([]);
    // No right on the admin API any more: an ordinary client, whose secret the console rotates.
    const rotated = await alice.post(`/console/clients/${id}/rotate-secret`, {});
    expect(rotated.status).toBe(201);
  });

  it('refuses allowing Bearer tokens or changing the pinned keys of an admin client, changing nothing', async () => {
    const { id } = await secretClient('admin-bound', {
      grants: [{ resource: adminAudience, scopes: ['admin:read'] }],
      dpop_jkts: [key.thumbprint],
    });
    const page = await alice.get(`/console/clients/${id}`);
    expect(tags(page.text, 'input').some((a) => a.name === 'bearer_allowed')).toBe(false);
    expect(tags(page.text, 'textarea').some((a) => a.name === 'dpop_jkts')).toBe(false);
    const pinned = /<div class="field" id="field-dpop_jkts">([\s\S]*?)<\/div>/.exec(page.text)?.[1] ?? '';
    expect(squash(pinned)).toContain(`Pinned DPoP keys ${key.thumbprint}`);
    expect(squash(pinned)).toContain('changed with the admin API or the mayfly CLI, not here');

    const before = await clientNow(id);
    const cases: [Record<string, string>, string, string][] = [
      [{ bearer_allowed: 'on' }, 'bearer_allowed', 'Bearer tokens are not allowed for it here'],
      [{ dpop_jkts: '' }, 'dpop_jkts', 'its pinned DPoP keys are changed with the admin API'],
      [{ dpop_jkts: 'B'.repeat(43) }, 'dpop_jkts', 'its pinned DPoP keys are changed with the admin API'],
    ];
    for (const [fields, field, message] of cases) {
      const answer = await alice.post(`/console/clients/${id}`, {
        _version: versionOf(page.text),
        name: 'admin-bound',
        [`grant:${adminAudience}`]: 'admin:read',
        ...fields,
      });
      expect(answer.status, field).toBe(400);
      expect(fieldError(answer.text, field)).toContain(message);
      expect(errorSummary(answer.text)?.links).toContain(`field-${field}`);
      expect(answer.text).toContain(`id="field-${field}"`);
      expect(await clientNow(id)).toEqual(before);
    }

    // A rename leaves the pinned keys as they are; disabling still works.
    const renamed = await saveClient(alice, id, {
      name: 'admin-bound-renamed',
      [`grant:${adminAudience}`]: 'admin:read',
    });
    expect(renamed.status).toBe(303);
    expect(await clientNow(id)).toMatchObject({
      name: 'admin-bound-renamed',
      dpop_jkts: [key.thumbprint],
      bearer_allowed: false,
    });
    const disabled = await alice.post(`/console/clients/${id}/disable`, {});
    expect(disabled.status).toBe(303);
    expect((await clientNow(id)).status).toBe('disabled');
  });

  it('lets an admin client lose its Bearer exception, never regain it', async () => {
    const { id } = await secretClient('admin-bearer', {
      grants: [{ resource: adminAudience, scopes: ['admin:read'] }],
      bearer_allowed: true,
    });
    const page = await alice.get(`/console/clients/${id}`);
    expect(checkboxes(page.text, 'bearer_allowed')).toEqual([['on', true]]);
    const tightened = await saveClient(alice, id, {
      name: 'admin-bearer',
      [`grant:${adminAudience}`]: 'admin:read',
    });
    expect(tightened.status).toBe(303);
    expect((await clientNow(id)).bearer_allowed).toBe(false);

    const loosened = await saveClient(alice, id, {
      name: 'admin-bearer',
      [`grant:${adminAudience}`]: 'admin:read',
      bearer_allowed: 'on',
    });
    expect(loosened.status).toBe(400);
    expect(fieldError(loosened.text, 'bearer_allowed')).toContain(
      'Bearer tokens are not allowed for it here',
    );
    expect((await clientNow(id)).bearer_allowed).toBe(false);
  });
});

describe('a form shown before someone else saved', () => {
  it('does not undo their change: 409, the current values shown, and saving again keeps both changes', async () => {
    const { id } = await secretClient('shared-client');
    const alicesForm = await alice.get(`/console/clients/${id}`);
    const shownVersion = versionOf(alicesForm.text);
    const versionShown = (await clientNow(id)).updated_at;

    // Bob adds a grant meanwhile.
    const bobs = await saveClient(bob, id, {
      name: 'shared-client',
      [`grant:${API}`]: 'read',
      [`grant:${BILLING}`]: 'invoices:read',
    });
    expect(bobs.status).toBe(303);
    const afterBob = await clientNow(id);

    // Alice saves a rename from the form she opened before.
    const stale = await alice.post(`/console/clients/${id}`, {
      _version: shownVersion,
      name: 'renamed-by-alice',
      [`grant:${API}`]: 'read',
    });
    expect(stale.status).toBe(409);
    expect(errorSummary(stale.text)?.text).toBe(
      'There is a problem This client was changed by someone else since you opened this page: review the ' +
        'current values below and save again.',
    );
    expect(inputValue(stale.text, 'name')).toBe('shared-client');
    expect(checkboxes(stale.text, `grant:${BILLING}`)).toEqual([['invoices:read', true]]);
    expect(await clientNow(id)).toEqual(afterBob);
    expect(shownVersion).toBe(versionShown);
    expect(versionOf(stale.text)).toBe(afterBob.updated_at);

    const again = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(stale.text),
      name: 'renamed-by-alice',
      [`grant:${API}`]: 'read',
      [`grant:${BILLING}`]: 'invoices:read',
    });
    expect(again.status).toBe(303);
    expect(await clientNow(id)).toMatchObject({
      name: 'renamed-by-alice',
      grants: expect.arrayContaining([
        { resource: API, scopes: ['read'] },
        { resource: BILLING, scopes: ['invoices:read'] },
      ]),
    });
  });

  it('refuses a client form without a valid version (400), changing nothing', async () => {
    const { id } = await secretClient('unversioned');
    const before = await clientNow(id);
    await alice.get(`/console/clients/${id}`);
    for (const version of [
      undefined,
      '',
      'yesterday',
      '2026-13-45T99:99:99.000Z',
      [before.updated_at, 'x'],
    ]) {
      const answer = await alice.post(`/console/clients/${id}`, {
        _version: version,
        name: 'renamed',
        [`grant:${API}`]: 'read',
      });
      expect(answer.status, String(version)).toBe(400);
      expect(errorSummary(answer.text)?.text).toContain(
        'this form has no valid version (its hidden _version field is missing or malformed)',
      );
      expect(inputValue(answer.text, 'name')).toBe('unversioned');
    }
    expect(await clientNow(id)).toEqual(before);
  });

  it('does not undo a change to a resource either (409), and needs the version (400)', async () => {
    const identifier = 'https://shared-resource.example.com';
    const created = await server.createResource({
      identifier,
      name: 'Shared',
      scopes: ['s:read'],
      token_ttl: 60,
    });
    const path = `/console/resources/${created.id}`;
    const alicesForm = await alice.get(path);

    const bobs = await bob.post(path, {
      _version: versionOf((await bob.get(path)).text),
      name: 'Shared',
      scopes: 's:read s:write',
      token_ttl: '60',
      token_format: 'jwt',
    });
    expect(bobs.status).toBe(303);
    const afterBob = await resourceRow(identifier);
    expect(afterBob.scopes).toEqual(['s:read', 's:write']);

    const stale = await alice.post(path, {
      _version: versionOf(alicesForm.text),
      name: 'Renamed by Alice',
      scopes: 's:read',
      token_ttl: '60',
      token_format: 'jwt',
    });
    expect(stale.status).toBe(409);
    expect(errorSummary(stale.text)?.text).toContain(
      'This resource was changed by someone else since you opened this page: review the current values below ' +
        'and save again.',
    );
    expect(inputValue(stale.text, 'name')).toBe('Shared');
    expect(
      decode(/<textarea[^>]*name="scopes"[^>]*>([\s\S]*?)<\/textarea>/.exec(stale.text)?.[1] ?? '').trim(),
    ).toBe('s:read\ns:write');
    expect(await resourceRow(identifier)).toEqual(afterBob);
    expect(versionOf(alicesForm.text)).toBe(created.updated_at);

    for (const version of [undefined, 'not-a-time']) {
      const refused = await alice.post(path, {
        _version: version,
        name: 'Renamed by Alice',
        scopes: 's:read s:write',
        token_ttl: '60',
        token_format: 'jwt',
      });
      expect(refused.status).toBe(400);
      expect(errorSummary(refused.text)?.text).toContain('its hidden _version field is missing or malformed');
    }
    expect(await resourceRow(identifier)).toEqual(afterBob);

    const saved = await alice.post(path, {
      _version: versionOf(stale.text),
      name: 'Renamed by Alice',
      scopes: 's:read s:write',
      token_ttl: '60',
      token_format: 'jwt',
    });
    expect(saved.status).toBe(303);
    expect(await resourceRow(identifier)).toMatchObject({
      name: 'Renamed by Alice',
      scopes: ['s:read', 's:write'],
    });
  });
});

describe('answers shown once', () => {
  it('refuses the registration form sent again (a reloaded secret page): one client, one secret', async () => {
    const form = await alice.get('/console/clients/new');
    const once = /name="_once" value="([\w-]{43})"/.exec(form.text)?.[1];
    expect(once).toBeDefined();
    const fields = {
      _once: once,
      name: 'reloaded',
      auth_method: 'client_secret_basic',
      [`grant:${API}`]: 'read',
    };
    const first = await alice.post('/console/clients/new', fields);
    expect(first.status).toBe(201);
    const again = await alice.post('/console/clients/new', fields);
    expect(again.status).toBe(409);
    expect(again.text).toContain('this form was already sent, and its answer is shown only once');
    expect(again.text).not.toMatch(/id="client-secret"/);
    const named = await server.app.db
      .selectFrom('client')
      .select('id')
      .where('name', '=', 'reloaded')
      .execute();
    expect(named).toHaveLength(1);
  });

  it('refuses the rotation form sent again: the secret just shown keeps working', async () => {
    const created = await server.createClient({
      name: 'rotated once',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const page = await alice.get(`/console/clients/${created.client.client_id}`);
    const once = /action="[^"]*\/rotate-secret"[\s\S]*?name="_once" value="([\w-]{43})"/.exec(page.text)?.[1];
    expect(once).toBeDefined();
    const path = `/console/clients/${created.client.client_id}/rotate-secret`;
    const first = await alice.post(path, { _once: once, previous_secret_expires_in: '0' });
    expect(first.status).toBe(201);
    const secret = /<code id="client-secret"[^>]*>([^<]+)<\/code>/.exec(first.text)?.[1] ?? '';
    expect((await alice.post(path, { _once: once, previous_secret_expires_in: '0' })).status).toBe(409);
    const token = await requestToken(server.url, {
      clientId: created.client.client_id,
      secret,
      resource: API,
      key,
    });
    expect(token.status).toBe(200);
  });
});

describe('pages for the write role only', () => {
  it('answers 403 to a read user asking for the revoke-key page, which a write user gets', async () => {
    const kid = (await server.app.keys.list()).find((k) => k.phase === 'active')?.kid ?? '';
    expect(kid).not.toBe('');
    const refused = await reader.get(`/console/keys/${encodeURIComponent(kid)}/revoke`);
    expect(refused.status).toBe(403);
    expect(squash(refused.text)).toContain('your role is read only');
    expect(refused.text).not.toContain('Revoke key');
    expect(formActions(refused.text)).not.toContain(`/console/keys/${encodeURIComponent(kid)}/revoke`);

    const confirm = await alice.get(`/console/keys/${encodeURIComponent(kid)}/revoke`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain(`<h1>Revoke key ${kid}?</h1>`);
    expect(formActions(confirm.text)).toContain(`/console/keys/${encodeURIComponent(kid)}/revoke`);
  });
});

/** Last: the resources added here outnumber what the client forms load, for every later request. */
describe('more resources than a client form loads', () => {
  /** Resources named to sort before every other one: the form loads these and none of the others. */
  const BULK = 25 * 200;
  let client: { id: string; secret: string };

  beforeAll(async () => {
    client = await secretClient('beyond-the-form', {
      grants: [{ resource: API, scopes: ['read', 'write'] }],
      introspects: [BILLING],
    });
    const rows = Array.from({ length: BULK }, (_, n) => ({
      identifier: `http://0-bulk-${String(n).padStart(5, '0')}.example`,
      name: null,
      scopes: ['bulk:read'],
      token_ttl: 300,
      token_format: 'jwt' as const,
    }));
    for (let start = 0; start < rows.length; start += 500) {
      await server.app.db
        .insertInto('resource')
        .values(rows.slice(start, start + 500))
        .execute();
    }
  }, 60_000);

  it('keeps the grants and introspection rights the form does not show when saving it', async () => {
    const page = await alice.get(`/console/clients/${client.id}`);
    expect(page.status).toBe(200);
    // The form shows the first resources only, not the ones this client holds rights on.
    expect(checkboxes(page.text, `grant:${API}`)).toEqual([]);
    expect(checkboxes(page.text, 'introspects').map(([value]) => value)).not.toContain(BILLING);
    const saved = await alice.post(`/console/clients/${client.id}`, {
      _version: versionOf(page.text),
      name: 'beyond-the-form-renamed',
      'grant:http://0-bulk-00001.example': 'bulk:read',
    });
    expect(saved.status).toBe(303);
    const after = await clientNow(client.id);
    expect(after.name).toBe('beyond-the-form-renamed');
    expect(after.grants).toEqual(
      expect.arrayContaining([
        { resource: API, scopes: ['read', 'write'] },
        { resource: 'http://0-bulk-00001.example', scopes: ['bulk:read'] },
      ]),
    );
    expect(after.grants).toHaveLength(2);
    expect(after.introspects).toEqual([BILLING]);
    // The form said so.
    const note = /<div class="warning" role="note">\s*<p>\s*This form lists only([\s\S]*?)<\/div>/.exec(
      page.text,
    );
    expect(squash(note?.[0] ?? '')).toContain(`grant on ${API}: read write`);
    expect(squash(note?.[0] ?? '')).toContain(`introspects ${BILLING}`);
    // The grant it kept still obtains tokens.
    const issued = await requestToken(server.url, {
      clientId: client.id,
      secret: client.secret,
      resource: API,
      key,
    });
    expect(issued.status).toBe(200);
  }, 60_000);

  it('still refuses rights on the admin API when its resource is past the loaded ones', async () => {
    const registered = await alice.post('/console/clients/new', {
      name: 'sneaky',
      auth_method: 'client_secret_basic',
      [`grant:${adminAudience}`]: ['admin:read', 'admin:write'],
    });
    expect(registered.status).toBe(400);
    expect(fieldError(registered.text, 'grants')).toContain("is the admin API's own resource");
    expect(registered.text).not.toContain('id="client-secret"');
    const sneaky = await server.app.db
      .selectFrom('client')
      .select('id')
      .where('name', '=', 'sneaky')
      .execute();
    expect(sneaky).toEqual([]);

    const before = await clientNow(client.id);
    const page = await alice.get(`/console/clients/${client.id}`);
    const escalated = await alice.post(`/console/clients/${client.id}`, {
      _version: versionOf(page.text),
      name: before.name,
      [`grant:${adminAudience}`]: 'admin:write',
    });
    expect(escalated.status).toBe(400);
    expect(fieldError(escalated.text, 'grants')).toContain("is the admin API's own resource");
    expect(await clientNow(client.id)).toEqual(before);
  }, 60_000);

  it('still recognises an admin client whose admin rights are past the loaded resources', async () => {
    const { id } = await secretClient('far-admin', {
      grants: [{ resource: adminAudience, scopes: ['admin:read'] }],
    });
    const page = await alice.get(`/console/clients/${id}`);
    expect(formActions(page.text)).not.toContain(`/console/clients/${id}/rotate-secret`);
    const secretsBefore = await secretRows(id);
    const refused = await alice.post(`/console/clients/${id}/rotate-secret`, {});
    expect(refused.status).toBe(403);
    expect(await secretRows(id)).toEqual(secretsBefore);

    const before = await clientNow(id);
    const escalated = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(page.text),
      name: 'far-admin',
      [`grant:${adminAudience}`]: ['admin:read', 'admin:write'],
    });
    expect(escalated.status).toBe(400);
    expect(errorSummary(escalated.text)?.text).toContain('admin:write: not held by this client');
    const renamed = await alice.post(`/console/clients/${id}`, {
      _version: versionOf(page.text),
      name: 'far-admin-renamed',
    });
    expect(renamed.status).toBe(303);
    // Its admin right was not on the form: kept as it was.
    expect(await clientNow(id)).toMatchObject({
      name: 'far-admin-renamed',
      grants: [{ resource: adminAudience, scopes: ['admin:read'] }],
    });
    expect(before.grants).toEqual([{ resource: adminAudience, scopes: ['admin:read'] }]);
  }, 60_000);
});
