import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseDuration } from '../../src/cli/registration.commands.ts';
import { expectFailure, startCliServer, type CliServer } from './helpers.ts';

const API = 'https://api.example.com';

let cli: CliServer;

beforeAll(async () => {
  cli = await startCliServer({ env: { MAYFLY_REGISTRATION: 'true' } });
  await cli.server.createResource({ identifier: API, scopes: ['orders:read', 'orders:write'] });
});
afterAll(() => cli.close());

describe('mayfly registration-token', () => {
  it('create prints the token once, list never shows it, and the token registers one client', async () => {
    const created = await cli.spawn([
      'registration-token',
      'create',
      '--resource',
      API,
      '--scopes',
      'orders:read',
      '--expires-in',
      '1h',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const token = /^token: +(mfyi_\S+)$/m.exec(created.stdout)?.[1];
    expect(token).toBeDefined();
    expect(created.stdout.split(token ?? '')).toHaveLength(2);
    expect(created.stdout).toMatch(/^uses left: +1 of 1$/m);
    expect(created.stderr).toContain('will not show it again');

    const listed = await cli.run(['registration-token', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/active +1\/1/);
    expect(listed.stdout).not.toContain(token);

    const registered = await request(cli.server.url)
      .post('/register')
      .set('Authorization', `Bearer ${token}`)
      .set('Content-Type', 'application/json')
      .send('{"client_name":"from the cli"}');
    expect(registered.status).toBe(201);
    expect(registered.body.scope).toBe('orders:read');
  });

  it('revokes a token by id', async () => {
    const created = await cli.json<{ id: string; token: string }>([
      'registration-token',
      'create',
      '--grant',
      `${API}=orders:read,orders:write`,
      '--expires-in',
      '30m',
      '--uses',
      '3',
      '--auth',
      'private_key_jwt',
    ]);
    expect(created.token).toMatch(/^mfyi_/);
    expect((await cli.run(['registration-token', 'revoke', created.id])).code).toBe(0);
    expectFailure(await cli.run(['registration-token', 'revoke', created.id]), 1, /registration token/);
  });

  it('refuses incomplete or malformed options before sending anything', async () => {
    expectFailure(
      await cli.run(['registration-token', 'create', '--resource', API, '--expires-in', '1h']),
      2,
      '--resource and --scopes go together',
    );
    expectFailure(
      await cli.run(['registration-token', 'create', '--resource', API, '--scopes', 'orders:read']),
      2,
      '--expires-in is required',
    );
    expect(parseDuration('90', '--expires-in')).toBe(90);
    expect(parseDuration('15m', '--expires-in')).toBe(900);
    expect(parseDuration('2d', '--expires-in')).toBe(172_800);
    expect(() => parseDuration('1 hour', '--expires-in')).toThrow(/expects a duration/);
  });
});
