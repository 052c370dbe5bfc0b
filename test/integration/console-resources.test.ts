import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { signedIn, type ConsoleResponse, type ConsoleSession } from '../support/console.ts';
import { decode, fieldError, fieldsInError, inputValue, versionOf } from '../support/pages.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The resource pages of the console, through their forms over HTTP, as a browser without scripts uses them. */

let server: TestServer;
let writer: ConsoleSession;
let reader: ConsoleSession;

beforeAll(async () => {
  server = await startTestServer();
  writer = await signedIn(server, 'rita', 'write');
  reader = await signedIn(server, 'reed', 'read');
});
afterAll(() => server.close());

const unique = (label: string) => `https://${label}-${randomBytes(4).toString('hex')}.example.com`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The problems listed in the error summary at the top of the form, as [field link, message]. */
function summary(page: ConsoleResponse): [string, string][] {
  const block = /<div class="error-summary"[\s\S]*?<\/div>/.exec(page.text)?.[0] ?? '';
  return [...block.matchAll(/<li>(?:<a href="#field-([a-z_]+)">)?([^<]*)/g)].map((match) => [
    match[1] ?? '',
    decode(match[2]!),
  ]);
}

function textareaValue(page: ConsoleResponse, name: string): string | undefined {
  const match = new RegExp(`<textarea\\s+id="field-${name}"[^>]*>\\n([\\s\\S]*?)</textarea>`).exec(page.text);
  return match?.[1] === undefined ? undefined : decode(match[1]);
}

function selectedOption(page: ConsoleResponse, name: string): string | undefined {
  const block = new RegExp(`<select\\s+id="field-${name}"[\\s\\S]*?</select>`).exec(page.text)?.[0] ?? '';
  return /<option value="([^"]*)"\s+selected>/.exec(block)?.[1];
}

const db = () => server.app.admin.db;
const findRow = (identifier: string) =>
  db().selectFrom('resource').selectAll().where('identifier', '=', identifier).executeTakeFirst();
