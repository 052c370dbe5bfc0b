import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { expectFailure, findFreePort, startCliServer, type CliServer } from './helpers.ts';

let cli: CliServer;
let dir: string;

// Nonces required: the admin token requests of the set-up and the demo's own token request must both retry.
beforeAll(async () => {
  cli = await startCliServer({ env: { MAYFLY_DPOP_REQUIRE_NONCE: 'true' } });
  dir = await mkdtemp(join(tmpdir(), 'mayfly-demo-'));
});
afterAll(async () => {
  await cli.close();
  await rm(dir, { recursive: true, force: true });
});

/** What a newcomer types: the resource, then both clients with --json into files. */
async function prepare(
  name: string,
  resource: string,
  format: 'jwt' | 'opaque',
  auth = 'client_secret_basic',
) {
  expect(
    (
      await cli.run([
        'resource',
        'create',
        resource,
        '--scopes',
        'orders:read orders:write',
        '--format',
        format,
      ])
    ).code,
  ).toBe(0);
  const client = await cli.run([
    'client',
    'create',
    '--name',
    `${name}-client`,
    '--grant',
    `${resource}=orders:read`,
    '--auth',
    auth,
    '--json',
  ]);
  const server = await cli.run([
    'client',
    'create',
    '--name',
    `${name}-api`,
    '--introspects',
    resource,
    '--json',
  ]);
  const files = { client: join(dir, `${name}-client.json`), server: join(dir, `${name}-api.json`) };
  await writeFile(files.client, client.stdout);
  await writeFile(files.server, server.stdout);
  const secrets = [client.stdout, server.stdout].map(
    (json) => (JSON.parse(json) as { client_secret: string }).client_secret,
  );
  return { files, secrets };
}

function expectWalkthrough(stdout: string, secrets: string[]): string[] {
  const lines = stdout.trimEnd().split('\n');
  lines.forEach((line, i) => {
    expect(line).toMatch(new RegExp(`^${i + 1}\\. `));
  });
  for (const secret of secrets) expect(stdout).not.toContain(secret);
  expect(stdout).not.toMatch(/mfy_/);
  return lines;
}

describe('mayfly demo', () => {
  it('walks a JWT token through obtain, use at a sample resource on the identifier port, introspect, revoke', async () => {
    const port = await findFreePort();
    const resource = `http://localhost:${port}`;
    const { files, secrets } = await prepare('jwt', resource, 'jwt');
    const result = await cli.spawn(['demo', '--client', files.client, '--resource-server', files.server]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = expectWalkthrough(result.stdout, secrets);
    expect(lines).toEqual([
      expect.stringMatching(
        /^1\. Client "jwt-client" \(\S+\) may get tokens for http:\/\/localhost:\d+ with scope "orders:read"; "jwt-api" is the resource server/,
      ),
      `2. Read the server's metadata at ${cli.server.url}/.well-known/oauth-authorization-server: issuer ${cli.server.url}.`,
      expect.stringMatching(/^3\. Generated a fresh ES256 key pair/),
      '4. Obtained an access token at /token (client_credentials, client_secret_basic): type DPoP, scope "orders:read", expires in 300 s. The token itself is not shown.',
      expect.stringMatching(
        new RegExp(
          `^5\\. Started a sample protected resource for ${resource} at http://127\\.0\\.0\\.1:${port}\\. It validates JWT access tokens itself .*validateJwtAccessToken`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^6\\. Called GET http://127\\.0\\.0\\.1:${port}/ .*: 200 \\{"message":"hello, \\S+","client_id":"\\S+","scope":"orders:read"\\}$`,
        ),
      ),
      expect.stringMatching(/^7\. Called it again with the token alone.*: 401\./),
      expect.stringMatching(
        /^8\. Introspected the token at \/token\/introspection as "jwt-api": active: true, scope: orders:read, exp: \S+Z \(in \d+ s\)\.$/,
      ),
      '9. Revoked the token at /token/revocation as "jwt-client".',
      expect.stringMatching(/^10\. Introspected it again: active: false\./),
      '11. Stopped the sample resource. Done.',
    ]);
    // The sample resource is gone: its port is free again.
    const again = createServer().listen(port, '127.0.0.1');
    await once(again, 'listening');
    await new Promise((resolve) => again.close(resolve));
  });

  it('an opaque token is checked by introspection at a sample resource on a free port', async () => {
    const { files, secrets } = await prepare(
      'opaque',
      'https://opaque.example.com',
      'opaque',
      'client_secret_post',
    );
    const result = await cli.spawn(['demo', '--client', files.client, '--resource-server', files.server]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = expectWalkthrough(result.stdout, secrets);
    expect(lines[3]).toContain('(client_credentials, client_secret_post)');
    expect(lines[4]).toMatch(
      /^5\. Started a sample protected resource for https:\/\/opaque\.example\.com at http:\/\/127\.0\.0\.1:\d+\. The token is opaque, so it asks the server by introspection/,
    );
    expect(lines[5]).toMatch(/: 200 \{"message":"hello, /);
    expect(lines[9]).toBe('10. Introspected it again: active: false.');
    expect(lines).toHaveLength(11);
  });

  it('refuses files that cannot make a walkthrough, saying what to create', async () => {
    const { files } = await prepare('mismatch', 'https://mismatch.example.com', 'jwt');
    const unrelated = await cli.run([
      'client',
      'create',
      '--name',
      'unrelated-api',
      '--introspects',
      'https://opaque.example.com',
      '--json',
    ]);
    await writeFile(join(dir, 'unrelated.json'), unrelated.stdout);
    expectFailure(
      await cli.run(['demo', '--client', files.client, '--resource-server', join(dir, 'unrelated.json')]),
      1,
      /introspects none of the resources mismatch-client .* holds a grant on; create the resource server with --introspects <uri> for one of: https:\/\/mismatch\.example\.com/,
    );
    expectFailure(
      await cli.run(['demo', '--client', join(dir, 'nope.json'), '--resource-server', files.server]),
      1,
      `--client ${join(dir, 'nope.json')}: cannot read it (ENOENT)`,
    );
    await writeFile(join(dir, 'text.json'), 'client_id=abc');
    expectFailure(
      await cli.run(['demo', '--client', join(dir, 'text.json'), '--resource-server', files.server]),
      1,
      'not valid JSON',
    );
    const listed = await cli.run(['client', 'list', '--json']);
    await writeFile(join(dir, 'list.json'), listed.stdout);
    expectFailure(
      await cli.run(['demo', '--client', files.client, '--resource-server', join(dir, 'list.json')]),
      1,
      "is not the output of 'mayfly client create --json'",
    );
    const shown = await cli.run(['client', 'show', JSON.parse(unrelated.stdout).client_id, '--json']);
    await writeFile(join(dir, 'shown.json'), shown.stdout);
    expectFailure(
      await cli.run(['demo', '--client', files.client, '--resource-server', join(dir, 'shown.json')]),
      1,
      'the demo needs a client with a secret',
    );
  });
});
