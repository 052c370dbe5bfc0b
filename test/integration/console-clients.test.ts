import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { getClient, setClientEnabled } from '../../src/clients/client.service.ts';
import { clientsPage } from '../../views/clients.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import {
  basicAuth,
  createClientAssertion,
  JWT_BEARER_ASSERTION,
  postToken,
  requestToken,
} from '../support/oauth.ts';
import { type ConsoleResponse, type ConsoleSession, signedIn } from '../support/console.ts';
import { decode, errorSummary, fieldError, inputValue, squash, tags } from '../support/pages.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const BILLING = 'https://billing.example.com/v1';
const UNKNOWN = 'https://unknown.example.com';

let server: TestServer;
let writer: ConsoleSession;
let reader: ConsoleSession;
let key: DpopKey;
let introspector: { id: string; secret: string };
let adminAudience: string;

beforeAll(async () => {
  server = await startTestServer();
  adminAudience = `${server.url}/admin`;
  await server.createResource({ identifier: API, name: 'Orders API', scopes: ['read', 'write'] });
  await server.createResource({ identifier: BILLING, scopes: ['invoices:read'] });
  const resourceServer = await server.createClient({ name: 'zz-orders-api-server', introspects: [API] });
  introspector = { id: resourceServer.client.id, secret: resourceServer.clientSecret ?? '' };
  writer = await signedIn(server, 'alice', 'write');
  reader = await signedIn(server, 'bob', 'read');
  // A page gives each session its form token.
  await writer.get('/console');
  await reader.get('/console');
  key = await generateDpopKey();
});
afterAll(() => server.close());

// ---------------------------------------------------------------------------------------------------------------
// Reading the pages

function isChecked(page: string, name: string, value: string): boolean {
  const input = tags(page, 'input').find((a) => a.name === name && a.value === value);
  if (!input) throw new Error(`no checkbox ${name}=${value}`);
  return input.checked === true;
}

const textareaValue = (page: string, name: string) =>
  decode(
    new RegExp(`<textarea[^>]*name="${name}"[^>]*>([\\s\\S]*?)</textarea>`).exec(page)?.[1] ?? '',
  ).trim();

const secretOf = (page: string) => /<code id="client-secret" class="secret">([^<]*)<\/code>/.exec(page)?.[1];
const clientIdOf = (page: string) => /<code id="client-id">([^<]*)<\/code>/.exec(page)?.[1];

/** Names of the clients in the list's table, in order. */
const listedNames = (page: string) =>
  [
    ...page.matchAll(
      /<th scope="row" data-label="Name">\s*<a href="\/console\/clients\/[^"]+">([^<]*)<\/a>/g,
    ),
  ].map((m) => decode(m[1] ?? ''));

const notice = (page: string) =>
  squash(/<p class="notice" role="status">([\s\S]*?)<\/p>/.exec(page)?.[1] ?? '');

/** Follows a 303 to the page it points to. */
async function follow(session: ConsoleSession, response: ConsoleResponse): Promise<ConsoleResponse> {
  expect(response.status).toBe(303);
  return session.get(response.location ?? '');
}

// ---------------------------------------------------------------------------------------------------------------
// The server side

const serviceClient = (id: string) => getClient(server.app.admin, id);
const allClientRows = () => server.app.db.selectFrom('client').selectAll().orderBy('id').execute();

const token = (clientId: string, secret: string, resource = API) =>
  requestToken(server.url, { clientId, secret, resource, key });

const introspect = (accessToken: string) =>
  request(server.url)
    .post('/token/introspection')
    .set('Authorization', basicAuth(introspector.id, introspector.secret))
    .type('form')
    .send({ token: accessToken });

async function adminClientId(): Promise<string> {
  const credentials = JSON.parse(await readFile(join(server.keysDir, 'admin.json'), 'utf8')) as {
    client_id: string;
  };
  return credentials.client_id;
}

/** A client with a secret, registered through the service. */
async function secretClient(name: string, grants = [{ resource: API, scopes: ['read'] }]) {
  const created = await server.createClient({ name, grants });
  return { id: created.client.id, secret: created.clientSecret ?? '' };
}

const register = (fields: Record<string, string | string[] | undefined>) =>
  writer.post('/console/clients/new', { auth_method: 'client_secret_basic', ...fields });

/** The version the edit form on this page carries (its hidden `_version` field). */
function versionOf(page: string): string | undefined {
  const value = inputValue(page, '_version');
  return typeof value === 'string' ? value : undefined;
}

