import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

import { deleteClient, listClientPage } from '../../src/clients/client.service.ts';
import { deleteResource, listResourcePage } from '../../src/clients/resource.service.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { requestToken } from '../support/oauth.ts';
import { TEST_ACTOR } from '../support/server.ts';
import { expectFailure, startCliServer, type CliServer } from './helpers.ts';

/*
 * `mayfly apply` never takes over a client it does not manage. Anyone holding an initial access token chooses the
 * name of the client it registers (RFC 7591) and may rename it (RFC 7592): a name a policy declares must never
 * hand that client the policy's grants, introspection rights or Bearer exception. One real server with dynamic
 * registration on, reset to its bootstrap state before each test; registrations go through the real endpoints.
 */

const ORDERS = 'https://orders.test';

let cli: CliServer;
let dir: string;
let adminClientId: string;

interface ApplyResult {
  summary: Record<'create' | 'update' | 'replace' | 'delete' | 'unchanged' | 'undeclared', number>;
  managed_by_others: Record<string, number>;
  changes: {
    action: string;
    kind: string;
    key: string;
    client_id?: string;
    managed_by?: string | null;
    adopted?: true;
    fields: { field: string; from?: unknown; to: unknown }[];
  }[];
  secrets?: { name: string; client_id: string; client_secret: string }[];
}

interface ClientJson {
  client_id: string;
  name: string;
  grants: { resource: string; scopes: string[] }[];
  introspects: string[];
  bearer_allowed: boolean;
  managed_by: string | null;
}

interface Registered {
  client_id: string;
  client_secret: string;
  client_name: string;
  registration_client_uri: string;
  registration_access_token: string;
}

beforeAll(async () => {
  cli = await startCliServer({ env: { MAYFLY_REGISTRATION: 'true' } });
  dir = await mkdtemp(join(tmpdir(), 'mayfly-takeover-'));
  adminClientId = (JSON.parse(await readFile(cli.credentialsPath, 'utf8')) as { client_id: string })
    .client_id;
});
afterAll(async () => {
  await cli.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  const deps = cli.server.app.admin;
  for (const client of (await listClientPage(deps, {}, { limit: 1000 })).items) {
    if (client.client_id !== adminClientId) await deleteClient(deps, TEST_ACTOR, client.client_id);
  }
  for (const resource of (await listResourcePage(deps.db, { limit: 1000 })).items) {
    if (!resource.reserved) await deleteResource(deps, TEST_ACTOR, resource.id, { force: true });
  }
  // The resource registrants may be granted, made by a policy as it would be in production.
  await apply(await writePolicy(resourcesOnly()));
});

const RESOURCE = { identifier: ORDERS, scopes: ['orders:read', 'orders:write'], token_format: 'opaque' };

function resourcesOnly() {
  return { version: 1, resources: [RESOURCE] };
}

/** What an attacker wants: every right the policy gives its own "billing". */
function billingPolicy(name = 'billing') {
  return {
    version: 1,
    resources: [RESOURCE],
    clients: [
      {
        name,
        grants: [{ resource: ORDERS, scopes: ['orders:read', 'orders:write'] }],
        introspects: [ORDERS],
        bearer_allowed: true,
      },
    ],
  };
}

let files = 0;

async function writePolicy(document: unknown): Promise<string> {
  const path = join(dir, `policy-${++files}.yaml`);
  await writeFile(path, stringify(document));
  return path;
}

async function apply(path: string, ...flags: string[]): Promise<ApplyResult> {
  return cli.json<ApplyResult>(['apply', path, ...flags]);
}

async function listClients(): Promise<ClientJson[]> {
  return (await cli.json<{ items: ClientJson[] }>(['client', 'list', '--all'])).items;
}

async function auditIds(): Promise<string[]> {
  return (await cli.json<{ items: { id: string }[] }>(['audit', 'list', '--all'])).items.map((e) => e.id);
}

