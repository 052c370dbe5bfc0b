import { once } from 'node:events';
import { connect } from 'node:net';

import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const JWT_API = 'https://api.example.com';
const OPAQUE_API = 'https://ledger.example.com';

/** A clock the test moves forward: expiry is checked without sleeping. */
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let key: DpopKey;
let caller: { id: string; secret: string };
let apiServer: { id: string; secret: string };
let ledgerServer: { id: string; secret: string };
let stranger: { id: string; secret: string };

const asClient = (c: { client: { id: string }; clientSecret: string | undefined }) => ({
  id: c.client.id,
  secret: c.clientSecret ?? '',
});

beforeAll(async () => {
  server = await startTestServer({ clock });
  await server.createResource({ identifier: JWT_API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: OPAQUE_API, scopes: ['post'], token_format: 'opaque' });
  caller = asClient(
    await server.createClient({
      name: 'caller',
      grants: [
        { resource: JWT_API, scopes: ['read'] },
        { resource: OPAQUE_API, scopes: ['post'] },
      ],
    }),
  );
  apiServer = asClient(await server.createClient({ name: 'api', introspects: [JWT_API] }));
  ledgerServer = asClient(await server.createClient({ name: 'ledger', introspects: [OPAQUE_API] }));
  stranger = asClient(await server.createClient({ name: 'stranger' }));
  key = await generateDpopKey();
});
afterAll(() => server.close());

async function issue(resource: string): Promise<string> {
  const res = await requestToken(server.url, { clientId: caller.id, secret: caller.secret, resource, key });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

const introspect = (as: { id: string; secret: string }, token: string, hint?: string) =>
  request(server.url)
    .post('/token/introspection')
    .set('Authorization', basicAuth(as.id, as.secret))
    .type('form')
    .send({ token, ...(hint ? { token_type_hint: hint } : {}) });

const revoke = (as: { id: string; secret: string }, token: string) =>
  request(server.url)
    .post('/token/revocation')
    .set('Authorization', basicAuth(as.id, as.secret))
    .type('form')
    .send({ token });

describe.each([
  ['JWT', JWT_API, () => apiServer],
  ['opaque', OPAQUE_API, () => ledgerServer],
])('%s access tokens', (_format, resource, resourceServer) => {
  it('tell the resource server of their audience everything RFC 7662 lists', async () => {
    const token = await issue(resource);
    const res = await introspect(resourceServer(), token, 'access_token');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({
      active: true,
      client_id: caller.id,
      sub: caller.id,
      aud: resource,
      iss: server.url,
      token_type: 'DPoP',
      cnf: { jkt: key.thumbprint },
    });
    expect(res.body.scope).toBe(resource === JWT_API ? 'read' : 'post');
    expect(res.body.exp - res.body.iat).toBe(300);
  });

  it('tell anyone else only that they are inactive: another resource server, a plain client, the owner', async () => {
    const token = await issue(resource);
    const otherServer = resource === JWT_API ? ledgerServer : apiServer;
    for (const who of [otherServer, stranger, caller]) {
      const res = await introspect(who, token);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ active: false });
    }
    const audit = server.logs.audit('introspection').at(-1);
    expect(audit).toMatchObject({
      outcome: 'success',
      active: false,
      reason: expect.stringContaining('not a resource server'),
    });
  });

  it('are inactive once revoked by the client they were issued to', async () => {
    const token = await issue(resource);
    const revoked = await revoke(caller, token);
    expect(revoked.status).toBe(200);
    expect((await introspect(resourceServer(), token)).body).toEqual({ active: false });
    expect(server.logs.audit('revocation').at(-1)).toMatchObject({ outcome: 'success', revoked: true });
  });

  it('refuse revocation by anyone but their owner (RFC 7009 §2.1) and stay active', async () => {
    const token = await issue(resource);
    for (const who of [stranger, resourceServer()]) {
      const res = await revoke(who, token);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        error: 'unauthorized_client',
        error_description: 'this token was not issued to the client revoking it',
      });
    }
    expect((await introspect(resourceServer(), token)).body.active).toBe(true);
    expect(server.logs.audit('revocation').at(-1)).toMatchObject({
      outcome: 'failure',
      revoked: false,
      client_id: resourceServer().id,
      token_client_id: caller.id,
      error: 'unauthorized_client',
    });
  });

  it('are inactive at once when their client is disabled or deleted', async () => {
    const doomed = await server.createClient({
      name: 'doomed',
      grants: [{ resource, scopes: [resource === JWT_API ? 'read' : 'post'] }],
    });
    const issueFor = async () =>
      (
        await requestToken(server.url, {
          clientId: doomed.client.id,
          secret: doomed.clientSecret ?? '',
          resource,
          key,
        })
      ).body.access_token as string;
    const token = await issueFor();
    expect((await introspect(resourceServer(), token)).body.active).toBe(true);
    await server.app.db
      .updateTable('client')
      .set({ disabled_at: new Date() })
      .where('id', '=', doomed.client.id)
      .execute();
    expect((await introspect(resourceServer(), token)).body).toEqual({ active: false });
    await server.app.db
      .updateTable('client')
      .set({ disabled_at: null })
      .where('id', '=', doomed.client.id)
      .execute();
    expect((await introspect(resourceServer(), token)).body.active).toBe(true);
    await server.app.db.deleteFrom('client').where('id', '=', doomed.client.id).execute();
    expect((await introspect(resourceServer(), token)).body).toEqual({ active: false });
  });

  it('are inactive once expired', async () => {
    const token = await issue(resource);
    clock.offsetMs = 301_000;
    try {
      expect((await introspect(resourceServer(), token)).body).toEqual({ active: false });
    } finally {
      clock.offsetMs = 0;
    }
  });
});