/** Posts the edit form of a client, with the version of its page as just shown. */
async function saveEdit(
  id: string,
  fields: Record<string, string | string[] | undefined>,
): Promise<ConsoleResponse> {
  const page = await writer.get(`/console/clients/${id}`);
  expect(page.status).toBe(200);
  return writer.post(`/console/clients/${id}`, { _version: versionOf(page.text), ...fields });
}

// ---------------------------------------------------------------------------------------------------------------

describe('registration', () => {
  it('offers every resource but the admin API, a checkbox per scope, and warns about Bearer tokens', async () => {
    const page = await writer.get('/console/clients/new');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Register a client</h1>');
    expect(page.text).toContain('<legend>Grants</legend>');
    const checkboxes = tags(page.text, 'input').filter((a) => a.type === 'checkbox');
    expect(checkboxes.filter((a) => a.name === `grant:${API}`).map((a) => a.value)).toEqual([
      'read',
      'write',
    ]);
    expect(checkboxes.filter((a) => a.name === `grant:${BILLING}`).map((a) => a.value)).toEqual([
      'invoices:read',
    ]);
    expect(checkboxes.some((a) => a.name === `grant:${adminAudience}`)).toBe(false);
    expect(checkboxes.some((a) => a.value === adminAudience)).toBe(false);
    expect(tags(page.text, 'select').map((a) => a.name)).toEqual(['auth_method']);
    expect(squash(page.text)).toContain('Allow Bearer tokens (no DPoP)');
    expect(squash(page.text)).toMatch(/Weakens security/);
    expect(tags(page.text, 'textarea').map((a) => a.name)).toEqual(['jwks', 'dpop_jkts']);
  });

  it('registers a client with grants, answers its secret once (201), and the secret obtains DPoP tokens', async () => {
    const answer = await register({
      name: 'orders-service',
      [`grant:${API}`]: ['read', 'write'],
      [`grant:${BILLING}`]: 'invoices:read',
    });
    expect(answer.status).toBe(201);
    expect(answer.location).toBeNull();
    const secret = secretOf(answer.text) ?? '';
    const clientId = clientIdOf(answer.text) ?? '';
    expect(secret).toMatch(/^mfy_[A-Za-z0-9_-]{43}$/);
    expect(answer.text).toContain('<button type="button" data-copy="client-secret" hidden>');
    expect(answer.text).toContain('<p id="client-secret-status" role="status" aria-live="polite"></p>');
    const warning = /<div class="warning" role="alert">([\s\S]*?)<\/div>/.exec(answer.text)?.[1] ?? '';
    expect(squash(warning)).toContain('it is shown only this once');
    expect(squash(warning)).toContain('cannot show it again');
    expect(answer.text).toContain(`href="/console/clients/${clientId}"`);
    // The secret appears once, and nowhere but in its element.
    expect(answer.text.split(secret)).toHaveLength(2);

    const client = await serviceClient(clientId);
    expect(client).toMatchObject({
      name: 'orders-service',
      auth_method: 'client_secret_basic',
      bearer_allowed: false,
      dpop_jkts: [],
      status: 'enabled',
    });
    expect(client.grants).toEqual(
      expect.arrayContaining([
        { resource: API, scopes: ['read', 'write'] },
        { resource: BILLING, scopes: ['invoices:read'] },
      ]),
    );

    const issued = await token(clientId, secret);
    expect(issued.status).toBe(200);
    expect(issued.body).toMatchObject({ token_type: 'DPoP', scope: 'read write' });
    const billing = await token(clientId, secret, BILLING);
    expect(billing.status).toBe(200);
    expect(billing.body.scope).toBe('invoices:read');

    // Never again: not on its page, the list, a search, or the overview.
    for (const path of [
      `/console/clients/${clientId}`,
      '/console/clients',
      '/console/clients?name=orders',
      '/console',
    ]) {
      const later = await writer.get(path);
      expect(later.status).toBe(200);
      expect(later.text).not.toContain(secret);
      expect(later.text).not.toContain('id="client-secret"');
    }
    const details = await writer.get(`/console/clients/${clientId}`);
    expect(details.text).toContain('<h1>orders-service</h1>');
    expect(squash(details.text)).toContain(`Client id ${clientId}`);
    expect(squash(details.text)).toContain('Orders API https://api.example.com: read write');
    expect(squash(details.text)).toContain(`${BILLING}: invoices:read`);
    expect(squash(details.text)).toContain('Never (current secret)');
  });

  it('records the bearer exception and pinned DPoP keys', async () => {
    const answer = await register({
      name: 'legacy-batch',
      auth_method: 'client_secret_post',
      [`grant:${API}`]: 'read',
      bearer_allowed: 'on',
      dpop_jkts: `${key.thumbprint}\n`,
      introspects: BILLING,
    });
    expect(answer.status).toBe(201);
    const clientId = clientIdOf(answer.text) ?? '';
    expect(await serviceClient(clientId)).toMatchObject({
      auth_method: 'client_secret_post',
      bearer_allowed: true,
      dpop_jkts: [key.thumbprint],
      introspects: [BILLING],
    });
    const details = squash((await writer.get(`/console/clients/${clientId}`)).text);
    expect(details).toContain('Bearer tokens Allowed without DPoP');
    expect(details).toContain(`Pinned DPoP keys ${key.thumbprint}`);
    expect(details).toContain(`Introspection rights ${BILLING}`);
    expect(details).toContain('Secret (request body)');
  });

  it('registers a private_key_jwt client from a pasted JWKS: no secret, straight to its page', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    const signingKey: CryptoKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'console-k1', alg: 'ES256' };
    const answer = await register({
      name: 'signer',
      auth_method: 'private_key_jwt',
      jwks: JSON.stringify({ keys: [jwk] }, null, 2),
      [`grant:${API}`]: 'read',
    });
    expect(answer.status).toBe(303);
    const clientId = decodeURIComponent(answer.location?.replace('/console/clients/', '') ?? '');
    const page = await follow(writer, answer);
    expect(notice(page.text)).toBe('Client signer is registered; it authenticates with its private key.');
    expect(squash(page.text)).toContain('Private key JWT');
    expect(squash(page.text)).toContain('key id console-k1');
    expect(page.text).not.toContain('Rotate the secret');

    const assertion = await createClientAssertion({
      clientId,
      audience: `${server.url}/token`,
      key: signingKey,
      kid: 'console-k1',
    });
    const issued = await postToken(
      server.url,
      {
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: assertion,
        resource: API,
      },
      { key },
    );
    expect(issued.status).toBe(200);
    expect(issued.body.token_type).toBe('DPoP');
  });

  const VALID_JKT = 'A'.repeat(43);
  it.each<[string, () => Record<string, string | string[]>, number, () => string, string]>([
    ['an empty name', () => ({ name: '   ' }), 400, () => 'name', 'a name is required'],
    [
      'an unknown authentication method',
      () => ({ name: 'bad-method', auth_method: 'password' }),
      400,
      () => 'auth_method',
      'expected client_secret_basic, client_secret_post or private_key_jwt',
    ],
    [
      'a JWKS that is not JSON',
      () => ({ name: 'bad-json', auth_method: 'private_key_jwt', jwks: '{"keys": [}' }),
      400,
      () => 'jwks',
      'not valid JSON',
    ],
    [
      'a JWKS without a usable key',
      () => ({
        name: 'bad-key',
        auth_method: 'private_key_jwt',
        jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}',
      }),
      400,
      () => 'jwks',
      'key 1: not a usable public key',
    ],
    [
      'private_key_jwt without keys',
      () => ({ name: 'no-keys', auth_method: 'private_key_jwt' }),
      400,
      () => 'jwks',
      'private_key_jwt needs exactly one of jwks or jwks_uri',
    ],
    [
      'a JWKS URL that is not one',
      () => ({ name: 'bad-uri', auth_method: 'private_key_jwt', jwks_uri: 'keys please' }),
      400,
      () => 'jwks_uri',
      'expected an http(s) URL',
    ],
    [
      'keys for a secret method',
      () => ({ name: 'keys-and-secret', jwks_uri: 'https://keys.example.com/jwks.json' }),
      400,
      () => 'jwks_uri',
      'keys are only used with private_key_jwt',
    ],
    [
      'a malformed DPoP thumbprint',
      () => ({ name: 'bad-pin', dpop_jkts: `${VALID_JKT}\nnot-a-thumbprint` }),
      400,
      () => 'dpop_jkts',
      'thumbprint 2 (not-a-thumbprint): expected a SHA-256 JWK thumbprint',
    ],
    [
      'a scope the resource does not define',
      () => ({ name: 'bad-scope', [`grant:${API}`]: ['read', 'delete'] }),
      400,
      () => `grant:${API}`,
      `${API} does not define delete`,
    ],
    [
      'an unknown resource',
      () => ({ name: 'bad-resource', [`grant:${UNKNOWN}`]: 'read' }),
      404,
      () => 'grants',
      `no resource with identifier ${UNKNOWN}`,
    ],
    [
      'a grant on the admin API',
      () => ({ name: 'sneaky-admin', [`grant:${adminAudience}`]: 'admin:write' }),
      400,
      () => 'grants',
      "is the admin API's own resource",
    ],
  ])('refuses %s next to its field, changing nothing', async (_case, fields, status, field, message) => {
    const before = await allClientRows();
    const answer = await register(fields());
    expect(answer.status).toBe(status);
    expect(fieldError(answer.text, field())).toContain(message);
    const summary = errorSummary(answer.text);
    expect(summary?.text).toContain(message);
    expect(summary?.links).toContain(`field-${field()}`);
    // The field the summary links to exists on the page.
    expect(answer.text).toContain(`id="field-${field()}"`);
    expect(answer.text).not.toContain('id="client-secret"');
    expect(inputValue(answer.text, 'name')).toBe(fields().name);
    expect(await allClientRows()).toEqual(before);
  });

  it('shows the form again as typed, with every problem at once', async () => {
    const answer = await register({
      name: 'kept',
      auth_method: 'private_key_jwt',
      jwks: '{not json',
      [`grant:${API}`]: 'write',
      introspects: BILLING,
      bearer_allowed: 'on',
      dpop_jkts: 'short',
    });
    expect(answer.status).toBe(400);
    expect(inputValue(answer.text, 'name')).toBe('kept');
    expect(tags(answer.text, 'option').find((a) => a.selected === true)?.value).toBe('private_key_jwt');
    expect(textareaValue(answer.text, 'jwks')).toBe('{not json');
    expect(textareaValue(answer.text, 'dpop_jkts')).toBe('short');
    expect(isChecked(answer.text, `grant:${API}`, 'write')).toBe(true);
    expect(isChecked(answer.text, `grant:${API}`, 'read')).toBe(false);
    expect(isChecked(answer.text, 'introspects', BILLING)).toBe(true);
    expect(isChecked(answer.text, 'bearer_allowed', 'on')).toBe(true);
    expect(fieldError(answer.text, 'jwks')).toContain('not valid JSON');
    expect(fieldError(answer.text, 'dpop_jkts')).toContain('thumbprint 1 (short)');
    expect(errorSummary(answer.text)?.links).toEqual(['field-jwks', 'field-dpop_jkts']);
  });
});

