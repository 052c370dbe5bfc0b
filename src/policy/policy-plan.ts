import type { Client } from '../clients/client.schemas.ts';
import type { Resource } from '../clients/resource.schemas.ts';
import {
  POLICY_LABEL,
  PolicyError,
  type DeclaredClient,
  type DeclaredResource,
  type Policy,
} from './policy-document.ts';

export type PruneMode = 'none' | 'managed' | 'all';

export interface PlanOptions {
  /** Objects the file does not declare: left alone, deleted when a policy created them, or all deleted. */
  prune: PruneMode;
  /** A client whose auth_method changed is deleted and created anew (a new client_id and secret). */
  allowReplace: boolean;
  /**
   * A declared resource that exists without the policy label gets it; so does a declared client that exists made
   * by hand (managed_by null), so that apply manages it from now on. Never a client another manager labelled.
   */
  adopt: boolean;
}

export interface ServerState {
  resources: readonly Resource[];
  clients: readonly Client[];
}

export type ChangeAction = 'create' | 'update' | 'replace' | 'delete' | 'unchanged';

export interface FieldChange {
  field: string;
  /** Left out for a creation. */
  from?: unknown;
  to: unknown;
}

export interface PlannedChange {
  action: ChangeAction;
  kind: 'resource' | 'client';
  /** The resource identifier, or the client name. */
  key: string;
  /** The existing client; for a replace, the one deleted. */
  client_id?: string;
  /** For a deletion: the label that made it prunable (null: made by hand). */
  managed_by?: string | null;
  /** A client made by hand that --adopt hands over to the policy (labelled managed_by: policy). */
  adopted?: true;
  /** A creation: the declared values that are not defaults; an update or replace: what differs. */
  fields: FieldChange[];
}

export interface Operation {
  method: 'POST' | 'PATCH' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
  /** For messages: `create client "billing"`. */
  what: string;
  /** A client created with a secret method: the answer carries its secret, to hand over once. */
  secretOf?: string;
}

export interface Plan {
  changes: PlannedChange[];
  /** The admin API calls, in an order in which every reference holds. */
  operations: Operation[];
  /** Objects the file does not declare, left as they are (the admin API's resource and clients not counted). */
  undeclared: number;
  /** Of those, the clients another manager manages (label → count): apply never changes or deletes them. */
  managedByOthers: Record<string, number>;
}

const resourcePath = (resource: Resource) => `/resources/${resource.id}`;
const clientPath = (client: Client) => `/clients/${encodeURIComponent(client.client_id)}`;
const quote = (text: string) => JSON.stringify(text);

/**
 * The calls, in an order in which every reference holds: resources are created and their scopes widened before
 * the clients that use them change; scopes are narrowed and resources deleted only after the clients holding them
 * changed or went. A replaced client's successor exists before it goes.
 */
const PHASES = [
  'createResources',
  'updateResources',
  'deleteClients',
  'createClients',
  'updateClients',
  'deleteReplacedClients',
  'narrowResources',
  'deleteResources',
] as const;
type Phase = (typeof PHASES)[number];

/** What planning reads (the file, the server, lookups between them) and what it collects. */
interface Planning {
  policy: Policy;
  options: PlanOptions;
  /** Identifiers of the reserved resources: the admin API's. */
  reserved: ReadonlySet<string>;
  resources: ReadonlyMap<string, Resource>;
  clientsByName: ReadonlyMap<string, readonly Client[]>;
  /** The clients that declarations stand for: updated, replaced, adopted or unchanged, never pruned. */
  claimed: Set<Client>;
  /** The scopes of every resource that exists once the plan is applied. */
  finalScopes: ReadonlyMap<string, readonly string[]>;
  problems: string[];
  changes: Record<PlannedChange['kind'], PlannedChange[]>;
  calls: Record<Phase, Operation[]>;
}

/**
 * Compares the declared resources and clients with the server's and lists what to change. Every problem — a
 * reference that would not hold, an ambiguous or reserved name, a client apply may not take over, a change the
 * API cannot make in place — is found here, before anything is written, and all of them are reported together.
 */
