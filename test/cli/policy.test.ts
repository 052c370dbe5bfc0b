import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

import { deleteClient, listClientPage, setClientEnabled } from '../../src/clients/client.service.ts';
import { deleteResource, listResourcePage } from '../../src/clients/resource.service.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { TEST_ACTOR } from '../support/server.ts';
import { expectFailure, startCliServer, type CliServer } from './helpers.ts';

/*
 * Policy as code: `mayfly apply` and `mayfly export` against one real server, reset to its bootstrap state (the
 * admin client and the admin API's resource) before each test. The first test runs the real binary; the others
 * run the same entry function in this process.
 */

const ORDERS = 'https://orders.test';
const STOCK = 'https://stock.test';
const SAMPLE = fileURLToPath(new URL('../../src/policy/example-policy.yaml', import.meta.url));
const SECRET_WARNING =
  'Save the client secrets now: Mayfly keeps only a hash of each and will not show them again.\n';

let cli: CliServer;
let dir: string;
let adminClientId: string;
let signerJwk: JWK;
let pinnedKey: string;

interface FieldChange {
  field: string;
  from?: unknown;
  to: unknown;
}

interface ApplyResult {
  file: string;
  dry_run: boolean;
  summary: Record<'create' | 'update' | 'replace' | 'delete' | 'unchanged' | 'undeclared', number>;
  changes: {
    action: string;
    kind: string;
    key: string;
    client_id?: string;
    managed_by?: string | null;
    adopted?: true;
    fields: FieldChange[];
  }[];
  secrets?: { name: string; client_id: string; client_secret: string }[];
  secrets_file?: string;
}

interface ClientJson {
  client_id: string;
  name: string;
  auth_method: string;
  grants: { resource: string; scopes: string[] }[];
  managed_by: string | null;
}

interface ResourceJson {
  identifier: string;
  scopes: string[];
  token_ttl: number;
  managed_by: string | null;
  reserved: boolean;
}

beforeAll(async () => {
  cli = await startCliServer();
  dir = await mkdtemp(join(tmpdir(), 'mayfly-policy-'));
  adminClientId = (JSON.parse(await readFile(cli.credentialsPath, 'utf8')) as { client_id: string })
    .client_id;
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  signerJwk = { ...(await exportJWK(publicKey)), kid: 'signer-1' };
  pinnedKey = await calculateJwkThumbprint(await exportJWK((await generateKeyPair('ES256')).publicKey));
});
afterAll(async () => {
  await cli.close();
  await rm(dir, { recursive: true, force: true });
});

/** Back to what the bootstrap made: everything else goes, through the services rather than the code under test. */
beforeEach(async () => {
  const deps = cli.server.app.admin;
  for (const client of (await listClientPage(deps, {}, { limit: 1000 })).items) {
    if (client.client_id !== adminClientId) await deleteClient(deps, TEST_ACTOR, client.client_id);
  }
  for (const resource of (await listResourcePage(deps.db, { limit: 1000 })).items) {
    if (!resource.reserved) await deleteResource(deps, TEST_ACTOR, resource.id, { force: true });
  }
});

/** A policy as a test spoils it: any member may be changed or removed. */
type PolicyObject = Record<string, unknown> & {
  resources: Record<string, unknown>[];
  clients: Record<string, unknown>[];
};

function basePolicy(): PolicyObject {
  return {
    version: 1,
    resources: [
      {
        identifier: ORDERS,
        name: 'Orders',
        scopes: ['orders:read', 'orders:write'],
        token_ttl: 300,
        token_format: 'jwt',
      },
      { identifier: STOCK, scopes: ['stock:read'], token_format: 'opaque' },
    ],
    clients: [
      {
        name: 'billing',
        grants: [{ resource: ORDERS, scopes: ['orders:read'] }],
        rate_limits: { tokens_per_minute: 120 },
      },
      { name: 'stock-api', auth_method: 'client_secret_post', introspects: [STOCK] },
      {
        name: 'signer',
        auth_method: 'private_key_jwt',
        jwks: { keys: [signerJwk] },
        grants: [{ resource: STOCK, scopes: ['stock:read'] }],
        dpop_jkts: [pinnedKey],
      },
    ],
  };
}

