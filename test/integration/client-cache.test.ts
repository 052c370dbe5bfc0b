import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { rotateClientSecret, setClientEnabled, updateClient } from '../../src/clients/client.service.ts';
import { updateResource } from '../../src/clients/resource.service.ts';
import type { Clock } from '../../src/clock.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

/**
 * The token path keeps what it read about a client and reuses it while `client.version` is unchanged: every
 * change must still apply to the very next request. Each case warms the cache first, then changes one thing.
 */
const API = 'https://api.example.com';
const OTHER = 'https://other.example.com';

const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer({ clock });
  await server.createResource({ identifier: API, scopes: ['read', 'write'] });
  await server.createResource({ identifier: OTHER, scopes: ['read'] });
  key = await generateDpopKey();
});
afterAll(() => server.close());

async function newClient(name: string) {
  const { client, clientSecret } = await server.createClient({
    name,
    grants: [
      { resource: API, scopes: ['read', 'write'] },
      { resource: OTHER, scopes: ['read'] },
    ],
  });
  return { id: client.id, secret: clientSecret ?? '' };
}

const token = (client: { id: string; secret: string }, resource = API, scope?: string) =>
  requestToken(server.url, { clientId: client.id, secret: client.secret, resource, scope, key });

async function version(clientId: string): Promise<string> {
  const row = await server.app.db
    .selectFrom('client')
    .select('version')
    .where('id', '=', clientId)
    .executeTakeFirstOrThrow();
  return String(row.version);
}

describe('a cached client', () => {
  it('is refused at once when disabled, and served again once enabled', async () => {
    const client = await newClient('disable');
    expect((await token(client)).status).toBe(200);
    await setClientEnabled(server.app.admin, TEST_ACTOR, client.id, false);
    const refused = await token(client);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('invalid_client');
    await setClientEnabled(server.app.admin, TEST_ACTOR, client.id, true);
    expect((await token(client)).status).toBe(200);
  });

  it('loses a rotated-out secret at once, and one that expires when it expires', async () => {
    const client = await newClient('rotate');
    expect((await token(client)).status).toBe(200);
    const rotated = await rotateClientSecret(server.app.admin, TEST_ACTOR, client.id, {
      previous_secret_expires_in: 0,
    });
    expect((await token(client)).status).toBe(401);
    const next = { id: client.id, secret: rotated.client_secret ?? '' };
    expect((await token(next)).status).toBe(200);

    // A previous secret with an overlap works until the overlap ends, with nothing changed in the database.
    const again = await rotateClientSecret(server.app.admin, TEST_ACTOR, client.id, {
      previous_secret_expires_in: 60,
    });
    expect((await token(next)).status).toBe(200);
    clock.offsetMs = 61_000;
    try {
      expect((await token(next)).status).toBe(401);
      expect((await token({ id: client.id, secret: again.client_secret ?? '' })).status).toBe(200);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it('follows grant and resource changes at once', async () => {
    const client = await newClient('grants');
    expect((await token(client, OTHER)).status).toBe(200);
    await updateClient(server.app.admin, TEST_ACTOR, client.id, {
      grants: [{ resource: API, scopes: ['read'] }],
    });
    const gone = await token(client, OTHER);
    expect(gone.status).toBe(400);
    expect(gone.body.error).toBe('invalid_target');
    const narrowed = await token(client, API, 'write');
    expect(narrowed.status).toBe(400);
    expect(narrowed.body.error).toBe('invalid_scope');

    const before = await token(client, API);
    expect(before.body.expires_in).toBe(300);
    await updateResource(server.app.admin, TEST_ACTOR, API, { token_ttl: 120 });
    const after = await token(client, API);
    expect(after.status).toBe(200);
    expect(after.body.expires_in).toBe(120);
    const claims = decodeJwt(after.body.access_token as string);
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(120);
  });

  it('has its version bumped by every change the token path reads, and only by those', async () => {
    const client = await newClient('versions');
    const v0 = await version(client.id);
    expect((await token(client)).status).toBe(200);
    expect(await version(client.id)).toBe(v0);

    await updateClient(server.app.admin, TEST_ACTOR, client.id, { name: 'renamed' });
    const v1 = await version(client.id);
    expect(Number(v1)).toBeGreaterThan(Number(v0));
    await rotateClientSecret(server.app.admin, TEST_ACTOR, client.id, { previous_secret_expires_in: 10 });
    const v2 = await version(client.id);
    expect(Number(v2)).toBeGreaterThan(Number(v1));
    await updateResource(server.app.admin, TEST_ACTOR, OTHER, { name: 'another name' });
    const v3 = await version(client.id);
    expect(Number(v3)).toBeGreaterThan(Number(v2));
    await server.app.db.deleteFrom('client_grant').where('client_id', '=', client.id).execute();
    expect(Number(await version(client.id))).toBeGreaterThan(Number(v3));
  });
});