export function planPolicy(policy: Policy, state: ServerState, options: PlanOptions): Plan {
  const reserved = findReserved(state);
  const prunesResource = (label: string | null) =>
    options.prune === 'all' || (options.prune === 'managed' && label === POLICY_LABEL);
  const declaredIdentifiers = new Set(policy.resources.map((r) => r.identifier));
  const undeclaredResources = state.resources.filter(
    (r) => !r.reserved && !declaredIdentifiers.has(r.identifier),
  );
  const doomedResources = undeclaredResources.filter((r) => prunesResource(r.managed_by));

  const planning: Planning = {
    policy,
    options,
    reserved,
    resources: new Map(state.resources.map((r) => [r.identifier, r])),
    clientsByName: groupByName(state.clients),
    claimed: new Set(),
    finalScopes: new Map([
      ...state.resources
        .filter((r) => !doomedResources.includes(r))
        .map((r) => [r.identifier, r.scopes] as const),
      ...policy.resources.map((r) => [r.identifier, r.scopes] as const),
    ]),
    problems: [],
    changes: { resource: [], client: [] },
    calls: {
      createResources: [],
      updateResources: [],
      deleteClients: [],
      createClients: [],
      updateClients: [],
      deleteReplacedClients: [],
      narrowResources: [],
      deleteResources: [],
    },
  };
  for (const declared of policy.resources) planResource(planning, declared);
  for (const declared of policy.clients) planClient(planning, declared);
  // A client no declaration took is undeclared, even when it shares a declared name (a registered namesake).
  const undeclaredClients = state.clients.filter(
    (c) => !planning.claimed.has(c) && !isAdminClient(c, reserved),
  );
  const doomedClients = undeclaredClients.filter((c) => prunesClient(options.prune, c.managed_by));
  const keptClients = undeclaredClients.filter((c) => !doomedClients.includes(c));
  checkKeptClients(
    planning,
    state.clients.filter((c) => !planning.claimed.has(c) && !doomedClients.includes(c)),
    doomedResources,
  );
  for (const client of doomedClients) planClientDeletion(planning, client);
  for (const resource of doomedResources) planResourceDeletion(planning, resource);

  if (planning.problems.length) throw new PolicyError(`${policy.source}: ${planning.problems.join('; ')}`);
  const othersLabels = keptClients.map((c) => c.managed_by).filter(isOthersLabel);
  const managedByOthers = Object.fromEntries(
    [...new Set(othersLabels)].sort().map((label) => [label, othersLabels.filter((l) => l === label).length]),
  );
  return {
    changes: [...planning.changes.resource, ...planning.changes.client],
    operations: PHASES.flatMap((phase) => planning.calls[phase]),
    undeclared: undeclaredResources.length - doomedResources.length + keptClients.length,
    managedByOthers,
  };
}

/** A label neither apply's nor the absence of one: another manager's, such as registration (RFC 7591). */
function isOthersLabel(label: string | null): label is string {
  return label !== null && label !== POLICY_LABEL;
}

/**
 * --prune deletes the clients a policy created, --prune-all those made by hand too; no flag ever deletes a client
 * another manager manages: a registered client belongs to its registrant (RFC 7592 §2.3 deletes it).
 */
function prunesClient(prune: PruneMode, label: string | null): boolean {
  if (label === POLICY_LABEL) return prune !== 'none';
  return label === null && prune === 'all';
}

function groupByName(clients: readonly Client[]): Map<string, Client[]> {
  const byName = new Map<string, Client[]>();
  for (const client of clients) byName.set(client.name, [...(byName.get(client.name) ?? []), client]);
  return byName;
}