let files = 0;

/** A policy file: YAML from an object or a text, JSON when the name ends in .json. */
async function writePolicy(document: unknown, name = `policy-${++files}.yaml`): Promise<string> {
  const path = join(dir, name);
  const text =
    typeof document === 'string'
      ? document
      : name.endsWith('.json')
        ? JSON.stringify(document, null, 2)
        : stringify(document);
  await writeFile(path, text);
  return path;
}

async function apply(path: string, ...flags: string[]): Promise<ApplyResult> {
  return cli.json<ApplyResult>(['apply', path, ...flags]);
}

async function auditIds(): Promise<string[]> {
  return (await cli.json<{ items: { id: string }[] }>(['audit', 'list', '--all'])).items.map((e) => e.id);
}

async function newAuditActions(since: readonly string[]): Promise<string[]> {
  const seen = new Set(since);
  const { items } = await cli.json<{ items: { id: string; action: string }[] }>(['audit', 'list', '--all']);
  return items
    .filter((e) => !seen.has(e.id))
    .map((e) => e.action)
    .sort();
}

async function listClients(): Promise<ClientJson[]> {
  return (await cli.json<{ items: ClientJson[] }>(['client', 'list', '--all'])).items;
}

async function listResources(): Promise<ResourceJson[]> {
  return (await cli.json<{ items: ResourceJson[] }>(['resource', 'list', '--all'])).items;
}

const byAction = (result: ApplyResult, action: string) =>
  result.changes.filter((c) => c.action === action).map((c) => `${c.kind} ${c.key}`);

async function tokenStatus(clientId: string, secret: string, resource: string): Promise<number> {
  const response = await requestToken(cli.server.url, {
    clientId,
    secret,
    resource,
    key: await generateDpopKey(),
  });
  return response.status;
}