describe('one client', () => {
  it('edits the name, grants, bearer exception and pinned keys', async () => {
    const { id } = await secretClient('before-edit');
    const page = await writer.get(`/console/clients/${id}`);
    expect(inputValue(page.text, 'name')).toBe('before-edit');
    expect(isChecked(page.text, `grant:${API}`, 'read')).toBe(true);
    expect(isChecked(page.text, `grant:${BILLING}`, 'invoices:read')).toBe(false);

    const saved = await saveEdit(id, {
      name: 'after-edit',
      [`grant:${BILLING}`]: 'invoices:read',
      bearer_allowed: 'on',
      dpop_jkts: key.thumbprint,
    });
    expect(saved.location).toBe(`/console/clients/${id}`);
    const shown = await follow(writer, saved);
    expect(notice(shown.text)).toBe('Changes to after-edit are saved.');
    expect(shown.text).toContain('<h1>after-edit</h1>');
    const client = await serviceClient(id);
    expect(client).toMatchObject({
      name: 'after-edit',
      grants: [{ resource: BILLING, scopes: ['invoices:read'] }],
      bearer_allowed: true,
      dpop_jkts: [key.thumbprint],
    });

    const unchanged = await saveEdit(id, {
      name: 'after-edit',
      [`grant:${BILLING}`]: 'invoices:read',
      bearer_allowed: 'on',
      dpop_jkts: key.thumbprint,
    });
    expect(notice((await follow(writer, unchanged)).text)).toBe(
      'Nothing changed: there was nothing to save.',
    );
    expect((await serviceClient(id)).updated_at).toBe(client.updated_at);
  });

  it('disabling refuses tokens at once and makes issued tokens inactive; enabling lets the client in again', async () => {
    const { id, secret } = await secretClient('switchable');
    const before = await token(id, secret);
    expect(before.status).toBe(200);
    expect((await introspect(before.body.access_token)).body.active).toBe(true);

    const disabled = await writer.post(`/console/clients/${id}/disable`, {});
    expect(disabled.location).toBe(`/console/clients/${id}`);
    const page = await follow(writer, disabled);
    expect(notice(page.text)).toContain('switchable is disabled');
    expect(page.text).toContain('<span class="badge status-disabled">Disabled</span>');
    expect(page.text).toContain(`action="/console/clients/${id}/enable"`);
    expect((await serviceClient(id)).status).toBe('disabled');

    const refused = await token(id, secret);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');
    expect((await introspect(before.body.access_token)).body).toEqual({ active: false });

    const enabled = await writer.post(`/console/clients/${id}/enable`, {});
    const again = await follow(writer, enabled);
    expect(notice(again.text)).toContain('switchable is enabled');
    expect(again.text).toContain('<span class="badge status-enabled">Enabled</span>');
    const after = await token(id, secret);
    expect(after.status).toBe(200);
    expect((await introspect(after.body.access_token)).body.active).toBe(true);
  });

  it('rotating answers the new secret once; the previous one works for the overlap, or stops with 0', async () => {
    const { id, secret: first } = await secretClient('rotating');
    const page = await writer.get(`/console/clients/${id}`);
    expect(squash(page.text)).toContain('Leave empty for the server default, 1 day.');

    const rotated = await writer.post(`/console/clients/${id}/rotate-secret`, {
      previous_secret_expires_in: '',
    });
    expect(rotated.status).toBe(201);
    const second = secretOf(rotated.text) ?? '';
    expect(second).toMatch(/^mfy_/);
    expect(second).not.toBe(first);
    expect(squash(rotated.text)).toContain('The previous secret keeps working until');
    expect((await token(id, second)).status).toBe(200);
    expect((await token(id, first)).status).toBe(200);

    const ended = await writer.post(`/console/clients/${id}/rotate-secret`, {
      previous_secret_expires_in: '0',
    });
    expect(ended.status).toBe(201);
    const third = secretOf(ended.text) ?? '';
    expect(squash(ended.text)).toContain('The previous secret no longer works.');
    expect((await token(id, third)).status).toBe(200);
    for (const old of [first, second]) {
      const refused = await token(id, old);
      expect(refused.status).toBe(401);
      expect(refused.body.error).toBe('invalid_client');
    }

    const later = await writer.get(`/console/clients/${id}`);
    for (const value of [first, second, third]) expect(later.text).not.toContain(value);
    expect((await serviceClient(id)).secrets).toHaveLength(1);
    expect(later.text).toContain((await serviceClient(id)).secrets[0]?.id);
  });

  it('deletes only after a confirmation page naming the client', async () => {
    const { id, secret } = await secretClient('doomed');
    const confirm = await writer.get(`/console/clients/${id}/delete`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain('<h1>Delete client doomed?</h1>');
    expect(squash(confirm.text)).toContain(`Client doomed (id ${id}) is deleted`);
    expect(confirm.text).toContain(`<form method="post" action="/console/clients/${id}/delete"`);
    expect((await serviceClient(id)).name).toBe('doomed');

    const deleted = await writer.post(`/console/clients/${id}/delete`, {});
    expect(deleted.location).toBe('/console/clients');
    const list = await follow(writer, deleted);
    expect(notice(list.text)).toBe(`Client doomed (${id}) is deleted; its tokens are inactive.`);
    expect(listedNames(list.text)).not.toContain('doomed');
    await expect(serviceClient(id)).rejects.toMatchObject({ code: 'client_not_found' });
    const gone = await writer.get(`/console/clients/${id}`);
    expect(gone.status).toBe(404);
    expect(squash(gone.text)).toContain(`no client ${id}`);
    expect((await token(id, secret)).body.error).toBe('invalid_client');
  });

  it('refuses to disable, delete or strip the last admin client, saying why', async () => {
    const adminId = await adminClientId();
    const before = await serviceClient(adminId);
    const page = await writer.get(`/console/clients/${adminId}`);
    // It holds admin rights, so its edit form shows the admin API's scopes (and only then).
    expect(isChecked(page.text, `grant:${adminAudience}`, 'admin:write')).toBe(true);

    const disabled = await writer.post(`/console/clients/${adminId}/disable`, {});
    expect(disabled.status).toBe(409);
    expect(errorSummary(disabled.text)?.text).toContain('is the last enabled client with admin:write');
    expect(errorSummary(disabled.text)?.text).toContain('Not disabled');

    const deleted = await writer.post(`/console/clients/${adminId}/delete`, {});
    expect(deleted.status).toBe(409);
    expect(deleted.text).toContain('<h1>Delete client Mayfly admin?</h1>');
    expect(errorSummary(deleted.text)?.text).toContain('Not deleted');
    expect(errorSummary(deleted.text)?.text).toContain('would lock every administrator out');

    const stripped = await saveEdit(adminId, { name: 'Mayfly admin' });
    expect(stripped.status).toBe(409);
    expect(errorSummary(stripped.text)?.text).toContain('is the last enabled client with admin:write');
    expect(isChecked(stripped.text, `grant:${adminAudience}`, 'admin:write')).toBe(false);

    expect(await serviceClient(adminId)).toEqual(before);
  });

  it.each<[string, string, Record<string, string | string[]>, number, string, string]>([
    ['an empty name', '', { name: '' }, 400, 'name', 'a name is required'],
    ['a malformed thumbprint', '', { dpop_jkts: 'nope' }, 400, 'dpop_jkts', 'thumbprint 1 (nope)'],
    [
      'a scope the resource does not define',
      '',
      { [`grant:${API}`]: ['read', 'admin'] },
      400,
      `grant:${API}`,
      `${API} does not define admin`,
    ],
    [
      'an unknown resource',
      '',
      { [`grant:${UNKNOWN}`]: 'read' },
      404,
      'grants',
      `no resource with identifier ${UNKNOWN}`,
    ],
    [
      'a non-numeric overlap',
      '/rotate-secret',
      { previous_secret_expires_in: 'soon' },
      400,
      'previous_secret_expires_in',
      'expected a whole number of seconds',
    ],
    [
      'a negative overlap',
      '/rotate-secret',
      { previous_secret_expires_in: '-5' },
      400,
      'previous_secret_expires_in',
      'expected a whole number of seconds',
    ],
    [
      'an overlap over 30 days',
      '/rotate-secret',
      { previous_secret_expires_in: '2592001' },
      400,
      'previous_secret_expires_in',
      'at most 30 days',
    ],
  ])(
    'refuses %s next to its field, changing nothing',
    async (label, action, fields, status, field, message) => {
      const { id } = await secretClient(`steady ${label}`);
      const before = await serviceClient(id);
      const current = { name: before.name, [`grant:${API}`]: 'read' };
      const answer = action
        ? await writer.post(`/console/clients/${id}${action}`, fields)
        : await saveEdit(id, { ...current, ...fields });
      expect(answer.status).toBe(status);
      expect(fieldError(answer.text, field)).toContain(message);
      expect(errorSummary(answer.text)?.links).toContain(`field-${field}`);
      expect(answer.text).toContain(`id="field-${field}"`);
      expect(answer.text).not.toContain('id="client-secret"');
      if (action) expect(inputValue(answer.text, field)).toBe(fields[field]);
      else if (field === 'name') expect(inputValue(answer.text, 'name')).toBe('');
      expect(await serviceClient(id)).toEqual(before);
    },
  );

  it('refuses a grant on the admin API for a client that holds none', async () => {
    const { id } = await secretClient('no-admin-here');
    const before = await serviceClient(id);
    const answer = await saveEdit(id, {
      name: 'no-admin-here',
      [`grant:${API}`]: 'read',
      [`grant:${adminAudience}`]: 'admin:read',
    });
    expect(answer.status).toBe(400);
    expect(fieldError(answer.text, 'grants')).toContain("is the admin API's own resource");
    expect(await serviceClient(id)).toEqual(before);
  });

  it('answers 404 for a client that does not exist', async () => {
    for (const path of ['/console/clients/nope', '/console/clients/nope/delete']) {
      const page = await writer.get(path);
      expect(page.status).toBe(404);
      expect(squash(page.text)).toContain('no client nope');
    }
    expect((await writer.post('/console/clients/nope/disable', {})).status).toBe(404);
  });
});

describe('the list', () => {
  beforeAll(async () => {
    await server.createClient({ name: 'search-alpha', grants: [{ resource: API, scopes: ['read'] }] });
    await server.createClient({
      name: 'search-beta',
      auth_method: 'client_secret_post',
      grants: [{ resource: BILLING, scopes: ['invoices:read'] }],
    });
    const pair = await generateKeyPair('ES256', { extractable: true });
    const gamma = await server.createClient({
      name: 'Search-Gamma',
      auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), kty: 'EC' }] },
    });
    await setClientEnabled(server.app.admin, TEST_ACTOR, gamma.client.id, false);
  });

  it.each([
    ['name=SEARCH-', ['search-alpha', 'search-beta', 'Search-Gamma']],
    ['name=search-&status=disabled', ['Search-Gamma']],
    ['name=search-&status=enabled', ['search-alpha', 'search-beta']],
    [`name=search-&resource=${encodeURIComponent(API)}`, ['search-alpha']],
    ['name=search-&auth_method=client_secret_post', ['search-beta']],
    ['name=search-&auth_method=private_key_jwt', ['Search-Gamma']],
    [`name=search-&status=enabled&resource=${encodeURIComponent(BILLING)}`, ['search-beta']],
  ])('?%s lists exactly the matching clients', async (search, names) => {
    const page = await reader.get(`/console/clients?${search}`);
    expect(page.status).toBe(200);
    expect([...listedNames(page.text)].sort()).toEqual([...names].sort());
  });

  it('shows each client with its id, method, grants and status, and keeps the filters in the form', async () => {
    const page = await writer.get(`/console/clients?name=search-&status=enabled`);
    const row =
      /<tr>\s*<th scope="row"[^>]*>\s*<a[^>]*>search-alpha<\/a>[\s\S]*?<\/tr>/.exec(page.text)?.[0] ?? '';
    expect(squash(row)).toMatch(
      /^search-alpha [A-Za-z0-9_-]{22} Secret \(HTTP Basic\) Orders API .* read Enabled$/,
    );
    expect(inputValue(page.text, 'name')).toBe('search-');
    expect(
      tags(page.text, 'option')
        .filter((a) => a.selected === true)
        .map((a) => a.value),
    ).toEqual(['enabled', '', '']);
    expect(page.text).toContain('<a href="/console/clients">Clear filters</a>');
    expect(page.text).toContain('<th scope="col">Status</th>');
  });

  it('says what to do when no client matches', async () => {
    const page = await writer.get('/console/clients?name=no-such-client');
    expect(page.status).toBe(200);
    expect(page.text).not.toContain('<table');
    expect(squash(page.text)).toContain(
      'No client matches these filters. Change them, or show every client.',
    );
  });

  it('says how to start when there is no client at all', () => {
    const context = { csrf: 'x', notice: undefined };
    const filters = {};
    const empty = { items: [], nextCursor: null, filters, resources: [] };
    const forWriter = clientsPage({ ...context, user: { name: 'w', role: 'write' } }, empty).value;
    expect(squash(forWriter)).toContain('No clients yet.');
    expect(forWriter).toContain('<a href="/console/clients/new">Register the first client</a>');
    const forReader = clientsPage({ ...context, user: { name: 'r', role: 'read' } }, empty).value;
    expect(squash(forReader)).toContain('Ask an administrator with the write role to register one.');
    expect(forReader).not.toContain('/console/clients/new');
  });

  it('pages with next_cursor, the next-page link keeping the filters', async () => {
    for (let n = 0; n < 51; n++) await server.createClient({ name: `paged-${String(n).padStart(2, '0')}` });
    const first = await writer.get('/console/clients?name=paged-');
    const names = listedNames(first.text);
    expect(names).toHaveLength(50);
    expect(names[0]).toBe('paged-00');
    expect(names[49]).toBe('paged-49');
    const next = decode(/<a href="([^"]*)" rel="next"/.exec(first.text)?.[1] ?? '');
    expect(next).toMatch(/^\/console\/clients\?name=paged-&cursor=[A-Za-z0-9_-]+$/);
    expect(squash(first.text)).toContain('Next page');

    const second = await writer.get(next);
    expect(listedNames(second.text)).toEqual(['paged-50']);
    expect(second.text).not.toContain('rel="next"');
    expect(second.text).toContain('<a href="/console/clients?name=paged-">First page</a>');
  });

  it('shows a bad filter value next to its filter', async () => {
    const status = await writer.get('/console/clients?status=sleeping');
    expect(status.status).toBe(400);
    expect(fieldError(status.text, 'status')).toBe('expected enabled or disabled');
    expect(status.text).not.toContain('<table');
    const cursor = await writer.get('/console/clients?cursor=garbage');
    expect(cursor.status).toBe(400);
    expect(errorSummary(cursor.text)?.text).toContain('not a cursor returned by this list');
  });
});