function planResource(planning: Planning, declared: DeclaredResource): void {
  const { calls } = planning;
  if (planning.reserved.has(declared.identifier)) {
    planning.problems.push(
      `${declared.at}: identifier: ${declared.identifier} is the admin API's own resource, which is reserved: leave it out`,
    );
    return;
  }
  const existing = planning.resources.get(declared.identifier);
  const key = declared.identifier;
  if (!existing) {
    planning.changes.resource.push({
      action: 'create',
      kind: 'resource',
      key,
      fields: describeResource(declared),
    });
    calls.createResources.push({
      method: 'POST',
      path: '/resources',
      body: {
        identifier: declared.identifier,
        ...(declared.name === null ? {} : { name: declared.name }),
        scopes: declared.scopes,
        ...(declared.token_ttl === undefined ? {} : { token_ttl: declared.token_ttl }),
        token_format: declared.token_format,
        managed_by: POLICY_LABEL,
      },
      what: `create resource ${key}`,
    });
    return;
  }
  const fields = diffResource(declared, existing, planning.options.adopt);
  planning.changes.resource.push({
    action: fields.length ? 'update' : 'unchanged',
    kind: 'resource',
    key,
    fields,
  });
  if (!fields.length) return;

  const body: Record<string, unknown> = Object.fromEntries(
    fields.filter((f) => f.field !== 'scopes').map((f) => [f.field, f.to]),
  );
  if (fields.some((f) => f.field === 'scopes')) {
    // A scope clients still hold can go only once they changed: add the new scopes now, remove the old at the end.
    const dropped = existing.scopes.filter((s) => !declared.scopes.includes(s));
    const added = declared.scopes.filter((s) => !existing.scopes.includes(s));
    if (!dropped.length) body.scopes = declared.scopes;
    else {
      if (added.length) body.scopes = [...existing.scopes, ...added];
      calls.narrowResources.push({
        method: 'PATCH',
        path: resourcePath(existing),
        body: { scopes: declared.scopes },
        what: `remove scopes ${dropped.join(', ')} from ${key}`,
      });
    }
  }
  if (Object.keys(body).length) {
    calls.updateResources.push({
      method: 'PATCH',
      path: resourcePath(existing),
      body,
      what: `update resource ${key}`,
    });
  }
}

function planClient(planning: Planning, declared: DeclaredClient): void {
  const { calls, problems } = planning;
  checkReferences(planning, declared);
  const key = declared.name;
  const match = matchClient(planning, declared);
  if (match === 'refused') return;
  if (match === 'absent') {
    planning.changes.client.push({ action: 'create', kind: 'client', key, fields: describeClient(declared) });
    calls.createClients.push(createClientOperation(declared));
    return;
  }
  const { client: existing, adopting } = match;
  const { client_id } = existing;
  planning.claimed.add(existing);
  const adopted = adopting ? { adopted: true as const } : {};
  const fields = diffClient(declared, existing, adopting);
  const authChange = fields.find((f) => f.field === 'auth_method');
  if (authChange && !planning.options.allowReplace) {
    problems.push(
      `${declared.at}: auth_method: cannot change ${String(authChange.from)} to ${String(authChange.to)} in ` +
        `place (client_id ${client_id}); --allow-replace deletes the client and creates a new one, ` +
        'with a new client_id and secret',
    );
    return;
  }
  if (authChange) {
    planning.changes.client.push({ action: 'replace', kind: 'client', key, client_id, fields, ...adopted });
    calls.createClients.push(createClientOperation(declared));
    calls.deleteReplacedClients.push({
      method: 'DELETE',
      path: clientPath(existing),
      what: `delete client ${quote(key)} (client_id ${client_id}), replaced`,
    });
    return;
  }
  planning.changes.client.push({
    action: fields.length ? 'update' : 'unchanged',
    kind: 'client',
    key,
    client_id,
    fields,
    ...adopted,
  });
  if (!fields.length) return;
  calls.updateClients.push({
    method: 'PATCH',
    path: clientPath(existing),
    // A null key source is never sent: setting the other one clears it.
    body: Object.fromEntries(fields.filter((f) => f.to !== null).map((f) => [f.field, f.to])),
    what: `update client ${quote(key)} (client_id ${client_id})`,
  });
}

type ClientMatch = { client: Client; adopting: boolean } | 'absent' | 'refused';

/**
 * The client a declaration stands for: the one a policy manages under that name, whatever else is named so. A
 * client made by hand is taken over only with --adopt, and a client another manager labelled never: anyone holding
 * an initial access token chooses the name of the client it registers (RFC 7591 §2 client_name), so a name proves
 * nothing. Without a client of the policy's own, such a namesake blocks the creation too: apply names it rather
 * than make a second client of that name.
 */