/** An initial access token capped to orders:read, as an operator would hand one out. */
async function mint(uses = 5): Promise<string> {
  const minted = await cli.json<{ token: string }>([
    'registration-token',
    'create',
    '--resource',
    ORDERS,
    '--scopes',
    'orders:read',
    '--expires-in',
    '1h',
    '--uses',
    String(uses),
  ]);
  return minted.token;
}

function register(token: string, metadata: object) {
  return request(cli.server.url)
    .post('/register')
    .set('Authorization', `Bearer ${token}`)
    .set('Content-Type', 'application/json')
    .send(JSON.stringify(metadata));
}

async function registered(token: string, name: string): Promise<Registered> {
  const res = await register(token, { client_name: name });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as Registered;
}

/** RFC 7592 §2.2: the whole metadata again, with the changes. */
function renameRegistration(client: Registered, accessToken: string, name: string) {
  return request(cli.server.url)
    .put(new URL(client.registration_client_uri).pathname)
    .set('Authorization', `Bearer ${accessToken}`)
    .set('Content-Type', 'application/json')
    .send(JSON.stringify({ client_id: client.client_id, client_name: name, scope: 'orders:read' }));
}

/** With DPoP (200), and without (refused: no Bearer exception): the secret works exactly as registered. */
async function expectRegisteredAccess(client: Registered): Promise<void> {
  const credentials = { clientId: client.client_id, secret: client.client_secret, resource: ORDERS };
  const dpop = await requestToken(cli.server.url, { ...credentials, key: await generateDpopKey() });
  expect(dpop.status, JSON.stringify(dpop.body)).toBe(200);
  expect(dpop.body.scope).toBe('orders:read');
  const bearer = await requestToken(cli.server.url, credentials);
  expect(bearer.status).toBe(400);
}

const asRegistered = (client: Registered) => ({
  client_id: client.client_id,
  name: client.client_name,
  grants: [{ resource: ORDERS, scopes: ['orders:read'] }],
  introspects: [],
  bearer_allowed: false,
  managed_by: 'registration',
});