describe('invalid input', () => {
  it.each([
    ['a random string', 'not-a-token'],
    ['a JWT signed by someone else', 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJqdGkiOiJ4In0.c2ln'],
    ['a tampered JWT', 'TAMPER'],
    ['an empty-looking JWT', 'a.b.c'],
  ])('answers inactive for %s', async (_case, value) => {
    let token = value;
    if (value === 'TAMPER') {
      const [header, payload, signature] = (await issue(JWT_API)).split('.');
      const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<
        string,
        unknown
      >;
      claims.scope = 'read write';
      token = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    }
    const res = await introspect(apiServer, token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ active: false });
    expect((await revoke(caller, token)).status).toBe(200);
  });

  it('requires client authentication', async () => {
    const token = await issue(JWT_API);
    const anonymous = await request(server.url).post('/token/introspection').type('form').send({ token });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('invalid_client');
    const wrong = await introspect({ id: apiServer.id, secret: 'wrong' }, token);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_client');
    const unauthenticatedRevoke = await revoke({ id: caller.id, secret: 'wrong' }, token);
    expect(unauthenticatedRevoke.status).toBe(401);
    expect((await introspect(apiServer, token)).body.active).toBe(true);
  });

  it('refuses a missing token, a repeated token and a JSON body', async () => {
    const missing = await request(server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(apiServer.id, apiServer.secret))
      .type('form')
      .send({});
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('invalid_request');

    const twice = await request(server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(apiServer.id, apiServer.secret))
      .type('form')
      .send('token=a&token=b');
    expect(twice.status).toBe(400);
    expect(twice.body.error).toBe('invalid_request');

    const json = await request(server.url)
      .post('/token/revocation')
      .set('Authorization', basicAuth(caller.id, caller.secret))
      .send({ token: 'x' });
    expect(json.status).toBe(400);
    expect(json.body.error).toBe('invalid_request');
  });

  it('refuses an oversized body with an OAuth error', async () => {
    const res = await request(server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(apiServer.id, apiServer.secret))
      .type('form')
      .send({ token: 'x'.repeat(100_000) });
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('invalid_request');
  });

  it('answers a body cut short with an OAuth error, one audit line and no server error', async () => {
    const before = server.logs.audit('introspection').length;
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    socket.write(
      [
        'POST /token/introspection HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        `Authorization: ${basicAuth(apiServer.id, apiServer.secret)}`,
        'Content-Type: application/x-www-form-urlencoded',
        'Content-Length: 1000',
        '',
        'token=abc',
      ].join('\r\n'),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await expect.poll(() => server.logs.audit('introspection').length).toBe(before + 1);
    expect(server.logs.audit('introspection').at(-1)).toMatchObject({
      outcome: 'failure',
      error: 'invalid_request',
    });
    expect(server.logs.records().filter((r) => r.level === 'error')).toEqual([]);
  });

  it('keeps the revocation of a JWT only until the token would have expired', async () => {
    const token = await issue(JWT_API);
    expect((await revoke(caller, token)).status).toBe(200);
    const row = await server.app.db
      .selectFrom('revoked_token')
      .selectAll()
      .orderBy('revoked_at', 'desc')
      .executeTakeFirstOrThrow();
    expect(row.client_id).toBe(caller.id);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      exp: number;
      jti: string;
    };
    expect(row.jti).toBe(claims.jti);
    expect(row.expires_at.getTime()).toBe(claims.exp * 1000);
  });
});