function matchClient(planning: Planning, declared: DeclaredClient): ClientMatch {
  const { problems } = planning;
  const key = declared.name;
  const named = planning.clientsByName.get(key) ?? [];
  const own = named.filter((c) => c.managed_by === POLICY_LABEL);
  const others = named.filter((c) => c.managed_by !== POLICY_LABEL);
  const at = `${declared.at}: name:`;
  if (own.length > 1) {
    problems.push(
      `${at} ${describeNamesakes(own, key)}; a policy knows its clients by name: rename or delete all but one`,
    );
    return 'refused';
  }
  const [mine] = own;
  // Labelled or not, a client with rights on the admin API stays outside policies.
  const admin = (mine ? [mine] : others).find((c) => isAdminClient(c, planning.reserved));
  if (admin) {
    problems.push(
      `${at} ${quote(key)} is an admin client (client_id ${admin.client_id}, with rights on the ` +
        'admin API); admin clients stay outside policies: choose another name',
    );
    return 'refused';
  }
  if (mine) return { client: mine, adopting: false };
  const [only] = others;
  if (!only) return 'absent';
  if (others.some((c) => c.managed_by !== null)) {
    problems.push(
      `${at} ${describeNamesakes(others, key)}, and apply never takes over a client it does not manage ` +
        `(--adopt takes only clients made by hand): rename or delete ${others.length === 1 ? 'that client' : 'those clients'}, ` +
        'or choose another name',
    );
    return 'refused';
  }
  if (others.length > 1) {
    problems.push(
      `${at} ${describeNamesakes(others, key)}; a policy knows clients by name: rename or delete all but one`,
    );
    return 'refused';
  }
  if (!planning.options.adopt) {
    problems.push(
      `${at} ${describeNamesakes(others, key)}, which no policy manages: --adopt hands it over to the policy, ` +
        'or rename it, or choose another name',
    );
    return 'refused';
  }
  return { client: only, adopting: true };
}

/** `a client on the server is already named "billing" (client_id …, managed_by registration)`. */
function describeNamesakes(clients: readonly Client[], name: string): string {
  const holders = clients
    .map(
      (c) =>
        `client_id ${c.client_id}, ${c.managed_by === null ? 'made by hand' : `managed_by ${c.managed_by}`}`,
    )
    .join('; ');
  return clients.length === 1
    ? `a client on the server is already named ${quote(name)} (${holders})`
    : `${clients.length} clients on the server are named ${quote(name)} (${holders})`;
}

/** Every resource a declared client names exists once applied, and defines the scopes granted. */
function checkReferences(planning: Planning, declared: DeclaredClient): void {
  const describeMissing = (identifier: string): string | undefined => {
    if (planning.reserved.has(identifier)) {
      return `${identifier} is the admin API's own resource; admin rights stay outside policies`;
    }
    if (planning.finalScopes.has(identifier)) return undefined;
    if (planning.resources.has(identifier)) {
      const flag = planning.options.prune === 'all' ? '--prune-all' : '--prune';
      return `${identifier} is not in the file, and ${flag} deletes it: declare it under resources`;
    }
    return `no resource ${identifier} in the file or on the server: declare it under resources`;
  };
  declared.grants.forEach((grant, i) => {
    const missing = describeMissing(grant.resource);
    if (missing) {
      planning.problems.push(`${declared.at}: grants[${i}].resource: ${missing}`);
      return;
    }
    const defined = planning.finalScopes.get(grant.resource) ?? [];
    const undefinedScopes = grant.scopes.filter((s) => !defined.includes(s));
    if (undefinedScopes.length) {
      planning.problems.push(
        `${declared.at}: grants[${i}].scopes: ${grant.resource} does not define ${undefinedScopes.join(', ')}; ` +
          `it defines ${defined.join(' ')}`,
      );
    }
  });
  declared.introspects.forEach((identifier, i) => {
    const missing = describeMissing(identifier);
    if (missing) planning.problems.push(`${declared.at}: introspects[${i}]: ${missing}`);
  });
}