describe('apply and registered clients', () => {
  it('refuses a policy client whose name a registrant took first, naming both, and changes nothing', async () => {
    const squatter = await registered(await mint(), 'billing');
    const file = await writePolicy(billingPolicy());
    const clients = await listClients();
    const before = await auditIds();

    const refusal =
      `mayfly: ${file}: clients[0] (name "billing"): name: a client on the server is already named "billing" ` +
      `(client_id ${squatter.client_id}, managed_by registration), and apply never takes over a client it does ` +
      'not manage (--adopt takes only clients made by hand): rename or delete that client, or choose another name\n';
    for (const flags of [[], ['--adopt'], ['--dry-run'], ['--adopt', '--allow-replace', '--prune-all']]) {
      const result = await cli.run(['apply', file, ...flags]);
      expectFailure(result, 1, refusal);
      expect(result.stderr).toBe(refusal);
    }

    expect(await auditIds()).toEqual(before);
    expect(await listClients()).toEqual(clients);
    expect((await listClients()).find((c) => c.client_id === squatter.client_id)).toMatchObject(
      asRegistered(squatter),
    );
    expect((await listClients()).filter((c) => c.name === 'billing')).toHaveLength(1);
    await expectRegisteredAccess(squatter);
  });

  it('refuses registering or renaming onto the name of a policy client, so apply keeps its own', async () => {
    await apply(await writePolicy(billingPolicy()));
    const billing = (await listClients()).find((c) => c.name === 'billing');
    expect(billing?.managed_by).toBe('policy');
    const token = await mint();

    for (const name of ['billing', 'BILLING', ' Billing ']) {
      const res = await register(token, { client_name: name });
      expect(res.status, name).toBe(400);
      expect(res.body).toEqual({
        error: 'invalid_client_metadata',
        error_description:
          `client_name: ${JSON.stringify(name.trim())} is the name of a client this server's operators manage ` +
          '(names compare ignoring case), and a registered client may not take it: choose another client_name',
      });
    }

    // RFC 7592: the rename is refused, and the refused request leaves the registration access token as it was.
    const robot = await registered(token, 'robot');
    const renamed = await renameRegistration(robot, robot.registration_access_token, 'billing');
    expect(renamed.status).toBe(400);
    expect(renamed.body.error).toBe('invalid_client_metadata');
    expect(renamed.body.error_description).toMatch(/^client_name: "billing" is the name of a client/);
    const kept = await renameRegistration(robot, robot.registration_access_token, 'robot 2');
    expect(kept.status, JSON.stringify(kept.body)).toBe(200);
    expect((await listClients()).find((c) => c.client_id === robot.client_id)?.name).toBe('robot 2');

    const before = await auditIds();
    const again = await apply(await writePolicy(billingPolicy()));
    expect(again.changes.find((c) => c.kind === 'client')).toEqual({
      action: 'unchanged',
      kind: 'client',
      key: 'billing',
      client_id: billing?.client_id,
      fields: [],
    });
    expect(await auditIds()).toEqual(before);
  });

  it('a registered namesake of a policy client neither blocks apply nor is changed by it', async () => {
    await apply(await writePolicy(billingPolicy()));
    const billing = (await listClients()).find((c) => c.name === 'billing');
    // The one way left to a namesake: an operator renames a registered client (or a rename races a creation).
    const robot = await registered(await mint(), 'robot');
    expect((await cli.run(['client', 'update', robot.client_id, '--name', 'billing'])).code).toBe(0);
    const namesake = { ...robot, client_name: 'billing' };

    const narrower = billingPolicy();
    narrower.clients[0]!.grants = [{ resource: ORDERS, scopes: ['orders:write'] }];
    const file = await writePolicy(narrower);
    const plan = await cli.run(['apply', file, '--dry-run', '--prune-all']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`  update     client billing (client_id ${billing?.client_id ?? ''})\n`);
    expect(plan.stdout).toContain(
      '1 client another manager manages left as it is (managed_by registration: 1); ' +
        'apply never changes or deletes those.\n',
    );
    expect(plan.stdout).not.toContain(robot.client_id);

    const result = await apply(file, '--prune-all');
    expect(result.changes.filter((c) => c.action !== 'unchanged')).toEqual([
      {
        action: 'update',
        kind: 'client',
        key: 'billing',
        client_id: billing?.client_id,
        fields: [
          {
            field: 'grants',
            from: [{ resource: ORDERS, scopes: ['orders:read', 'orders:write'] }],
            to: [{ resource: ORDERS, scopes: ['orders:write'] }],
          },
        ],
      },
    ]);
    expect(result.summary.undeclared).toBe(1);
    expect(result.managed_by_others).toEqual({ registration: 1 });
    expect((await listClients()).find((c) => c.client_id === robot.client_id)).toMatchObject(
      asRegistered(namesake),
    );
    await expectRegisteredAccess(namesake);

    // Keeping the name it was given is no taking: its registrant may still update the client.
    const read = await request(cli.server.url)
      .get(new URL(robot.registration_client_uri).pathname)
      .set('Authorization', `Bearer ${robot.registration_access_token}`);
    expect(read.status).toBe(200);
    const kept = await renameRegistration(robot, read.body.registration_access_token as string, 'billing');
    expect(kept.status, JSON.stringify(kept.body)).toBe(200);
  });

  it('--prune and --prune-all never delete a registered client, nor a client another manager labels', async () => {
    const robot = await registered(await mint(), 'robot');
    const tool = await cli.server.createClient({ name: 'from-terraform', managed_by: 'terraform' });
    await cli.server.createClient({ name: 'hand' });
    await apply(await writePolicy(billingPolicy()));
    const empty = await writePolicy(resourcesOnly());

    const pruned = await apply(empty, '--prune');
    expect(pruned.changes.filter((c) => c.action === 'delete').map((c) => c.key)).toEqual(['billing']);
    expect(pruned.summary.undeclared).toBe(3);
    expect(pruned.managed_by_others).toEqual({ registration: 1, terraform: 1 });

    const human = await cli.run(['apply', empty, '--prune-all', '--dry-run']);
    expect(human.stdout).toContain('  delete     client hand (client_id ');
    expect(human.stdout).toContain(
      '2 clients another manager manages left as they are (managed_by registration: 1, managed_by terraform: 1); ' +
        'apply never changes or deletes those.\n',
    );
    const all = await apply(empty, '--prune-all');
    expect(all.changes.filter((c) => c.action === 'delete').map((c) => c.key)).toEqual(['hand']);
    expect(all.summary.undeclared).toBe(2);

    expect(
      (await listClients())
        .map((c) => c.client_id)
        .filter((id) => id !== adminClientId)
        .sort(),
    ).toEqual([robot.client_id, tool.client.client_id].sort());
    expect((await apply(empty, '--prune-all')).changes.filter((c) => c.action === 'delete')).toEqual([]);
    await expectRegisteredAccess(robot);
  });

  it('export leaves registered clients out: apply would never take them over', async () => {
    await registered(await mint(), 'robot');
    await registered(await mint(), 'robot');
    await apply(await writePolicy(billingPolicy()));
    const document = await cli.json<{ clients: { name: string }[] }>(['export']);
    expect(document.clients.map((c) => c.name)).toEqual(['billing']);
  });
});

