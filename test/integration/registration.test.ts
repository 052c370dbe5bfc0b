import { exportJWK, generateKeyPair } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken, type AdminToken } from '../support/admin.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { createClientAssertion, JWT_BEARER_ASSERTION, postToken, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const ORDERS = 'https://orders.example.com';
const BILLING = 'https://billing.example.com';
const SLOW = 'https://slow.example.com';

/** Real time, moved forward on demand to expire tokens without sleeping. */
let offset = 0;
const clock = { now: () => new Date(Date.now() + offset) };

let server: TestServer;
let admin: AdminToken;
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer({ env: { MAYFLY_REGISTRATION: 'true' }, clock });
  admin = await obtainAdminToken(server);
  await server.createResource({ identifier: ORDERS, scopes: ['orders:read', 'orders:write'] });
  await server.createResource({ identifier: BILLING, scopes: ['billing:read'] });
  await server.createResource({ identifier: SLOW, scopes: ['slow:read'], token_ttl: 600 });
  key = await generateDpopKey();
});
afterAll(() => server.close());

interface Minted {
  id: string;
  token: string;
}

async function mint(body: object = {}): Promise<Minted> {
  const res = await adminCall(server, admin, 'POST', '/registration-tokens', {
    body: { resources: [{ resource: ORDERS, scopes: ['orders:read'] }], expires_in: 3600, ...body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as Minted;
}

function register(token: string | undefined, metadata: unknown, contentType = 'application/json') {
  let call = request(server.url).post('/register').set('Content-Type', contentType);
  if (token !== undefined) call = call.set('Authorization', `Bearer ${token}`);
  return call.send(typeof metadata === 'string' ? metadata : JSON.stringify(metadata));
}

function manage(method: 'get' | 'put' | 'delete', uri: string, token: string, body?: object) {
  const call = request(server.url)[method](new URL(uri).pathname).set('Authorization', `Bearer ${token}`);
  return body === undefined ? call : call.set('Content-Type', 'application/json').send(JSON.stringify(body));
}

describe('dynamic client registration, disabled', () => {
  it('answers 404 and advertises no registration endpoint unless MAYFLY_REGISTRATION=true', async () => {
    const plain = await startTestServer();
    try {
      const res = await request(plain.url).post('/register').send({});
      expect(res.status).toBe(404);
      const metadata = await request(plain.url).get('/.well-known/oauth-authorization-server');
      expect(metadata.body.registration_endpoint).toBeUndefined();
      const admin2 = await obtainAdminToken(plain);
      // Minting works regardless; the tokens simply have nowhere to be used.
      expect((await adminCall(plain, admin2, 'GET', '/registration-tokens')).status).toBe(200);
    } finally {
      await plain.close();
    }
  });
});

describe('dynamic client registration (RFC 7591)', () => {
  it('advertises the registration endpoint', async () => {
    const res = await request(server.url).get('/.well-known/oauth-authorization-server');
    expect(res.body.registration_endpoint).toBe(`${server.url}/register`);
  });

  it('registers a client with a one-use token; the client obtains a DPoP token; the token is then used up', async () => {
    const iat = await mint();
    expect(iat.token).toMatch(/^mfyi_[A-Za-z0-9_-]{43}$/);
    const res = await register(iat.token, { client_name: 'robot', scope: 'orders:read', unknown_member: 1 });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({
      client_name: 'robot',
      token_endpoint_auth_method: 'client_secret_basic',
      client_secret_expires_at: 0,
      grant_types: ['client_credentials'],
      response_types: [],
      scope: 'orders:read',
      mayfly_grants: [{ resource: ORDERS, scopes: ['orders:read'] }],
      dpop_bound_access_tokens: true,
      dpop_jkts: [],
      registration_client_uri: `${server.url}/register/${res.body.client_id}`,
    });
    expect(res.body.unknown_member).toBeUndefined();
    expect(res.body.registration_access_token).toMatch(/^mfyr_/);
    expect(typeof res.body.client_id_issued_at).toBe('number');

    const token = await requestToken(server.url, {
      clientId: res.body.client_id,
      secret: res.body.client_secret,
      resource: ORDERS,
      key,
    });
    expect(token.status).toBe(200);
    expect(token.body.token_type).toBe('DPoP');
    const bearer = await requestToken(server.url, {
      clientId: res.body.client_id,
      secret: res.body.client_secret,
      resource: ORDERS,
    });
    expect(bearer.status).toBe(400);

    const again = await register(iat.token, { client_name: 'robot 2' });
    expect(again.status).toBe(401);
    expect(again.body.error).toBe('invalid_token');
    expect(again.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(server.logs.audit('registration').at(-1)).toMatchObject({
      outcome: 'failure',
      reason: 'used_up',
      registration_token_id: iat.id,
    });
    expect(server.logs.text()).not.toContain(iat.token);
    expect(server.logs.text()).not.toContain(res.body.registration_access_token);

    const listed = await adminCall(server, admin, 'GET', '/registration-tokens');
    expect(listed.body.items.find((t: { id: string }) => t.id === iat.id)).toMatchObject({
      uses: 1,
      uses_left: 0,
      status: 'used',
    });
    expect(JSON.stringify(listed.body)).not.toContain(iat.token);
  });

  it('shows registered clients in the admin API and the audit trail with the registration actor', async () => {
    const iat = await mint();
    const res = await register(iat.token, {});
    expect(res.status).toBe(201);
    const client = await adminCall(server, admin, 'GET', `/clients/${res.body.client_id}`);
    expect(client.body).toMatchObject({ managed_by: 'registration', bearer_allowed: false });
    const list = await adminCall(server, admin, 'GET', '/clients', { query: 'name=registered' });
    expect(list.body.items.map((c: { client_id: string }) => c.client_id)).toContain(res.body.client_id);
    const events = await adminCall(server, admin, 'GET', '/audit-events', {
      query: `target=${res.body.client_id}`,
    });
    expect(events.body.items[0]).toMatchObject({ action: 'client.create', actor: `registration:${iat.id}` });
    const minted = await adminCall(server, admin, 'GET', '/audit-events', { query: `target=${iat.id}` });
    expect(minted.body.items[0]).toMatchObject({ action: 'registration_token.create' });
    expect(JSON.stringify(minted.body)).not.toContain(iat.token);
  });

  it('refuses an unknown, expired or revoked token alike, and says which in the audit line', async () => {
    const missing = await register(undefined, {});
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');

    const unknown = await register('mfyi_nothing', {});
    expect(unknown.status).toBe(401);
    expect(server.logs.audit('registration').at(-1)).toMatchObject({ reason: 'unknown' });

    const expiring = await mint({ expires_in: 60 });
    offset = 61_000;
    try {
      const expired = await register(expiring.token, {});
      expect(expired.status).toBe(401);
      expect(expired.body).toEqual(unknown.body);
      expect(server.logs.audit('registration').at(-1)).toMatchObject({
        reason: 'expired',
        registration_token_id: expiring.id,
      });
    } finally {
      offset = 0;
    }

    const revoking = await mint({ uses: 5 });
    expect((await adminCall(server, admin, 'DELETE', `/registration-tokens/${revoking.id}`)).status).toBe(
      204,
    );
    const revoked = await register(revoking.token, {});
    expect(revoked.status).toBe(401);
    expect((await adminCall(server, admin, 'DELETE', `/registration-tokens/${revoking.id}`)).status).toBe(
      404,
    );
  });

  it('refuses metadata beyond the caps, naming the member and the rule, without using the token', async () => {
    const iat = await mint({
      resources: [
        { resource: ORDERS, scopes: ['orders:read'] },
        { resource: SLOW, scopes: ['slow:read'] },
      ],
      auth_methods: ['client_secret_basic'],
      max_token_ttl: 300,
    });
    const cases: [object, RegExp][] = [
      [
        { scope: 'orders:write' },
        /^scope: "orders:write" is not allowed by this registration token \(allowed: orders:read slow:read\)$/,
      ],
      [
        { mayfly_grants: [{ resource: BILLING, scopes: ['billing:read'] }] },
        /^mayfly_grants\[0\]\.resource: https:\/\/billing\.example\.com is not allowed/,
      ],
      [
        { mayfly_grants: [{ resource: ORDERS, scopes: ['orders:read', 'orders:write'] }] },
        /^mayfly_grants\[0\]\.scopes: "orders:write" is not allowed on https:\/\/orders\.example\.com/,
      ],
      [
        { token_endpoint_auth_method: 'client_secret_post' },
        /^token_endpoint_auth_method: client_secret_post is not allowed/,
      ],
      [
        { scope: 'slow:read' },
        /^scope: tokens for https:\/\/slow\.example\.com live 600 s, longer than .*max_token_ttl 300 s/,
      ],
      [{ grant_types: ['authorization_code'] }, /^grant_types: only \["client_credentials"\]/],
      [{ response_types: ['code'] }, /^response_types: must be empty/],
      [{ dpop_bound_access_tokens: false }, /^dpop_bound_access_tokens: must be true/],
      [{ dpop_jkts: ['short'] }, /^dpop_jkts\[0\]: expected a SHA-256 JWK thumbprint/],
      [
        { scope: 'orders:read', jwks_uri: 'https://keys.example.com/jwks' },
        /^jwks_uri: keys are only used with private_key_jwt/,
      ],
    ];
    for (const [metadata, description] of cases) {
      const res = await register(iat.token, metadata);
      expect(res.status, JSON.stringify(metadata)).toBe(400);
      expect(res.body.error).toBe('invalid_client_metadata');
      expect(res.body.error_description).toMatch(description);
    }
    const redirect = await register(iat.token, { redirect_uris: ['https://app.example.com/cb'] });
    expect(redirect.body.error).toBe('invalid_redirect_uri');
    const statement = await register(iat.token, { software_statement: 'eyJ.e30.' });
    expect(statement.body.error).toBe('unapproved_software_statement');
    const form = await register(iat.token, 'client_name=x', 'application/x-www-form-urlencoded');
    expect(form.status).toBe(415);
    const huge = await register(iat.token, { client_name: 'x', padding: 'x'.repeat(70_000) });
    expect(huge.status).toBe(413);
    const notJson = await register(iat.token, '{"client_name":');
    expect(notJson.body.error).toBe('invalid_client_metadata');

    // None of the refusals used the token.
    const ok = await register(iat.token, { scope: 'orders:read' });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
  });

  it('creates exactly one client from five concurrent registrations with a one-use token', async () => {
    const iat = await mint();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => register(iat.token, { client_name: 'race' })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 401, 401, 401, 401]);
    const events = await adminCall(server, admin, 'GET', '/audit-events', {
      query: `actor=${encodeURIComponent(`registration:${iat.id}`)}`,
    });
    expect(events.body.items).toHaveLength(1);
  });

  it('registers a private_key_jwt client with pinned DPoP keys, enforced at the token endpoint', async () => {
    const iat = await mint({ uses: 2 });
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    const res = await register(iat.token, {
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [jwk] },
      dpop_jkts: [key.thumbprint],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.client_secret).toBeUndefined();
    expect(res.body.dpop_jkts).toEqual([key.thumbprint]);
    const tokenWith = async (dpop: DpopKey) =>
      postToken(
        server.url,
        {
          grant_type: 'client_credentials',
          resource: ORDERS,
          client_assertion_type: JWT_BEARER_ASSERTION,
          client_assertion: await createClientAssertion({
            clientId: res.body.client_id,
            audience: server.url,
            key: privateKey,
          }),
        },
        { key: dpop },
      );
    expect((await tokenWith(key)).status).toBe(200);
    const other = await tokenWith(await generateDpopKey());
    expect(other.status).toBe(400);
    expect(other.body.error).toBe('invalid_dpop_proof');
  });
});

describe('client registration management (RFC 7592)', () => {
  it('reads, updates and deletes with a registration access token that rotates on each use', async () => {
    const iat = await mint({
      resources: [
        { resource: ORDERS, scopes: ['orders:read', 'orders:write'] },
        { resource: BILLING, scopes: ['billing:read'] },
      ],
    });
    const created = await register(iat.token, { client_name: 'managed', scope: 'orders:read' });
    expect(created.status).toBe(201);
    const uri = created.body.registration_client_uri as string;
    const first = created.body.registration_access_token as string;

    const read = await manage('get', uri, first);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({
      client_id: created.body.client_id,
      client_name: 'managed',
      scope: 'orders:read',
    });
    expect(read.body.client_secret).toBeUndefined();
    const second = read.body.registration_access_token as string;
    expect(second).not.toBe(first);

    const stale = await manage('get', uri, first);
    expect(stale.status).toBe(401);
    expect(stale.body.error).toBe('invalid_token');
    expect(stale.headers['www-authenticate']).toMatch(/^Bearer/);

    const beyond = await manage('put', uri, second, {
      client_id: created.body.client_id,
      scope: 'orders:read orders:admin',
    });
    expect(beyond.status).toBe(400);
    expect(beyond.body.error_description).toMatch(/^scope: "orders:admin" is not allowed/);
    const wrongSecret = await manage('put', uri, second, {
      client_id: created.body.client_id,
      client_secret: 'mfy_not-the-secret',
    });
    expect(wrongSecret.body.error_description).toMatch(/^client_secret: does not match/);
    // A refused update leaves the token as it was.
    const updated = await manage('put', uri, second, {
      ...read.body,
      client_secret: created.body.client_secret,
      registration_access_token: undefined,
      client_name: 'renamed',
      scope: undefined,
      mayfly_grants: [
        { resource: ORDERS, scopes: ['orders:write'] },
        { resource: BILLING, scopes: ['billing:read'] },
      ],
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body.client_name).toBe('renamed');
    expect(updated.body.scope.split(' ').sort()).toEqual(['billing:read', 'orders:write']);
    const third = updated.body.registration_access_token as string;
    expect((await manage('put', uri, second, { client_id: created.body.client_id })).status).toBe(401);

    const admin2 = await adminCall(server, admin, 'GET', `/clients/${created.body.client_id}`);
    expect(admin2.body.grants).toHaveLength(2);
    expect(admin2.body.grants).toEqual(
      expect.arrayContaining([
        { resource: BILLING, scopes: ['billing:read'] },
        { resource: ORDERS, scopes: ['orders:write'] },
      ]),
    );
    const events = await adminCall(server, admin, 'GET', '/audit-events', {
      query: `target=${created.body.client_id}`,
    });
    expect(events.body.items[0]).toMatchObject({
      action: 'client.update',
      actor: `registration-client:${created.body.client_id}`,
    });

    const deleted = await manage('delete', uri, third);
    expect(deleted.status).toBe(204);
    expect((await adminCall(server, admin, 'GET', `/clients/${created.body.client_id}`)).status).toBe(404);
    expect((await manage('get', uri, third)).status).toBe(401);
  });
});

describe('client names a registrant may not take', () => {
  it("refuses the name of an operator's client, ignoring case, without using the token", async () => {
    const policy = await server.createClient({ name: 'Payroll', managed_by: 'policy' });
    const hand = await server.createClient({ name: 'hand-made' });
    const tool = await server.createClient({ name: 'from-terraform', managed_by: 'terraform' });
    const iat = await mint();
    try {
      for (const name of ['payroll', 'HAND-MADE', 'From-Terraform', 'Mayfly admin']) {
        const res = await register(iat.token, { client_name: name });
        expect(res.status, name).toBe(400);
        expect(res.body).toEqual({
          error: 'invalid_client_metadata',
          error_description:
            `client_name: "${name}" is the name of a client this server's operators manage (names compare ` +
            'ignoring case), and a registered client may not take it: choose another client_name',
        });
      }
      // Registered clients may share a name: none of them is the operators'.
      const shared = await mint({ uses: 2 });
      expect((await register(shared.token, { client_name: 'robot twin' })).status).toBe(201);
      expect((await register(shared.token, { client_name: 'Robot Twin' })).status).toBe(201);

      const defaulted = await server.createClient({ name: 'registered client' });
      try {
        const res = await register(iat.token, {});
        expect(res.body.error_description).toMatch(
          /^client_name: "registered client" \(the default\) is the name/,
        );
      } finally {
        expect(
          (await adminCall(server, admin, 'DELETE', `/clients/${defaulted.client.client_id}`)).status,
        ).toBe(204);
      }
      // None of the refusals used the one use of the token.
      expect((await register(iat.token, { client_name: 'payroll robot' })).status).toBe(201);
    } finally {
      for (const client of [policy, hand, tool]) {
        await adminCall(server, admin, 'DELETE', `/clients/${client.client.client_id}`);
      }
    }
  });

  it("refuses an RFC 7592 rename onto an operator's client name, but lets a client keep its own", async () => {
    const policy = await server.createClient({ name: 'ledger', managed_by: 'policy' });
    try {
      const created = await register((await mint()).token, { client_name: 'keeper' });
      expect(created.status).toBe(201);
      const uri = created.body.registration_client_uri as string;
      const metadata = { client_id: created.body.client_id, scope: 'orders:read' };

      const taken = await manage('put', uri, created.body.registration_access_token, {
        ...metadata,
        client_name: 'Ledger',
      });
      expect(taken.status).toBe(400);
      expect(taken.body).toMatchObject({ error: 'invalid_client_metadata' });
      expect(taken.body.error_description).toMatch(/^client_name: "Ledger" is the name of a client/);
      // The refusal left the token as it was, and the name unchanged.
      const read = await manage('get', uri, created.body.registration_access_token);
      expect(read.status).toBe(200);
      expect(read.body.client_name).toBe('keeper');

      // An operator's client named like it since: the registered client keeps its name, but cannot re-take it.
      const namesake = await server.createClient({ name: 'keeper' });
      try {
        const kept = await manage('put', uri, read.body.registration_access_token, {
          ...metadata,
          client_name: 'keeper',
        });
        expect(kept.status, JSON.stringify(kept.body)).toBe(200);
        const recased = await manage('put', uri, kept.body.registration_access_token, {
          ...metadata,
          client_name: 'Keeper',
        });
        expect(recased.status).toBe(400);
        expect(recased.body.error_description).toMatch(/^client_name: "Keeper" is the name of a client/);
      } finally {
        await adminCall(server, admin, 'DELETE', `/clients/${namesake.client.client_id}`);
      }
    } finally {
      await adminCall(server, admin, 'DELETE', `/clients/${policy.client.client_id}`);
    }
  });

  it('stops managing a client through RFC 7592 once an administrator relabels it', async () => {
    for (const label of ['policy', null]) {
      const created = await register((await mint()).token, { client_name: `taken over ${String(label)}` });
      expect(created.status).toBe(201);
      const uri = created.body.registration_client_uri as string;
      const token = created.body.registration_access_token as string;
      const relabelled = await adminCall(server, admin, 'PATCH', `/clients/${created.body.client_id}`, {
        body: { managed_by: label },
      });
      expect(relabelled.status, JSON.stringify(relabelled.body)).toBe(200);

      const refusals = [
        await manage('get', uri, token),
        await manage('put', uri, token, { client_id: created.body.client_id, client_name: 'billing' }),
        await manage('delete', uri, token),
      ];
      for (const refused of refusals) {
        expect(refused.status).toBe(401);
        expect(refused.body).toEqual({
          error: 'invalid_token',
          error_description:
            'an administrator took this client over: it is no longer managed through registration',
        });
        expect(refused.headers['www-authenticate']).toMatch(/^Bearer/);
      }
      const client = await adminCall(server, admin, 'GET', `/clients/${created.body.client_id}`);
      expect(client.body).toMatchObject({ name: `taken over ${String(label)}`, managed_by: label });
    }
  });
});