/** Clients the file does not declare and apply keeps must still find their resources and scopes afterwards. */
function checkKeptClients(planning: Planning, kept: readonly Client[], doomed: readonly Resource[]): void {
  const flag = planning.options.prune === 'all' ? '--prune-all' : '--prune';
  const declared = new Map(planning.policy.resources.map((r) => [r.identifier, r]));
  for (const client of kept) {
    const holder = `client ${quote(client.name)} (client_id ${client.client_id}), which the file does not declare`;
    const uses = new Set([...client.grants.map((g) => g.resource), ...client.introspects]);
    for (const resource of doomed.filter((r) => uses.has(r.identifier))) {
      planning.problems.push(
        `resource ${resource.identifier}: ${flag} would delete it, but ${holder}, depends on it: ` +
          'declare the resource, or change that client',
      );
    }
    for (const grant of client.grants) {
      const resource = declared.get(grant.resource);
      const dropped = grant.scopes.filter((s) => resource && !resource.scopes.includes(s));
      if (resource && dropped.length) {
        planning.problems.push(
          `${resource.at}: scopes: removes ${dropped.join(', ')}, still granted to ${holder}: ` +
            'keep the scopes, or change that client',
        );
      }
    }
  }
}

function planClientDeletion(planning: Planning, client: Client): void {
  planning.changes.client.push({
    action: 'delete',
    kind: 'client',
    key: client.name,
    client_id: client.client_id,
    managed_by: client.managed_by,
    fields: [],
  });
  planning.calls.deleteClients.push({
    method: 'DELETE',
    path: clientPath(client),
    what: `delete client ${quote(client.name)} (client_id ${client.client_id})`,
  });
}

function planResourceDeletion(planning: Planning, resource: Resource): void {
  planning.changes.resource.push({
    action: 'delete',
    kind: 'resource',
    key: resource.identifier,
    managed_by: resource.managed_by,
    fields: [],
  });
  planning.calls.deleteResources.push({
    method: 'DELETE',
    path: resourcePath(resource),
    what: `delete resource ${resource.identifier}`,
  });
}

function findReserved(state: ServerState): ReadonlySet<string> {
  return new Set(state.resources.filter((r) => r.reserved).map((r) => r.identifier));
}

/** Admin clients are how anyone reaches the admin API: a policy neither exports, changes nor deletes them. */
function isAdminClient(client: Client, reserved: ReadonlySet<string>): boolean {
  return (
    client.grants.some((g) => reserved.has(g.resource)) || client.introspects.some((i) => reserved.has(i))
  );
}

/**
 * What export writes: every resource but the admin API's own and every client a policy manages or that was made
 * by hand (but admin clients), or only those a policy manages. Clients another manager labelled (registration)
 * are left out, since apply never takes them over. Names must tell the clients apart, or apply could not accept
 * the file.
 */
export function selectForExport(state: ServerState, options: { managedOnly: boolean }): ServerState {
  const reserved = findReserved(state);
  const chosen = (label: string | null) => !options.managedOnly || label === POLICY_LABEL;
  const resources = state.resources.filter((r) => !r.reserved && chosen(r.managed_by));
  const clients = state.clients.filter(
    (c) => !isAdminClient(c, reserved) && !isOthersLabel(c.managed_by) && chosen(c.managed_by),
  );
  const shared = [...groupByName(clients)].filter(([, named]) => named.length > 1);
  if (shared.length) {
    throw new PolicyError(
      `cannot export: a policy knows clients by name, and ${shared
        .map(([name, named]) => `${named.map((c) => c.client_id).join(', ')} are all named ${quote(name)}`)
        .join('; ')}: rename all but one (mayfly client update <client_id> --name <name>)`,
    );
  }
  return { resources, clients };
}

function createClientOperation(declared: DeclaredClient): Operation {
  return {
    method: 'POST',
    path: '/clients',
    body: {
      name: declared.name,
      auth_method: declared.auth_method,
      ...(declared.jwks ? { jwks: declared.jwks } : {}),
      ...(declared.jwks_uri ? { jwks_uri: declared.jwks_uri } : {}),
      grants: declared.grants,
      introspects: declared.introspects,
      bearer_allowed: declared.bearer_allowed,
      dpop_jkts: declared.dpop_jkts,
      rate_limits: declared.rate_limits,
      managed_by: POLICY_LABEL,
    },
    what: `create client ${quote(declared.name)}`,
    ...(declared.auth_method === 'private_key_jwt' ? {} : { secretOf: declared.name }),
  };
}