describe('apply --adopt', () => {
  it('adopts a client made by hand and says so, keeping its client_id and secret', async () => {
    const legacy = await cli.server.createClient({
      name: 'legacy',
      grants: [{ resource: ORDERS, scopes: ['orders:read'] }],
    });
    const file = await writePolicy(billingPolicy('legacy'));
    const before = await auditIds();
    expectFailure(
      await cli.run(['apply', file]),
      1,
      `mayfly: ${file}: clients[0] (name "legacy"): name: a client on the server is already named "legacy" ` +
        `(client_id ${legacy.client.client_id}, made by hand), which no policy manages: --adopt hands it over ` +
        'to the policy, or rename it, or choose another name\n',
    );
    expect(await auditIds()).toEqual(before);

    const plan = await cli.run(['apply', file, '--adopt', '--dry-run']);
    expect(plan.stdout).toContain(
      `  update     client legacy (client_id ${legacy.client.client_id}, made by hand, to adopt)\n`,
    );
    expect(plan.stdout).toContain('               managed_by: - → policy\n');
    expect(plan.stdout).toContain(
      `Would adopt 1 client made by hand: legacy (client_id ${legacy.client.client_id}); ` +
        'the policy manages it from now on.\n',
    );
    expect(await auditIds()).toEqual(before);

    const human = await cli.run(['apply', file, '--adopt']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(
      `  update     client legacy (client_id ${legacy.client.client_id}, made by hand, adopted)\n`,
    );
    expect(human.stdout).toContain(
      `Adopted 1 client made by hand: legacy (client_id ${legacy.client.client_id}); ` +
        'the policy manages it from now on.\n',
    );
    expect(human.stdout).not.toContain('mfy_');
    const adopted = (await listClients()).find((c) => c.name === 'legacy');
    expect(adopted).toMatchObject({
      client_id: legacy.client.client_id,
      managed_by: 'policy',
      introspects: [ORDERS],
      bearer_allowed: true,
    });
    const token = await requestToken(cli.server.url, {
      clientId: legacy.client.client_id,
      secret: legacy.clientSecret ?? '',
      resource: ORDERS,
    });
    expect(token.status, JSON.stringify(token.body)).toBe(200);

    const json = await apply(file, '--adopt');
    expect(json.changes.find((c) => c.kind === 'client')).toEqual({
      action: 'unchanged',
      kind: 'client',
      key: 'legacy',
      client_id: legacy.client.client_id,
      fields: [],
    });
  });

  it('reports the adoption in --json, on the change itself', async () => {
    const legacy = await cli.server.createClient({ name: 'legacy' });
    const result = await apply(await writePolicy(billingPolicy('legacy')), '--adopt');
    const change = result.changes.find((c) => c.kind === 'client');
    expect(change).toMatchObject({
      action: 'update',
      key: 'legacy',
      client_id: legacy.client.client_id,
      adopted: true,
    });
    expect(change?.fields).toContainEqual({ field: 'managed_by', from: null, to: 'policy' });
  });

  it('--allow-replace may replace an adopted client whose auth_method differs, and says so', async () => {
    const legacy = await cli.server.createClient({ name: 'legacy' });
    const policy = billingPolicy('legacy');
    const file = await writePolicy({
      ...policy,
      clients: [{ ...policy.clients[0]!, auth_method: 'client_secret_post' }],
    });
    expectFailure(
      await cli.run(['apply', file, '--adopt']),
      1,
      'auth_method: cannot change client_secret_basic to client_secret_post in place',
    );
    const plan = await cli.run(['apply', file, '--adopt', '--allow-replace', '--dry-run']);
    expect(plan.stdout).toContain(
      `  replace    client legacy (client_id ${legacy.client.client_id}, made by hand, to adopt; the new client ` +
        'gets a new client_id and secret)\n',
    );
    expect(plan.stdout).toContain(
      `Would adopt 1 client made by hand: legacy (client_id ${legacy.client.client_id}, replaced); `,
    );
    const result = await apply(file, '--adopt', '--allow-replace');
    const [secret] = result.secrets ?? [];
    expect((await listClients()).filter((c) => c.name === 'legacy')).toMatchObject([
      { client_id: secret?.client_id, managed_by: 'policy' },
    ]);
  });

  it('refuses to adopt a registered client, or one another manager labels, naming it', async () => {
    const widget = await registered(await mint(), 'widget');
    const tool = await cli.server.createClient({ name: 'gadget', managed_by: 'terraform' });
    const policy = billingPolicy('widget');
    policy.clients.push({ ...policy.clients[0]!, name: 'gadget' });
    const file = await writePolicy(policy);
    const clients = await listClients();
    const before = await auditIds();

    expectFailure(
      await cli.run(['apply', file, '--adopt']),
      1,
      `mayfly: ${file}: clients[0] (name "widget"): name: a client on the server is already named "widget" ` +
        `(client_id ${widget.client_id}, managed_by registration), and apply never takes over a client it does ` +
        'not manage (--adopt takes only clients made by hand): rename or delete that client, or choose another ' +
        `name; clients[1] (name "gadget"): name: a client on the server is already named "gadget" (client_id ` +
        `${tool.client.client_id}, managed_by terraform), and apply never takes over`,
    );
    expect(await auditIds()).toEqual(before);
    expect(await listClients()).toEqual(clients);
    await expectRegisteredAccess(widget);
  });

  it('refuses a made-by-hand namesake that shares its name with a registered client, naming both', async () => {
    const hand = await cli.server.createClient({ name: 'shared' });
    // Registration refuses the name an operator's client holds: an operator rename makes the pair.
    const robot = await registered(await mint(), 'robot');
    expect((await cli.run(['client', 'update', robot.client_id, '--name', 'shared'])).code).toBe(0);
    const result = await cli.run(['apply', await writePolicy(billingPolicy('shared')), '--adopt']);
    expectFailure(
      result,
      1,
      'clients[0] (name "shared"): name: 2 clients on the server are named "shared" (',
    );
    expect(result.stderr).toContain(`client_id ${hand.client.client_id}, made by hand`);
    expect(result.stderr).toContain(`client_id ${robot.client_id}, managed_by registration`);
    expect((await listClients()).find((c) => c.client_id === hand.client.client_id)?.managed_by).toBeNull();
  });
});