describe('mayfly apply', () => {
  it('creates what the file declares, labelled policy, and prints each new secret once', async () => {
    const file = await writePolicy(basePolicy());
    const result = await cli.spawn(['apply', file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe(SECRET_WARNING);
    expect(result.stdout).toContain(
      `Applied ${file}:\n` +
        `  create     resource ${ORDERS}\n` +
        '               name: Orders\n' +
        '               scopes: orders:read orders:write\n' +
        '               token_ttl: 300 s\n' +
        '               token_format: jwt\n',
    );
    expect(result.stdout).toContain(
      '  create     client billing\n' +
        '               auth_method: client_secret_basic\n' +
        `               grants: ${ORDERS}=orders:read\n` +
        '               rate_limits: tokens 120/min, introspections server default\n',
    );
    expect(result.stdout).toContain('5 created, 0 unchanged.\nNew client secrets, shown this once:\n');
    const billing = /^billing +(\S+) +(mfy_\S+)$/m.exec(result.stdout);
    expect(/^stock-api +\S+ +mfy_\S+$/m.test(result.stdout)).toBe(true);
    expect(result.stdout).not.toMatch(/^signer /m);
    expect(await tokenStatus(billing?.[1] ?? '', billing?.[2] ?? '', ORDERS)).toBe(200);

    const clients = await listClients();
    expect(clients.filter((c) => c.managed_by === 'policy').map((c) => c.name)).toEqual([
      'billing',
      'signer',
      'stock-api',
    ]);
    expect((await listResources()).filter((r) => r.managed_by === 'policy').map((r) => r.identifier)).toEqual(
      [ORDERS, STOCK],
    );

    const again = await cli.run(['apply', file]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.stdout).toMatch(new RegExp(`^No changes: ${file} matches the server\\.\n`));
    expect(again.stdout).toContain(`  unchanged  client billing (client_id ${billing?.[1] ?? ''})\n`);
    expect(again.stdout).toContain('\n5 unchanged.\n');
    expect(again.stdout).not.toContain('mfy_');
  });

  it('changes nothing when the same file is applied again: every object unchanged, no audit event', async () => {
    const file = await writePolicy(basePolicy());
    const first = await apply(file);
    expect(first.summary).toEqual({
      create: 5,
      update: 0,
      replace: 0,
      delete: 0,
      unchanged: 0,
      undeclared: 0,
    });
    expect(first.secrets?.map((s) => s.name).sort()).toEqual(['billing', 'stock-api']);

    const before = await auditIds();
    const again = await apply(file);
    expect(again.summary).toEqual({
      create: 0,
      update: 0,
      replace: 0,
      delete: 0,
      unchanged: 5,
      undeclared: 0,
    });
    expect(again.changes.every((c) => c.action === 'unchanged' && c.fields.length === 0)).toBe(true);
    expect(again.secrets).toEqual([]);
    expect(await auditIds()).toEqual(before);
  });

  it('writes new secrets to --secrets-out (mode 0600, never overwritten) instead of printing them', async () => {
    const file = await writePolicy(basePolicy());
    const out = join(dir, 'new-secrets.json');
    const result = await cli.run(['apply', file, '--secrets-out', out]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).not.toContain('mfy_');
    expect(result.stdout).toContain(`Wrote 2 new client secrets to ${out} (mode 0600).\n`);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(await readFile(out, 'utf8')) as {
      name: string;
      client_id: string;
      client_secret: string;
    }[];
    expect(saved.map((s) => s.name)).toEqual(['billing', 'stock-api']);
    const billing = saved.find((s) => s.name === 'billing');
    expect(await tokenStatus(billing?.client_id ?? '', billing?.client_secret ?? '', ORDERS)).toBe(200);

    // Nothing new to hand over: the file is left alone and the apply succeeds.
    expect((await cli.run(['apply', file, '--secrets-out', out])).code).toBe(0);

    // A new secret while the file exists: refused before anything is written.
    const grown = basePolicy();
    grown.clients.push({
      name: 'newcomer',
      grants: [{ resource: ORDERS, scopes: ['orders:read'] }],
    });
    const before = await auditIds();
    expectFailure(
      await cli.run(['apply', await writePolicy(grown), '--secrets-out', out]),
      1,
      `--secrets-out ${out} exists, and apply never overwrites a secrets file`,
    );
    expect(await auditIds()).toEqual(before);
    expect(await readFile(out, 'utf8')).toBe(`${JSON.stringify(saved, null, 2)}\n`);

    const json = await apply(await writePolicy(grown), '--secrets-out', join(dir, 'more-secrets.json'));
    expect(json.secrets_file).toBe(join(dir, 'more-secrets.json'));
    expect(json).not.toHaveProperty('secrets');
  });

  it('updates only the fields that changed, and ignores the order of scopes', async () => {
    await apply(await writePolicy(basePolicy()));
    const billingId = (await listClients()).find((c) => c.name === 'billing')?.client_id;
    const changed = basePolicy();
    changed.resources[0] = {
      ...changed.resources[0]!,
      token_ttl: 600,
      scopes: ['orders:write', 'orders:read'],
    };
    changed.clients[0] = {
      ...changed.clients[0]!,
      grants: [{ resource: ORDERS, scopes: ['orders:write', 'orders:read'] }],
    };

    const before = await auditIds();
    const result = await apply(await writePolicy(changed));
    expect(result.changes.filter((c) => c.action !== 'unchanged')).toEqual([
      {
        action: 'update',
        kind: 'resource',
        key: ORDERS,
        fields: [{ field: 'token_ttl', from: 300, to: 600 }],
      },
      {
        action: 'update',
        kind: 'client',
        key: 'billing',
        client_id: billingId,
        fields: [
          {
            field: 'grants',
            from: [{ resource: ORDERS, scopes: ['orders:read'] }],
            to: [{ resource: ORDERS, scopes: ['orders:write', 'orders:read'] }],
          },
        ],
      },
    ]);
    expect(result.summary.unchanged).toBe(3);
    expect(result.secrets).toEqual([]);
    expect(await newAuditActions(before)).toEqual(['client.update', 'resource.update']);
    expect((await listResources()).find((r) => r.identifier === ORDERS)?.token_ttl).toBe(600);
  });

  it('removes a scope and the grant that used it in one apply, widening before and narrowing after', async () => {
    const first = {
      version: 1,
      resources: [{ identifier: ORDERS, scopes: ['a', 'b'] }],
      clients: [{ name: 'user', grants: [{ resource: ORDERS, scopes: ['a', 'b'] }] }],
    };
    await apply(await writePolicy(first));
    const second = {
      version: 1,
      resources: [{ identifier: ORDERS, scopes: ['a', 'c'] }],
      clients: [{ name: 'user', grants: [{ resource: ORDERS, scopes: ['a', 'c'] }] }],
    };
    const result = await apply(await writePolicy(second));
    expect(byAction(result, 'update')).toEqual([`resource ${ORDERS}`, 'client user']);
    expect((await listResources()).find((r) => r.identifier === ORDERS)?.scopes).toEqual(['a', 'c']);
    expect((await listClients()).find((c) => c.name === 'user')?.grants).toEqual([
      { resource: ORDERS, scopes: ['a', 'c'] },
    ]);
    expect((await apply(await writePolicy(second))).summary.unchanged).toBe(2);
  });

  it('--dry-run prints the diff and writes nothing', async () => {
    await apply(await writePolicy(basePolicy()));
    const stockApi = (await listClients()).find((c) => c.name === 'stock-api');
    const changed = basePolicy();
    changed.resources[0]!.token_ttl = 600;
    changed.clients = [changed.clients[0]!, changed.clients[2]!, { name: 'newcomer', bearer_allowed: true }];
    const file = await writePolicy(changed);
    const before = await auditIds();

    const result = await cli.run(['apply', file, '--dry-run', '--prune']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      `Plan for ${file} (dry run: nothing is written):\n` +
        `  update     resource ${ORDERS}\n` +
        '               token_ttl: 300 s → 600 s\n' +
        `  unchanged  resource ${STOCK}\n` +
        `  unchanged  client billing (client_id ${(await listClients()).find((c) => c.name === 'billing')?.client_id ?? ''})\n` +
        `  unchanged  client signer (client_id ${(await listClients()).find((c) => c.name === 'signer')?.client_id ?? ''})\n` +
        '  create     client newcomer\n' +
        '               auth_method: client_secret_basic\n' +
        '               bearer_allowed: true\n' +
        `  delete     client stock-api (client_id ${stockApi?.client_id ?? ''}, managed_by policy)\n` +
        '1 to create, 1 to update, 1 to delete, 3 unchanged. Run again without --dry-run to apply.\n',
    );
    const json = await apply(file, '--dry-run', '--prune');
    expect(json.dry_run).toBe(true);
    expect(json.summary).toEqual({
      create: 1,
      update: 1,
      replace: 0,
      delete: 1,
      unchanged: 3,
      undeclared: 0,
    });
    expect(json.secrets).toEqual([]);

    expect(await auditIds()).toEqual(before);
    expect((await listClients()).map((c) => c.name).sort()).toEqual([
      'Mayfly admin',
      'billing',
      'signer',
      'stock-api',
    ]);
  });

  it('--prune deletes only the objects a policy created that the file no longer declares', async () => {
    await apply(await writePolicy(basePolicy()));
    await cli.server.createResource({ identifier: 'https://hand.test', scopes: ['x'] });
    await cli.server.createClient({
      name: 'hand',
      grants: [{ resource: 'https://hand.test', scopes: ['x'] }],
    });
    const smaller = basePolicy();
    smaller.resources = [smaller.resources[0]!];
    smaller.clients = [smaller.clients[0]!];
    const file = await writePolicy(smaller);

    const kept = await cli.run(['apply', file]);
    expect(kept.stdout).toContain(
      '5 objects on the server that the file does not declare left as they are ' +
        '(--prune deletes those a policy created, --prune-all all of them).\n',
    );

    const before = await auditIds();
    const result = await apply(file, '--prune');
    expect(byAction(result, 'delete')).toEqual([`resource ${STOCK}`, 'client signer', 'client stock-api']);
    expect(result.summary.undeclared).toBe(2);
    expect(await newAuditActions(before)).toEqual(['client.delete', 'client.delete', 'resource.delete']);
    expect((await listClients()).map((c) => c.name).sort()).toEqual(['Mayfly admin', 'billing', 'hand']);
    expect((await listResources()).map((r) => r.identifier)).toContain('https://hand.test');

    const human = await cli.run(['apply', file, '--prune']);
    expect(human.stdout).toContain(
      '2 objects on the server that the file does not declare left as they are ' +
        '(not created by a policy; --prune-all deletes them).\n',
    );
  });

  it('--prune refuses to delete a resource that a client left in place still uses, and writes nothing', async () => {
    await apply(await writePolicy(basePolicy()));
    const hand = await cli.server.createClient({
      name: 'hand',
      grants: [{ resource: STOCK, scopes: ['stock:read'] }],
    });
    const smaller = basePolicy();
    smaller.resources = [smaller.resources[0]!];
    smaller.clients = [smaller.clients[0]!];
    const file = await writePolicy(smaller);
    const before = await auditIds();
    expectFailure(
      await cli.run(['apply', file, '--prune']),
      1,
      `mayfly: ${file}: resource ${STOCK}: --prune would delete it, but client "hand" (client_id ` +
        `${hand.client.client_id}), which the file does not declare, depends on it: declare the resource, or ` +
        'change that client\n',
    );
    expect(await auditIds()).toEqual(before);
  });

  it('--prune-all deletes objects made by hand too, but never the admin client or the admin resource', async () => {
    await apply(await writePolicy(basePolicy()));
    await cli.server.createResource({ identifier: 'https://hand.test', scopes: ['x'] });
    const hand = await cli.server.createClient({
      name: 'hand',
      grants: [{ resource: 'https://hand.test', scopes: ['x'] }],
    });
    const empty = await writePolicy('version: 1\n');

    const plan = await cli.run(['apply', empty, '--prune-all', '--dry-run']);
    expect(plan.stdout).toContain(
      `  delete     client hand (client_id ${hand.client.client_id}, made by hand)\n`,
    );
    expect(plan.stdout).toContain('  delete     resource https://hand.test (made by hand)\n');

    const result = await apply(empty, '--prune-all');
    expect(result.summary).toEqual({
      create: 0,
      update: 0,
      replace: 0,
      delete: 7,
      unchanged: 0,
      undeclared: 0,
    });
    expect((await listClients()).map((c) => c.client_id)).toEqual([adminClientId]);
    expect((await listResources()).map((r) => r.reserved)).toEqual([true]);
    expect((await apply(empty, '--prune-all')).changes).toEqual([]);
  });

  it('replaces a client whose auth_method changed only with --allow-replace', async () => {
    await apply(await writePolicy(basePolicy()));
    const old = (await listClients()).find((c) => c.name === 'billing');
    const changed = basePolicy();
    changed.clients[0] = { ...changed.clients[0]!, auth_method: 'client_secret_post' };
    const file = await writePolicy(changed);
    expectFailure(
      await cli.run(['apply', file]),
      1,
      `mayfly: ${file}: clients[0] (name "billing"): auth_method: cannot change client_secret_basic to ` +
        `client_secret_post in place (client_id ${old?.client_id ?? ''}); --allow-replace deletes the client and ` +
        'creates a new one, with a new client_id and secret\n',
    );

    const result = await apply(file, '--allow-replace');
    expect(result.changes.find((c) => c.action === 'replace')).toEqual({
      action: 'replace',
      kind: 'client',
      key: 'billing',
      client_id: old?.client_id,
      fields: [{ field: 'auth_method', from: 'client_secret_basic', to: 'client_secret_post' }],
    });
    const [secret] = result.secrets ?? [];
    expect(secret?.name).toBe('billing');
    expect(secret?.client_id).not.toBe(old?.client_id);
    const billing = (await listClients()).filter((c) => c.name === 'billing');
    expect(billing.map((c) => [c.client_id, c.auth_method])).toEqual([
      [secret?.client_id, 'client_secret_post'],
    ]);
  });

  it('leaves the label of objects made by hand alone, unless --adopt', async () => {
    await cli.server.createResource({ identifier: STOCK, scopes: ['stock:read'], token_format: 'opaque' });
    const file = await writePolicy({
      version: 1,
      resources: [{ identifier: STOCK, scopes: ['stock:read'], token_format: 'opaque' }],
    });
    expect((await apply(file)).summary.unchanged).toBe(1);
    expect((await listResources()).find((r) => r.identifier === STOCK)?.managed_by).toBeNull();

    const adopted = await apply(file, '--adopt');
    expect(adopted.changes).toEqual([
      {
        action: 'update',
        kind: 'resource',
        key: STOCK,
        fields: [{ field: 'managed_by', from: null, to: 'policy' }],
      },
    ]);
    expect((await listResources()).find((r) => r.identifier === STOCK)?.managed_by).toBe('policy');
    expect(byAction(await apply(await writePolicy('version: 1\n'), '--prune'), 'delete')).toEqual([
      `resource ${STOCK}`,
    ]);
  });

  it('applies the sample policy in src/policy/example-policy.yaml cleanly, and again without a change', async () => {
    const result = await apply(SAMPLE);
    expect(result.summary).toEqual({
      create: 7,
      update: 0,
      replace: 0,
      delete: 0,
      unchanged: 0,
      undeclared: 0,
    });
    expect(result.secrets?.map((s) => s.name)).toEqual(['billing', 'payments-api', 'legacy-export']);
    expect((await apply(SAMPLE)).summary.unchanged).toBe(7);
  });

  it('reads JSON files as JSON and YAML files as YAML, to the same effect', async () => {
    const json = await writePolicy(basePolicy(), 'policy.json');
    expect((await apply(json)).summary.create).toBe(5);
    const yaml = await writePolicy(basePolicy(), 'same.yml');
    expect((await apply(yaml)).summary.unchanged).toBe(5);

    const badJson = await writePolicy('{"version": 1,', 'broken.json');
    expectFailure(await cli.run(['apply', badJson]), 1, `mayfly: ${badJson}: not valid JSON: `);
    const badYaml = await writePolicy('version: 1\nresources: [\n');
    expectFailure(
      await cli.run(['apply', badYaml]),
      1,
      new RegExp(`^mayfly: ${badYaml}: not valid YAML: line \\d+, column \\d+: `),
    );
    const twice = await writePolicy('version: 1\nversion: 1\n');
    expectFailure(await cli.run(['apply', twice]), 1, `mayfly: ${twice}: not valid YAML: line 2, column 1: `);
  });

  it('stops at a change the server refuses, names it, and completes on the next apply', async () => {
    const policy = basePolicy();
    policy.resources[1]!.token_ttl = 7200;
    const file = await writePolicy(policy);
    expectFailure(
      await cli.run(['apply', file]),
      1,
      `mayfly: apply stopped at change 2 of 5 (create resource ${STOCK}): token_ttl: at most 900 seconds ` +
        '(MAYFLY_MAX_TOKEN_TTL) (invalid_input). The changes before it are made; fix the cause and apply again\n',
    );
    expect((await listResources()).map((r) => r.identifier)).toContain(ORDERS);

    policy.resources[1]!.token_ttl = 900;
    const fixed = await apply(await writePolicy(policy));
    expect(fixed.summary).toMatchObject({ create: 4, unchanged: 1 });
  });

  it('says so when the file cannot be read', async () => {
    const missing = join(dir, 'missing.yaml');
    expectFailure(
      await cli.run(['apply', missing]),
      1,
      `mayfly: cannot read the policy file ${missing}: ENOENT\n`,
    );
    expectFailure(await cli.run(['apply', dir]), 1, `mayfly: cannot read the policy file ${dir}: EISDIR\n`);
    expectFailure(await cli.run(['apply']), 2, 'missing <file>: the policy file, YAML or JSON');
  });
});

describe('mayfly apply validation', () => {
  const cases: [string, (policy: PolicyObject) => void, string][] = [
    [
      'a malformed scope',
      (p) => {
        p.clients[0]!.grants = [{ resource: ORDERS, scopes: ['orders read'] }];
      },
      'clients[0] (name "billing"): grants[0].scopes[0]: a scope is 1 to 128 printable ASCII characters, no space, quote or backslash',
    ],
    [
      'a grant without scopes',
      (p) => {
        p.clients[0]!.grants = [{ resource: ORDERS, scopes: [] }];
      },
      'clients[0] (name "billing"): grants[0].scopes: at least one scope is required',
    ],
    [
      'a scope the resource does not define',
      (p) => {
        p.clients[0]!.grants = [{ resource: ORDERS, scopes: ['orders:delete'] }];
      },
      `clients[0] (name "billing"): grants[0].scopes: ${ORDERS} does not define orders:delete; it defines orders:read orders:write`,
    ],
    [
      'an unknown field',
      (p) => {
        p.resources[0]!.ttl = 60;
      },
      `resources[0] (identifier "${ORDERS}"): ttl: unknown field`,
    ],
    [
      'an unknown top-level key',
      (p) => {
        p.keys = [];
      },
      'keys: unknown field; a policy has version, resources and clients',
    ],
    [
      'a client secret',
      (p) => {
        p.clients[1]!.client_secret = 'mfy_do-not-commit-me';
      },
      'clients[1] (name "stock-api"): client_secret: secrets never belong in a policy file; apply prints a new client secret once (or writes it to --secrets-out)',
    ],
    [
      'a managed_by label',
      (p) => {
        p.resources[1]!.managed_by = 'someone';
      },
      `resources[1] (identifier "${STOCK}"): managed_by: set by apply (policy), not by the file`,
    ],
    [
      'a grant on a resource neither declared nor on the server',
      (p) => {
        p.clients[0]!.grants = [{ resource: 'https://nowhere.test', scopes: ['read'] }];
      },
      'clients[0] (name "billing"): grants[0].resource: no resource https://nowhere.test in the file or on the server: declare it under resources',
    ],
    [
      'two clients with one name',
      (p) => {
        p.clients[2]!.name = 'billing';
      },
      'clients[2] (name "billing"): name: also declared by clients[0]; clients are known by name, so names must not repeat',
    ],
    [
      'a missing member',
      (p) => {
        delete p.resources[1]!.scopes;
      },
      `resources[1] (identifier "${STOCK}"): scopes: required`,
    ],
    [
      'a wrong version',
      (p) => {
        p.version = 2;
      },
      'version: expected 1 (the policy format version), got 2',
    ],
    [
      'the admin client',
      (p) => {
        p.clients[0]!.name = 'Mayfly admin';
      },
      'clients[0] (name "Mayfly admin"): name: "Mayfly admin" is an admin client',
    ],
  ];

  it.each(cases)(
    'refuses %s, naming the file, the object and the field, and writes nothing',
    async (_what, spoil, message) => {
      const policy = basePolicy();
      spoil(policy);
      const file = await writePolicy(policy);
      const before = await auditIds();
      const result = await cli.run(['apply', file]);
      expectFailure(result, 1, `mayfly: ${file}: ${message}`);
      expect(result.stderr).not.toContain('mfy_do-not-commit-me');
      expect(await auditIds()).toEqual(before);
    },
  );

  it('names every problem of a file in one line', async () => {
    const policy = basePolicy();
    policy.resources[0]!.token_ttl = -1;
    policy.clients[2]!.auth_method = 'private_key_jwt';
    delete policy.clients[2]!.jwks;
    const file = await writePolicy(policy);
    expectFailure(
      await cli.run(['apply', file]),
      1,
      `mayfly: ${file}: resources[0] (identifier "${ORDERS}"): token_ttl: expected a positive number of seconds; ` +
        'clients[2] (name "signer"): jwks: private_key_jwt needs exactly one of jwks or jwks_uri\n',
    );
  });

  it('refuses a name that several clients on the server share, naming them', async () => {
    const one = await cli.server.createClient({ name: 'billing' });
    const two = await cli.server.createClient({ name: 'billing' });
    const file = await writePolicy(basePolicy());
    const result = await cli.run(['apply', file]);
    expectFailure(
      result,
      1,
      `clients[0] (name "billing"): name: 2 clients on the server are named "billing" (client_id `,
    );
    expect(result.stderr).toContain(one.client.client_id);
    expect(result.stderr).toContain(two.client.client_id);
  });
});

describe('mayfly export', () => {
  async function makeVariedState(): Promise<void> {
    await apply(await writePolicy(basePolicy()));
    await cli.server.createResource({ identifier: 'https://hand.test', scopes: ['x', 'y'], token_ttl: 60 });
    await cli.server.createClient({
      name: 'hand-signer',
      auth_method: 'private_key_jwt',
      jwks_uri: 'https://hand.test/jwks.json',
      grants: [
        { resource: 'https://hand.test', scopes: ['y', 'x'] },
        { resource: ORDERS, scopes: ['orders:write'] },
      ],
      dpop_jkts: [pinnedKey],
      bearer_allowed: true,
      rate_limits: { introspections_per_minute: 30 },
    });
    const paused = await cli.server.createClient({
      name: 'paused',
      introspects: ['https://hand.test', STOCK],
    });
    await setClientEnabled(cli.server.app.admin, TEST_ACTOR, paused.client.client_id, false);
  }

  it('writes a policy that apply accepts unchanged, once --adopt handed the clients made by hand over', async () => {
    await makeVariedState();
    const exported = await cli.spawn(['export']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/^version: 1\nresources:\n/);
    expect(exported.stdout).not.toContain('Mayfly admin');
    expect(exported.stdout).not.toContain(`${cli.server.url}/admin`);
    expect(exported.stdout).not.toMatch(/client_secret:|mfy_|managed_by|client_id/);
    const file = await writePolicy(exported.stdout);
    const handSigner = (await listClients()).find((c) => c.name === 'hand-signer');

    // A client made by hand is the policy's only with --adopt: refused, naming it, and nothing is written.
    const before = await auditIds();
    const refused = await cli.run(['apply', file]);
    expectFailure(
      refused,
      1,
      `mayfly: ${file}: clients[1] (name "hand-signer"): name: a client on the server is already named ` +
        `"hand-signer" (client_id ${handSigner?.client_id ?? ''}, made by hand), which no policy manages: ` +
        '--adopt hands it over to the policy, or rename it, or choose another name; clients[2] (name "paused"): ',
    );
    expect(await auditIds()).toEqual(before);

    const adopted = await apply(file, '--adopt');
    expect(adopted.summary).toEqual({
      create: 0,
      update: 3,
      replace: 0,
      delete: 0,
      unchanged: 5,
      undeclared: 0,
    });
    const labelled = [{ field: 'managed_by', from: null, to: 'policy' }];
    expect(adopted.changes.filter((c) => c.action === 'update')).toEqual([
      { action: 'update', kind: 'resource', key: 'https://hand.test', fields: labelled },
      {
        action: 'update',
        kind: 'client',
        key: 'hand-signer',
        client_id: handSigner?.client_id,
        fields: labelled,
        adopted: true,
      },
      {
        action: 'update',
        kind: 'client',
        key: 'paused',
        client_id: expect.any(String),
        fields: labelled,
        adopted: true,
      },
    ]);

    const settled = await auditIds();
    const result = await apply(file);
    expect(result.summary).toEqual({
      create: 0,
      update: 0,
      replace: 0,
      delete: 0,
      unchanged: 8,
      undeclared: 0,
    });
    expect(await auditIds()).toEqual(settled);

    const out = join(dir, 'exported.json');
    const written = await cli.run(['export', '--format', 'json', '--out', out]);
    expect(written.stdout).toBe(`Wrote ${out}: 3 resources, 5 clients.\n`);
    expect((await apply(out, '--prune-all')).summary.unchanged).toBe(8);
    expect(await auditIds()).toEqual(settled);
  });

  it('--managed-only writes only what a policy manages', async () => {
    await makeVariedState();
    const document = await cli.json<{ resources: { identifier: string }[]; clients: { name: string }[] }>([
      'export',
      '--managed-only',
    ]);
    expect(document.resources.map((r) => r.identifier)).toEqual([ORDERS, STOCK]);
    expect(document.clients.map((c) => c.name)).toEqual(['billing', 'signer', 'stock-api']);
  });

  it('refuses clients that share a name, which a policy could not tell apart', async () => {
    const one = await cli.server.createClient({ name: 'twin' });
    const two = await cli.server.createClient({ name: 'twin' });
    const result = await cli.run(['export']);
    expectFailure(result, 1, 'mayfly: cannot export: a policy knows clients by name, and ');
    expect(result.stderr).toContain(one.client.client_id);
    expect(result.stderr).toContain(two.client.client_id);
  });
});