function describeResource(declared: DeclaredResource): FieldChange[] {
  return [
    ...(declared.name === null ? [] : [{ field: 'name', to: declared.name }]),
    { field: 'scopes', to: declared.scopes },
    ...(declared.token_ttl === undefined ? [] : [{ field: 'token_ttl', to: declared.token_ttl }]),
    { field: 'token_format', to: declared.token_format },
  ];
}

function describeClient(declared: DeclaredClient): FieldChange[] {
  const limits = declared.rate_limits;
  return [
    { field: 'auth_method', to: declared.auth_method },
    ...(declared.jwks ? [{ field: 'jwks', to: declared.jwks }] : []),
    ...(declared.jwks_uri ? [{ field: 'jwks_uri', to: declared.jwks_uri }] : []),
    ...(declared.grants.length ? [{ field: 'grants', to: declared.grants }] : []),
    ...(declared.introspects.length ? [{ field: 'introspects', to: declared.introspects }] : []),
    ...(declared.bearer_allowed ? [{ field: 'bearer_allowed', to: true }] : []),
    ...(declared.dpop_jkts.length ? [{ field: 'dpop_jkts', to: declared.dpop_jkts }] : []),
    ...(limits.tokens_per_minute !== null || limits.introspections_per_minute !== null
      ? [{ field: 'rate_limits', to: limits }]
      : []),
  ];
}

type Same = (a: unknown, b: unknown) => boolean;

/** Equal as JSON, whatever the order of object members (jsonb reorders them). */
const sameJson: Same = (a, b) => canonical(a) === canonical(b);
/** Scopes, introspected resources and pinned keys are sets: their order means nothing. */
const sameSet: Same = (a, b) => sameJson(sorted(a as string[]), sorted(b as string[]));
const sameGrants: Same = (a, b) =>
  sameJson(normalizeGrants(a as Client['grants']), normalizeGrants(b as Client['grants']));

function sorted(list: readonly string[]): string[] {
  return [...list].sort();
}

function normalizeGrants(grants: Client['grants']): Client['grants'] {
  return grants
    .map((g) => ({ resource: g.resource, scopes: sorted(g.scopes) }))
    .sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, member: unknown) =>
    typeof member === 'object' && member !== null && !Array.isArray(member)
      ? Object.fromEntries(Object.entries(member).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : member,
  );
}

type Compare = (field: string, from: unknown, to: unknown, same?: Same) => void;

/** Collects a change for every field whose old and new values differ. */
function differ(): { fields: FieldChange[]; compare: Compare } {
  const fields: FieldChange[] = [];
  return {
    fields,
    compare(field, from, to, same = sameJson) {
      if (!same(from, to)) fields.push({ field, from, to });
    },
  };
}

function diffResource(declared: DeclaredResource, existing: Resource, adopt: boolean): FieldChange[] {
  const { fields, compare } = differ();
  compare('name', existing.name, declared.name);
  compare('scopes', existing.scopes, declared.scopes, sameSet);
  if (declared.token_ttl !== undefined) compare('token_ttl', existing.token_ttl, declared.token_ttl);
  compare('token_format', existing.token_format, declared.token_format);
  if (adopt) compare('managed_by', existing.managed_by, POLICY_LABEL);
  return fields;
}

function diffClient(declared: DeclaredClient, existing: Client, adopting: boolean): FieldChange[] {
  const { fields, compare } = differ();
  compare('auth_method', existing.auth_method, declared.auth_method);
  compare('jwks', existing.jwks, declared.jwks);
  compare('jwks_uri', existing.jwks_uri, declared.jwks_uri);
  compare('grants', existing.grants, declared.grants, sameGrants);
  compare('introspects', existing.introspects, declared.introspects, sameSet);
  compare('bearer_allowed', existing.bearer_allowed, declared.bearer_allowed);
  compare('dpop_jkts', existing.dpop_jkts, declared.dpop_jkts, sameSet);
  compare('rate_limits', existing.rate_limits, declared.rate_limits);
  if (adopting) compare('managed_by', existing.managed_by, POLICY_LABEL);
  return fields;
}
