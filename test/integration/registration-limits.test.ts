/**
 * Dynamic registration has rate limits of its own: requests per source address (RFC 7591 registrations and RFC
 * 7592 management alike), and registrations per initial access token from any address. Refused with 429 and
 * Retry-After before the token or the body is looked at.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken, type AdminToken } from '../support/admin.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const ORDERS = 'https://orders.example.com';

let server: TestServer;
let admin: AdminToken;

beforeAll(async () => {
  server = await startTestServer({
    env: {
      MAYFLY_REGISTRATION: 'true',
      MAYFLY_TRUST_PROXY: 'true',
      MAYFLY_RATE_LIMIT_REGISTRATION_PER_ADDRESS: '4',
      MAYFLY_RATE_LIMIT_REGISTRATION_PER_TOKEN: '2',
    },
  });
  admin = await obtainAdminToken(server);
  await server.createResource({ identifier: ORDERS, scopes: ['orders:read'] });
});
afterAll(() => server.close());

async function mint(uses: number): Promise<string> {
  const res = await adminCall(server, admin, 'POST', '/registration-tokens', {
    body: { resources: [{ resource: ORDERS, scopes: ['orders:read'] }], expires_in: 3600, uses },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return (res.body as { token: string }).token;
}

function register(token: string, address: string, name: string) {
  return request(server.url)
    .post('/register')
    .set('Authorization', `Bearer ${token}`)
    .set('X-Forwarded-For', address)
    .set('Content-Type', 'application/json')
    .send(JSON.stringify({ client_name: name, grant_types: ['client_credentials'] }));
}

function expectLimited(res: request.Response, fragment: string): void {
  expect(res.status).toBe(429);
  expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.body.error).toBe('temporarily_unavailable');
  expect(res.body.error_description).toContain(fragment);
}

describe('registration rate limits', () => {
  it('limits registrations per initial access token, from whatever address', async () => {
    const token = await mint(10);
    expect((await register(token, '203.0.113.1', 'one')).status).toBe(201);
    expect((await register(token, '203.0.113.2', 'two')).status).toBe(201);
    expectLimited(await register(token, '203.0.113.3', 'three'), 'with this initial access token');
    // Another token is not held back by this one's limit.
    expect((await register(await mint(1), '203.0.113.4', 'four')).status).toBe(201);
    const audit = server.logs
      .audit('registration')
      .filter((line) => line.error === 'temporarily_unavailable');
    expect(audit).toHaveLength(1);
    expect(server.logs.text()).not.toContain(token);
  });

  it('limits every registration request per address, made-up tokens and management requests included', async () => {
    const address = '198.51.100.9';
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await register(`made-up-${i}`, address, `x${i}`)).status);
    const manage = await request(server.url)
      .get('/register/some-client')
      .set('Authorization', 'Bearer made-up')
      .set('X-Forwarded-For', address);
    statuses.push(manage.status);
    expect(statuses).toEqual([401, 401, 401, 401]);
    expectLimited(await register(await mint(1), address, 'late'), 'from this address');
    expectLimited(
      await request(server.url).get('/register/some-client').set('X-Forwarded-For', address),
      'from this address',
    );
  });
});