const countResources = async () =>
  Number((await db().selectFrom('resource').select(db().fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
const reservedRow = () =>
  db().selectFrom('resource').selectAll().where('reserved', '=', true).executeTakeFirstOrThrow();

interface Fields {
  identifier?: string;
  name?: string;
  scopes?: string;
  token_ttl?: string;
  token_format?: string;
}

async function createThroughForm(fields: Fields, session = writer): Promise<ConsoleResponse> {
  await session.get('/console/resources/new');
  return session.post('/console/resources/new', {
    identifier: fields.identifier ?? unique('api'),
    name: fields.name ?? '',
    scopes: fields.scopes ?? 'items:read',
    token_ttl: fields.token_ttl ?? '',
    token_format: fields.token_format ?? 'jwt',
  });
}

/** A resource made through the form; its id is read from the redirect. */
async function created(fields: Fields = {}): Promise<{ id: string; identifier: string }> {
  const identifier = fields.identifier ?? unique('made');
  const response = await createThroughForm({ ...fields, identifier });
  expect(response.status, response.text).toBe(303);
  const id = /^\/console\/resources\/(.+)$/.exec(response.location ?? '')?.[1] ?? '';
  expect(id).toMatch(UUID);
  return { id, identifier };
}

async function editThroughForm(id: string, fields: Fields): Promise<ConsoleResponse> {
  const page = await writer.get(`/console/resources/${id}`);
  expect(page.status).toBe(200);
  return writer.post(`/console/resources/${id}`, {
    _version: versionOf(page),
    name: fields.name ?? inputValue(page, 'name'),
    scopes: fields.scopes ?? textareaValue(page, 'scopes'),
    token_ttl: fields.token_ttl ?? inputValue(page, 'token_ttl'),
    token_format: fields.token_format ?? selectedOption(page, 'token_format'),
  });
}

describe('the resource list', () => {
  it('lists resources with links to each, and a create button for the write role', async () => {
    const { id, identifier } = await created({ name: 'Orders API', scopes: 'orders:read orders:write' });
    const page = await writer.get('/console/resources');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Resources</h1>');
    expect(page.text).toContain(`<a href="/console/resources/${id}">Orders API</a>`);
    expect(page.text).toContain(`<code>${identifier}</code>`);
    expect(page.text).toContain('<code>orders:read</code> <code>orders:write</code>');
    expect(page.text).toMatch(/<th scope="col">Identifier \(audience\)<\/th>/);
    expect(page.text).toContain('href="/console/resources/new"');
    // The reserved admin resource is marked as such.
    expect(page.text).toContain('<span class="badge">Reserved</span>');
  });

  it('filters by identifier, and says what to do when nothing matches', async () => {
    const { identifier } = await created({ name: 'Filtered' });
    const found = await writer.get(`/console/resources?identifier=${encodeURIComponent(identifier)}`);
    expect(found.status).toBe(200);
    expect(found.text).toContain('>Filtered</a>');
    expect(found.text).not.toContain('Mayfly admin API');
    expect(inputValue(found, 'identifier')).toBe(identifier);

    const missing = unique('missing');
    const none = await writer.get(`/console/resources?identifier=${encodeURIComponent(missing)}`);
    expect(none.status).toBe(200);
    expect(none.text).toContain(`No resource has the identifier <code>${missing}</code>`);
    expect(none.text).toContain('<a href="/console/resources/new">create a resource</a>');
    const forReader = await reader.get(`/console/resources?identifier=${encodeURIComponent(missing)}`);
    expect(forReader.text).toContain('No resource has the identifier');
    expect(forReader.text).not.toContain('/console/resources/new');
  });

  it('answers 400 with the message next to the filter for an identifier that is not a URI', async () => {
    const page = await writer.get('/console/resources?identifier=not%20a%20uri');
    expect(page.status).toBe(400);
    expect(fieldError(page, 'identifier')).toMatch(/a URI has no spaces/);
    expect(summary(page)[0]?.[0]).toBe('identifier');
    expect(inputValue(page, 'identifier')).toBe('not a uri');
  });

  it('pages with the next_cursor through a Next page link that keeps the filters', async () => {
    await created();
    await created();
    const first = await writer.get('/console/resources?limit=1');
    expect(first.status).toBe(200);
    const next = /<a href="([^"]+)" rel="next">Next page<\/a>/.exec(first.text)?.[1];
    expect(next).toBeDefined();
    const nextUrl = decode(next!);
    expect(nextUrl).toMatch(/^\/console\/resources\?limit=1&cursor=/);
    const second = await writer.get(nextUrl);
    expect(second.status).toBe(200);
    const firstLink = /<tbody>[\s\S]*?<a href="(\/console\/resources\/[^"]+)"/.exec(first.text)?.[1];
    const secondLink = /<tbody>[\s\S]*?<a href="(\/console\/resources\/[^"]+)"/.exec(second.text)?.[1];
    expect(firstLink).toBeDefined();
    expect(secondLink).toBeDefined();
    expect(secondLink).not.toBe(firstLink);
    expect(second.text).toContain('<a href="/console/resources?limit=1">First page</a>');

    const stale = await writer.get('/console/resources?cursor=garbage');
    expect(stale.status).toBe(400);
    expect(summary(stale)).toEqual([['', 'this page link is out of date: start again from the first page']]);
  });
});