describe('the read role', () => {
  it('sees the clients but no control that changes them', async () => {
    const { id } = await secretClient('look-only');
    const list = await reader.get('/console/clients');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain('href="/console/clients/new"');
    const page = await reader.get(`/console/clients/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>look-only</h1>');
    expect(tags(page.text, 'form').map((a) => a.action)).toEqual(['/console/sign-out']);
    expect(tags(page.text, 'input').filter((a) => a.type !== 'hidden')).toEqual([]);
    expect(page.text).not.toContain(`/console/clients/${id}/delete`);
    expect(squash(page.text)).toContain('Your role is read only');
    for (const path of ['/console/clients/new', `/console/clients/${id}/delete`]) {
      const refused = await reader.get(path);
      expect(refused.status).toBe(403);
      expect(squash(refused.text)).toContain('your role is read only');
    }
  });

  it('gets 403 on every POST, and nothing changes', async () => {
    const { id } = await secretClient('untouchable');
    const before = await serviceClient(id);
    const rows = await allClientRows();
    const posts: [string, Record<string, string | string[]>][] = [
      ['/console/clients/new', { name: 'by-reader', auth_method: 'client_secret_basic' }],
      ['/console/clients/new', { name: '' }],
      [`/console/clients/${id}`, { name: 'renamed-by-reader' }],
      [`/console/clients/${id}/disable`, {}],
      [`/console/clients/${id}/enable`, {}],
      [`/console/clients/${id}/rotate-secret`, { previous_secret_expires_in: '0' }],
      [`/console/clients/${id}/rotate-secret`, { previous_secret_expires_in: 'soon' }],
      [`/console/clients/${id}/delete`, {}],
    ];
    for (const [path, fields] of posts) {
      const refused = await reader.post(path, fields);
      expect(refused.status, path).toBe(403);
      expect(squash(refused.text)).toContain('your role is read only');
      expect(refused.text).not.toContain('id="client-secret"');
    }
    expect(await serviceClient(id)).toEqual(before);
    expect(await allClientRows()).toEqual(rows);
  });
});

describe('markup', () => {
  function checkMarkup(page: string): void {
    expect(page).not.toMatch(/\sstyle=/);
    expect(page).not.toMatch(/\son[a-z]+=/);
    expect([...page.matchAll(/<script\b([^>]*)>/g)].every((m) => /\bsrc="/.test(m[1] ?? ''))).toBe(true);
    // Every visible control has a label.
    const labelled = new Set(tags(page, 'label').map((a) => a.for));
    for (const control of [...tags(page, 'input'), ...tags(page, 'select'), ...tags(page, 'textarea')]) {
      if (control.type === 'hidden') continue;
      expect([...labelled], `control ${String(control.name)}`).toContain(control.id);
    }
    // One h1, and no heading level skipped on the way down.
    const levels = [...page.matchAll(/<h([1-6])\b/g)].map((m) => Number(m[1]));
    expect(levels.filter((level) => level === 1)).toHaveLength(1);
    levels.reduce((previous, level) => {
      expect(level).toBeLessThanOrEqual(previous + 1);
      return level;
    }, 0);
    // Ids are unique.
    const ids = [...page.matchAll(/\sid="([^"]*)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);
  }

  it('is labelled, structured and free of inline code on every client page', async () => {
    const { id } = await secretClient('markup');
    const created = await register({ name: 'markup-secret', [`grant:${API}`]: 'read' });
    const invalid = await register({ name: '', [`grant:${API}`]: 'nope', dpop_jkts: 'x' });
    const admin = await server.createClient({
      name: 'markup-admin',
      grants: [{ resource: adminAudience, scopes: ['admin:read'] }],
      dpop_jkts: [key.thumbprint],
    });
    const adminPage = await writer.get(`/console/clients/${admin.client.id}`);
    const pages = [
      adminPage.text,
      (await writer.post(`/console/clients/${admin.client.id}/rotate-secret`, {})).text,
      (
        await writer.post(`/console/clients/${admin.client.id}`, {
          _version: versionOf(adminPage.text),
          name: 'markup-admin',
          [`grant:${adminAudience}`]: ['admin:read', 'admin:write'],
          bearer_allowed: 'on',
          dpop_jkts: '',
        })
      ).text,
      (await writer.post(`/console/clients/${id}`, { _version: '2000-01-01T00:00:00.000Z', name: 'x' })).text,
      (await writer.get('/console/clients')).text,
      (await writer.get('/console/clients?status=bogus')).text,
      (await writer.get('/console/clients/new')).text,
      invalid.text,
      created.text,
      (await writer.get(`/console/clients/${id}`)).text,
      (await writer.post(`/console/clients/${id}/rotate-secret`, { previous_secret_expires_in: 'x' })).text,
      (await writer.get(`/console/clients/${id}/delete`)).text,
      (await reader.get(`/console/clients/${id}`)).text,
    ];
    for (const page of pages) checkMarkup(page);
  });
});