describe('creating a resource', () => {
  it('creates it from the form and shows it with a notice; the audit trail names the console user', async () => {
    const identifier = unique('create');
    const response = await createThroughForm({
      identifier,
      name: '  Billing  ',
      scopes: 'billing:read, billing:write\ninvoices:send',
      token_ttl: '120',
      token_format: 'opaque',
    });
    expect(response.status).toBe(303);
    const row = await findRow(identifier);
    expect(row).toMatchObject({
      name: 'Billing',
      scopes: ['billing:read', 'billing:write', 'invoices:send'],
      token_ttl: 120,
      token_format: 'opaque',
      reserved: false,
    });
    expect(response.location).toBe(`/console/resources/${row!.id}`);

    const page = await writer.get(response.location!);
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Billing</h1>');
    expect(page.text).toContain(`<p class="notice" role="status">Resource ${identifier} created.</p>`);
    expect(page.text).toContain('<dd>120 seconds</dd>');
    expect(page.text).toContain('<dd>Opaque</dd>');
    expect(page.text).toContain('<li><code>invoices:send</code></li>');
    // The notice is shown once.
    expect((await writer.get(response.location!)).text).not.toContain('class="notice"');

    const event = await db()
      .selectFrom('audit_event')
      .selectAll()
      .where('target_id', '=', row!.id)
      .executeTakeFirstOrThrow();
    expect(event).toMatchObject({ actor: 'user:rita', action: 'resource.create' });
  });

  it('uses the default lifetime and format when left as they come', async () => {
    const identifier = unique('defaults');
    const response = await createThroughForm({ identifier, scopes: 'only' });
    expect(response.status).toBe(303);
    expect(await findRow(identifier)).toMatchObject({
      name: null,
      scopes: ['only'],
      token_ttl: server.app.admin.tokens.defaultTtl,
      token_format: 'jwt',
    });
  });

  it('shows a labelled form with every field, its hints and the CSRF token', async () => {
    const page = await writer.get('/console/resources/new');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Create a resource</h1>');
    for (const name of ['identifier', 'name', 'scopes', 'token_ttl', 'token_format']) {
      expect(page.text).toContain(`<label for="field-${name}">`);
      expect(page.text).toContain(`id="field-${name}"`);
    }
    expect(page.text).toContain(`at most ${server.app.admin.tokens.maxTtl}`);
    expect(page.text).toMatch(/name="_csrf" value="[^"]+"/);
    expect(page.text).not.toMatch(/ style=| on[a-z]+=/);
  });

  const cases: [string, Fields, number, string, RegExp][] = [
    ['an identifier that is not a URL', { identifier: 'api.example.com' }, 400, 'identifier', /absolute URI/],
    [
      'an identifier with spaces',
      { identifier: 'https://api.example.com/a b' },
      400,
      'identifier',
      /no spaces/,
    ],
    [
      'an identifier with a fragment',
      { identifier: 'https://api.example.com/#x' },
      400,
      'identifier',
      /fragment/,
    ],
    ['empty scopes', { scopes: ' , \n ' }, 400, 'scopes', /at least one scope is required/],
    ['repeated scopes', { scopes: 'a:read a:write a:read' }, 400, 'scopes', /scopes must not repeat/],
    ['a scope with a quote', { scopes: 'fine bad"one' }, 400, 'scopes', /^“bad"one”: a scope is 1 to 128/],
    [
      'a lifetime that is not a number',
      { token_ttl: 'five minutes' },
      400,
      'token_ttl',
      /whole number of seconds/,
    ],
    ['a negative lifetime', { token_ttl: '-5' }, 400, 'token_ttl', /positive number of seconds/],
    ['a fractional lifetime', { token_ttl: '1.5' }, 400, 'token_ttl', /whole seconds/],
    ['a lifetime above the maximum', { token_ttl: '100000' }, 400, 'token_ttl', /at most \d+ seconds/],
    ['an unknown token format', { token_format: 'xml' }, 400, 'token_format', /expected jwt or opaque/],
  ];

  it.each(cases)(
    'refuses %s next to its field and keeps what was typed',
    async (_label, fields, status, name, message) => {
      const identifier = fields.identifier ?? unique('refused');
      const typed = {
        identifier,
        name: 'Kept <name>',
        scopes: fields.scopes ?? 'kept:read kept:write',
        token_ttl: fields.token_ttl ?? '60',
        token_format: fields.token_format ?? 'opaque',
      };
      const before = await countResources();
      const page = await createThroughForm(typed);
      expect(page.status).toBe(status);
      expect(page.text).toContain('<h1>Create a resource</h1>');
      expect(fieldsInError(page)).toEqual([name]);
      expect(fieldError(page, name)).toMatch(message);
      expect(summary(page)).toEqual([[name, fieldError(page, name)]]);
      expect(page.text).toMatch(new RegExp(`aria-invalid="true" aria-describedby="[^"]*error-${name}"`));
      // Nothing lost: every value comes back as typed (escaped), and nothing was stored.
      expect(inputValue(page, 'identifier')).toBe(identifier);
      expect(inputValue(page, 'name')).toBe('Kept <name>');
      expect(page.text).toContain('value="Kept &lt;name&gt;"');
      expect(textareaValue(page, 'scopes')).toBe(typed.scopes);
      expect(inputValue(page, 'token_ttl')).toBe(typed.token_ttl);
      if (name !== 'token_format') expect(selectedOption(page, 'token_format')).toBe('opaque');
      expect(await countResources()).toBe(before);
    },
  );

  it('names every problem at once, even when the lifetime is not a number', async () => {
    const page = await createThroughForm({ identifier: 'nope', scopes: '', token_ttl: 'abc' });
    expect(page.status).toBe(400);
    expect(fieldsInError(page).sort()).toEqual(['identifier', 'scopes', 'token_ttl']);
    expect(summary(page).map(([name]) => name)).toEqual(['identifier', 'scopes', 'token_ttl']);
  });

  it('refuses a duplicate identifier with 409 next to the identifier', async () => {
    const { identifier } = await created({ name: 'Original', scopes: 'x' });
    const page = await createThroughForm({ identifier, name: 'Copy', scopes: 'y z' });
    expect(page.status).toBe(409);
    expect(fieldsInError(page)).toEqual(['identifier']);
    expect(fieldError(page, 'identifier')).toBe(
      `a resource with the identifier ${identifier} already exists: choose another identifier, or edit that resource`,
    );
    expect(textareaValue(page, 'scopes')).toBe('y z');
    expect(await findRow(identifier)).toMatchObject({ name: 'Original', scopes: ['x'] });
  });

  it('refuses a post without the form token', async () => {
    const identifier = unique('forged');
    await writer.get('/console/resources/new');
    const response = await writer.post('/console/resources/new', {
      _csrf: undefined,
      identifier,
      scopes: 'a',
      token_format: 'jwt',
    });
    expect(response.status).toBe(403);
    expect(await findRow(identifier)).toBeUndefined();
  });
});

describe('one resource', () => {
  it('shows its details, the clients that depend on it, and its edit and delete controls', async () => {
    const { id, identifier } = await created({ name: 'Shown', scopes: 'a b', token_ttl: '60' });
    const { client } = await server.createClient({
      name: 'Shown consumer',
      grants: [{ resource: identifier, scopes: ['a'] }],
    });
    const page = await writer.get(`/console/resources/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Shown</h1>');
    expect(page.text).toContain(`<dt>Identifier</dt>\n          <dd><code>${identifier}</code></dd>`);
    expect(page.text).toContain(`<dd><code>${id}</code></dd>`);
    expect(page.text).toContain('<dd>60 seconds</dd>');
    expect(page.text).toContain(`<a href="/console/clients/${client.id}">Shown consumer</a>`);
    expect(page.text).toContain('granted a');
    expect(page.text).toContain(`<a href="/console/audit?target=${id}">`);
    expect(page.text).toContain(`<form method="post" action="/console/resources/${id}"`);
    expect(page.text).toContain(`href="/console/resources/${id}/delete"`);
    expect(inputValue(page, 'name')).toBe('Shown');
    expect(textareaValue(page, 'scopes')).toBe('a\nb');
    expect(inputValue(page, 'token_ttl')).toBe('60');
    expect(selectedOption(page, 'token_format')).toBe('jwt');
    // Headings in order: h1, then h2 sections.
    expect([...page.text.matchAll(/<h([1-6])/g)].map((m) => m[1])).toEqual(['1', '2', '2', '2', '2']);
  });

  it('is found by its URL-encoded identifier too', async () => {
    const { identifier } = await created({ name: 'By identifier' });
    const page = await writer.get(`/console/resources/${encodeURIComponent(identifier)}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>By identifier</h1>');
  });

  it('answers 404 for an unknown resource', async () => {
    const page = await writer.get('/console/resources/00000000-0000-4000-8000-000000000000');
    expect(page.status).toBe(404);
    expect(page.text).toContain('no resource 00000000-0000-4000-8000-000000000000');
  });

  it('escapes what it prints', async () => {
    const { id } = await created({ name: '<script>alert(1)</script>' });
    const page = await writer.get(`/console/resources/${id}`);
    expect(page.text).not.toContain('<script>alert(1)</script>');
    expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });

  it('saves changes from the edit form and records them with before and after', async () => {
    const { id, identifier } = await created({ name: 'Before', scopes: 'r:read', token_ttl: '60' });
    const response = await editThroughForm(id, {
      name: 'After',
      scopes: 'r:read r:write',
      token_ttl: '90',
      token_format: 'opaque',
    });
    expect(response.status).toBe(303);
    expect(response.location).toBe(`/console/resources/${id}`);
    expect(await findRow(identifier)).toMatchObject({
      name: 'After',
      scopes: ['r:read', 'r:write'],
      token_ttl: 90,
      token_format: 'opaque',
    });
    const page = await writer.get(`/console/resources/${id}`);
    expect(page.text).toContain(`Resource ${identifier} saved.`);
    expect(page.text).toContain('<h1>After</h1>');

    const event = await db()
      .selectFrom('audit_event')
      .selectAll()
      .where('target_id', '=', id)
      .where('action', '=', 'resource.update')
      .executeTakeFirstOrThrow();
    expect(event.actor).toBe('user:rita');
    expect(event.before).toMatchObject({ name: 'Before', token_ttl: 60 });
    expect(event.after).toMatchObject({ name: 'After', token_ttl: 90 });
  });

  it('removes the name when it is emptied', async () => {
    const { id, identifier } = await created({ name: 'Named' });
    expect((await editThroughForm(id, { name: '' })).status).toBe(303);
    expect((await findRow(identifier))?.name).toBeNull();
  });

  it('saves nothing, and records nothing, when nothing changed', async () => {
    const { id } = await created({ name: 'Same' });
    const response = await editThroughForm(id, {});
    expect(response.status).toBe(303);
    const page = await writer.get(response.location!);
    expect(page.text).toContain('Nothing to save');
    const updates = await db()
      .selectFrom('audit_event')
      .selectAll()
      .where('target_id', '=', id)
      .where('action', '=', 'resource.update')
      .execute();
    expect(updates).toHaveLength(0);
  });

  const editCases: [string, Fields, string, RegExp][] = [
    ['empty scopes', { scopes: '' }, 'scopes', /at least one scope is required/],
    ['repeated scopes', { scopes: 'e:read e:read' }, 'scopes', /scopes must not repeat/],
    ['a lifetime that is not a number', { token_ttl: '1e3' }, 'token_ttl', /whole number of seconds/],
    ['an empty lifetime', { token_ttl: '' }, 'token_ttl', /enter the token lifetime/],
    ['a negative lifetime', { token_ttl: '-1' }, 'token_ttl', /positive/],
    ['a lifetime above the maximum', { token_ttl: '100000' }, 'token_ttl', /at most \d+ seconds/],
    ['an unknown token format', { token_format: 'paseto' }, 'token_format', /expected jwt or opaque/],
  ];

  it.each(editCases)(
    'refuses %s next to its field, changing nothing',
    async (_label, fields, name, message) => {
      const { id, identifier } = await created({ name: 'Edited', scopes: 'e:read e:write', token_ttl: '60' });
      const before = await findRow(identifier);
      const page = await editThroughForm(id, { name: 'Typed name', ...fields });
      expect(page.status).toBe(400);
      expect(fieldsInError(page)).toEqual([name]);
      expect(fieldError(page, name)).toMatch(message);
      expect(summary(page)).toEqual([[name, fieldError(page, name)]]);
      expect(inputValue(page, 'name')).toBe('Typed name');
      if (fields.scopes !== undefined) expect(textareaValue(page, 'scopes')).toBe(fields.scopes);
      if (fields.token_ttl !== undefined) expect(inputValue(page, 'token_ttl')).toBe(fields.token_ttl);
      // The details still show what is stored.
      expect(page.text).toContain('<h1>Edited</h1>');
      expect(await findRow(identifier)).toEqual(before);
    },
  );

  it('refuses to remove a scope still granted to a client, naming the client next to the scopes', async () => {
    const { id, identifier } = await created({ name: 'Granted', scopes: 'g:read g:write' });
    const { client } = await server.createClient({
      name: 'Holder',
      grants: [{ resource: identifier, scopes: ['g:write'] }],
    });
    const page = await editThroughForm(id, { scopes: 'g:read', token_ttl: '30' });
    expect(page.status).toBe(409);
    expect(fieldsInError(page)).toEqual(['scopes']);
    expect(fieldError(page, 'scopes')).toBe(
      `cannot remove g:write: granted to client ${client.id}; change those grants first`,
    );
    expect(textareaValue(page, 'scopes')).toBe('g:read');
    expect(inputValue(page, 'token_ttl')).toBe('30');
    expect(await findRow(identifier)).toMatchObject({ scopes: ['g:read', 'g:write'] });
  });

  it('shows that the reserved admin resource cannot be changed, and refuses a change to it', async () => {
    const reserved = await reservedRow();
    const page = await writer.get(`/console/resources/${reserved.id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("This is the admin API's own resource: it cannot be changed or deleted");
    expect(page.text).not.toContain(`<form method="post" action="/console/resources/${reserved.id}"`);
    expect(page.text).not.toContain(`/console/resources/${reserved.id}/delete`);

    const response = await writer.post(`/console/resources/${reserved.id}`, {
      name: 'Hijacked',
      scopes: 'admin:read',
      token_ttl: '60',
      token_format: 'jwt',
    });
    expect(response.status).toBe(409);
    expect(summary(response)).toEqual([['', expect.stringContaining('cannot be changed or deleted')]]);
    expect(await reservedRow()).toEqual(reserved);

    const confirm = await writer.get(`/console/resources/${reserved.id}/delete`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain('it cannot be deleted');
    expect(confirm.text).not.toContain('<button type="submit" class="danger">');
    const deletion = await writer.post(`/console/resources/${reserved.id}/delete`, { force: 'on' });
    expect(deletion.status).toBe(409);
    expect(await reservedRow()).toEqual(reserved);
  });
});

describe('deleting a resource', () => {
  it('asks for confirmation naming the resource, then deletes it', async () => {
    const { id, identifier } = await created({ name: 'Doomed' });
    const confirm = await writer.get(`/console/resources/${id}/delete`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain(`<h1>Delete resource ${identifier}?</h1>`);
    expect(confirm.text).toContain('This cannot be undone.');
    expect(confirm.text).toContain(`<form method="post" action="/console/resources/${id}/delete"`);
    expect(confirm.text).not.toContain('name="force"');
    expect(await findRow(identifier)).toBeDefined();

    const response = await writer.post(`/console/resources/${id}/delete`, {});
    expect(response.status).toBe(303);
    expect(response.location).toBe('/console/resources');
    expect(await findRow(identifier)).toBeUndefined();
    const list = await writer.get('/console/resources');
    expect(list.text).toContain(`Resource ${identifier} deleted.`);
    expect((await writer.get(`/console/resources/${id}`)).status).toBe(404);
  });

  it('refuses while clients depend on it, naming them, and deletes only with the explicit checkbox', async () => {
    const { id, identifier } = await created({ name: 'Depended on', scopes: 'd:read' });
    const { client } = await server.createClient({
      name: 'Dependent',
      grants: [{ resource: identifier, scopes: ['d:read'] }],
    });
    const confirm = await writer.get(`/console/resources/${id}/delete`);
    expect(confirm.text).toContain(`<a href="/console/clients/${client.id}">Dependent</a>`);
    expect(confirm.text).toMatch(
      /<input\s+type="checkbox"\s+id="field-force"\s+name="force"\s+value="on"\s+aria/,
    );
    expect(confirm.text).toContain('<label for="field-force">Also delete while clients depend on it</label>');

    const refused = await writer.post(`/console/resources/${id}/delete`, {});
    expect(refused.status).toBe(409);
    expect(fieldError(refused, 'force')).toBe(
      `Not deleted: clients ${client.id} hold grants on or introspect ${identifier}; change them first, ` +
        'or tick “Also delete while clients depend on it”.',
    );
    expect(summary(refused)[0]?.[0]).toBe('force');
    // Still unticked: nothing destructive is offered by default.
    expect(refused.text).not.toMatch(/name="force"\s+value="on"\s+checked/);
    expect(await findRow(identifier)).toBeDefined();

    const forced = await writer.post(`/console/resources/${id}/delete`, { force: 'on' });
    expect(forced.status).toBe(303);
    expect(await findRow(identifier)).toBeUndefined();
    const event = await db()
      .selectFrom('audit_event')
      .selectAll()
      .where('target_id', '=', id)
      .where('action', '=', 'resource.delete')
      .executeTakeFirstOrThrow();
    expect(event.actor).toBe('user:rita');
    expect(event.before).toMatchObject({ dependents: [client.id] });
  });
});

describe('the read role', () => {
  it('sees resources without any control to change them', async () => {
    const { id } = await created({ name: 'Look only' });
    const list = await reader.get('/console/resources');
    expect(list.status).toBe(200);
    expect(list.text).toContain('>Look only</a>');
    expect(list.text).not.toContain('/console/resources/new');
    const page = await reader.get(`/console/resources/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Look only</h1>');
    expect(page.text).toContain('Your role is read only');
    expect(page.text).not.toContain('<form method="post" action="/console/resources/');
    expect(page.text).not.toContain('/delete');
    expect(page.text).not.toContain('Save changes');
    expect((await reader.get('/console/resources/new')).status).toBe(403);
    const confirm = await reader.get(`/console/resources/${id}/delete`);
    expect(confirm.status).toBe(403);
    expect(confirm.text).toContain('your role is read only');
  });

  it('gets 403 on every post, valid or not, and nothing changes', async () => {
    const { id, identifier } = await created({ name: 'Protected', scopes: 'p' });
    const before = await findRow(identifier);
    await reader.get('/console/resources');
    const newIdentifier = unique('reader');
    const posts: [string, Record<string, string>][] = [
      [
        '/console/resources/new',
        { identifier: newIdentifier, scopes: 'a', token_ttl: '', token_format: 'jwt' },
      ],
      ['/console/resources/new', { identifier: 'bad', scopes: '', token_ttl: 'abc', token_format: 'x' }],
      [`/console/resources/${id}`, { name: 'Changed', scopes: 'p', token_ttl: '60', token_format: 'jwt' }],
      [`/console/resources/${id}`, { name: 'Changed', scopes: 'p', token_ttl: 'abc', token_format: 'jwt' }],
      [`/console/resources/${id}/delete`, {}],
      [`/console/resources/${id}/delete`, { force: 'on' }],
    ];
    for (const [path, fields] of posts) {
      const response = await reader.post(path, fields);
      expect(response.status, path).toBe(403);
      expect(response.text).toContain('your role is read only');
    }
    expect(await findRow(identifier)).toEqual(before);
    expect(await findRow(newIdentifier)).toBeUndefined();
  });
});
