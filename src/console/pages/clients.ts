import type { Client, ClientWithSecret } from '../../clients/client.schemas.ts';
import { ClientInput, ClientUpdate } from '../../clients/client.schemas.ts';
import { ResourceIdentifier, type Resource } from '../../clients/resource.schemas.ts';
import { inputProblems, MayflyError, type ErrorDetail } from '../../errors.ts';
import {
  clientPage,
  clientSecretPage,
  clientsPage,
  deleteClientPage,
  emptyClientForm,
  GRANT_FIELD_PREFIX,
  grantField,
  newClientPage,
  type ClientEditValues,
  type ClientFilters,
  type ClientFormValues,
  type ClientPageData,
  type ResourceOption,
} from '../../../views/clients.ts';
import type { FieldErrors } from '../../../views/forms.ts';
import type { ConsolePage, ConsoleRequest, ConsoleResult } from '../console.ts';
import { formList, formText, requireWrite, versionProblem, type FormValues } from '../http.ts';

interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** Clients listed per page. */
const PAGE_SIZE = '50';

/** Resources offered in the forms: enough pages of 200 for any real deployment. */
const MAX_RESOURCE_PAGES = 25;
/**
 * Resources beyond the loaded pages that one request may look up by identifier: a client holds at most 100 grants
 * and 100 introspection rights.
 */
const MAX_LOOKUPS = 200;

const clientHref = (clientId: string) => `/console/clients/${encodeURIComponent(clientId)}`;

/** The resources the forms offer, and whether they are every resource (false past MAX_RESOURCE_PAGES pages). */
interface ResourceCatalog {
  resources: Resource[];
  complete: boolean;
}

async function loadResources(request: ConsoleRequest): Promise<ResourceCatalog> {
  const resources: Resource[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_RESOURCE_PAGES; page++) {
    const result = await request.admin<Page<Resource>>('listResources', {
      query: { limit: '200', ...(cursor === undefined ? {} : { cursor }) },
    });
    resources.push(...result.items);
    if (result.next_cursor === null) return { resources, complete: true };
    cursor = result.next_cursor;
  }
  return { resources, complete: false };
}

/**
 * Identifiers of the reserved resources (the admin API's own) among the loaded ones and `named`. When there are more
 * resources than the forms load, each named one that was not loaded is looked up, so that the admin API's resource
 * is recognised however many resources there are.
 */
async function reservedAmong(
  request: ConsoleRequest,
  catalog: ResourceCatalog,
  named: Iterable<string>,
): Promise<Set<string>> {
  const reserved = new Set(catalog.resources.filter((r) => r.reserved).map((r) => r.identifier));
  if (catalog.complete) return reserved;
  const loaded = new Set(catalog.resources.map((r) => r.identifier));
  // An identifier that is not one names no resource: the admin API refuses it with the rest of the form.
  const unloaded = [...new Set(named)].filter(
    (identifier) => !loaded.has(identifier) && ResourceIdentifier.safeParse(identifier).success,
  );
  if (unloaded.length > MAX_LOOKUPS) {
    throw new MayflyError(
      'invalid_input',
      `the form names ${unloaded.length} resources: a client holds at most 100 grants and 100 introspection rights`,
    );
  }
  for (const identifier of unloaded) {
    const found = await request.admin<Page<Resource>>('listResources', { query: { identifier, limit: '1' } });
    if (found.items.some((r) => r.reserved)) reserved.add(identifier);
  }
  return reserved;
}

const loadClient = (request: ConsoleRequest): Promise<Client> =>
  request.admin<Client>('getClient', { params: { client_id: request.params.client_id } });

// ---------------------------------------------------------------------------------------------------------------
// Reading the forms

/** `grant:<identifier>` fields, in the order posted. */
function readGrants(form: FormValues): Map<string, string[]> {
  const grants = new Map<string, string[]>();
  for (const name of Object.keys(form)) {
    if (name.startsWith(GRANT_FIELD_PREFIX))
      grants.set(name.slice(GRANT_FIELD_PREFIX.length), formList(form, name));
  }
  return grants;
}

function readClientForm(form: FormValues): ClientFormValues {
  return {
    name: formText(form, 'name'),
    auth_method: formText(form, 'auth_method'),
    jwks: formText(form, 'jwks'),
    jwks_uri: formText(form, 'jwks_uri'),
    grants: readGrants(form),
    introspects: formList(form, 'introspects'),
    bearer_allowed: form.bearer_allowed !== undefined,
    dpop_jkts: formText(form, 'dpop_jkts'),
  };
}

const thumbprints = (value: string): string[] => value.split(/\s+/).filter(Boolean);

/** Problems found before the admin API sees the form; keyed by field name. */
type Problems = Map<string, string>;

function addProblem(problems: Problems, key: string, message: string): void {
  const previous = problems.get(key);
  problems.set(key, previous === undefined ? message : `${previous} ${message}`);
}

const reservedMessage = (identifier: string) =>
  `${identifier} is the admin API's own resource: rights on it are given with the admin API or the mayfly CLI, ` +
  'not this form.';

/** Registration: no right on the admin API's own resource is ever given through the console. */
function refuseReserved(
  values: Pick<ClientFormValues, 'grants' | 'introspects'>,
  reserved: ReadonlySet<string>,
  problems: Problems,
): void {
  for (const identifier of values.grants.keys()) {
    if (reserved.has(identifier)) addProblem(problems, 'grants', reservedMessage(identifier));
  }
  for (const identifier of values.introspects) {
    if (reserved.has(identifier)) addProblem(problems, 'introspects', reservedMessage(identifier));
  }
}

/**
 * Editing: the rights a client holds on the admin API's own resource can be kept or removed, never added to; and a
 * client holding any of them keeps its DPoP binding (no Bearer exception given, pinned keys unchanged).
 */
function refuseAdminChanges(
  values: ClientEditValues,
  posted: FormValues,
  state: ClientState,
  problems: Problems,
): void {
  const { client, reserved } = state;
  for (const [identifier, scopes] of values.grants) {
    if (!reserved.has(identifier)) continue;
    const held = client.grants.find((grant) => grant.resource === identifier)?.scopes ?? [];
    const added = scopes.filter((scope) => !held.includes(scope));
    if (!added.length) continue;
    if (!held.length) {
      addProblem(problems, 'grants', reservedMessage(identifier));
    } else {
      const offered = state.grantable.some((resource) => resource.identifier === identifier);
      addProblem(
        problems,
        offered ? grantField(identifier) : 'grants',
        `${added.join(' ')}: not held by this client. ${identifier} is the admin API's own resource: this form ` +
          'can keep or remove the scopes a client holds on it, never add one; give it with the admin API or the ' +
          'mayfly CLI.',
      );
    }
  }
  for (const identifier of values.introspects) {
    if (reserved.has(identifier) && !client.introspects.includes(identifier))
      addProblem(problems, 'introspects', reservedMessage(identifier));
  }
  if (!state.adminRights) return;
  if (values.bearer_allowed && !client.bearer_allowed) {
    addProblem(
      problems,
      'bearer_allowed',
      `${client.name} holds rights on the admin API: Bearer tokens are not allowed for it here; only the admin ` +
        'API or the mayfly CLI can make that exception.',
    );
  }
  if (posted.dpop_jkts !== undefined && !sameList(thumbprints(values.dpop_jkts), client.dpop_jkts)) {
    addProblem(
      problems,
      'dpop_jkts',
      `${client.name} holds rights on the admin API: its pinned DPoP keys are changed with the admin API or the ` +
        'mayfly CLI, not here.',
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors of the admin API, next to the fields they are about

interface ErrorTarget {
  /** Field names the re-rendered form has; other paths go to the form as a whole (''). */
  fields: ReadonlySet<string>;
  /** The grants as sent, to name the resource of `grants.<n>`. */
  grants: readonly { resource: string; scopes: readonly string[] }[];
  introspects: readonly string[];
  dpopJkts: readonly string[];
  /** Resources with their own checkbox group in the form. */
  offered: ReadonlySet<string>;
}

function detailField(detail: ErrorDetail, target: ErrorTarget): [field: string, message: string] {
  const [head = '', index, ...rest] = detail.path.split('.');
  const at = index === undefined ? undefined : Number(index);
  let field = head;
  let message = detail.message;
  if (head === 'grants' && at !== undefined) {
    const grant = target.grants[at];
    if (grant && target.offered.has(grant.resource)) field = grantField(grant.resource);
    else if (grant) message = `${grant.resource}: ${message}`;
    const scopeIndex = rest[0] === 'scopes' && rest[1] !== undefined ? Number(rest[1]) : undefined;
    const scope = scopeIndex === undefined ? undefined : grant?.scopes[scopeIndex];
    if (scope !== undefined) message = `scope ${scope}: ${message}`;
  } else if (head === 'introspects' && at !== undefined) {
    const identifier = target.introspects[at];
    if (identifier !== undefined) message = `${identifier}: ${message}`;
  } else if (head === 'dpop_jkts' && at !== undefined) {
    const jkt = target.dpopJkts[at];
    message = `thumbprint ${at + 1}${jkt === undefined ? '' : ` (${jkt})`}: ${message}`;
  } else if (head === 'jwks' && index === 'keys' && rest[0] !== undefined) {
    message = `key ${Number(rest[0]) + 1}: ${message}`;
  }
  const known =
    target.fields.has(field) || (field.startsWith(GRANT_FIELD_PREFIX) && target.fields.has('grants'));
  if (!known) return ['', detail.path ? `${detail.path}: ${message}` : message];
  return [field, message];
}

/** Which form field a resource or scope error is about: the resource's own checkboxes, or the grants as a whole. */
function resourceErrorField(error: MayflyError, target: ErrorTarget): string {
  if (error.code === 'scope_not_defined') {
    const grant = target.grants.find((g) => error.message.startsWith(`${g.resource} does not define`));
    if (grant) return target.offered.has(grant.resource) ? grantField(grant.resource) : 'grants';
    return target.fields.has('grants') ? 'grants' : '';
  }
  const missing = (identifier: string) => error.message.includes(identifier);
  if (target.grants.some((g) => missing(g.resource)) && target.fields.has('grants')) return 'grants';
  if (target.introspects.some(missing) && target.fields.has('introspects')) return 'introspects';
  return '';
}

/** The admin API errors a form answers by showing itself again, with the messages next to their fields. */
function formErrors(
  thrown: unknown,
  target: ErrorTarget,
  problems: Problems = new Map(),
): ErrorPage | undefined {
  if (!(thrown instanceof MayflyError)) return undefined;
  switch (thrown.code) {
    case 'invalid_input':
      if (!thrown.details.length) addProblem(problems, '', thrown.message);
      for (const detail of thrown.details) addProblem(problems, ...detailField(detail, target));
      break;
    case 'resource_not_found':
    case 'scope_not_defined':
      addProblem(problems, resourceErrorField(thrown, target), thrown.message);
      break;
    case 'last_admin_client':
      addProblem(problems, '', thrown.message);
      break;
    default:
      return undefined;
  }
  return { errors: Object.fromEntries(problems), status: thrown.status };
}

interface ErrorPage {
  errors: FieldErrors;
  status: number;
}

/** The same schema the admin API applies, so that one answer lists every problem, not only the first found. */
function withSchemaProblems(
  problems: Problems,
  schema: typeof ClientInput | typeof ClientUpdate,
  body: object,
  target: ErrorTarget,
): ErrorPage {
  const details = Object.keys(body).length ? inputProblems(schema, body) : [];
  for (const detail of details) {
    const [field, message] = detailField(detail, target);
    if (!problems.has(field)) problems.set(field, message);
  }
  return { errors: Object.fromEntries(problems), status: 400 };
}

// ---------------------------------------------------------------------------------------------------------------
// Registration

const REGISTER_FIELDS = new Set([
  'name',
  'auth_method',
  'jwks',
  'jwks_uri',
  'grants',
  'introspects',
  'bearer_allowed',
  'dpop_jkts',
]);
const EDIT_FIELDS = new Set(['name', 'grants', 'introspects', 'bearer_allowed', 'dpop_jkts']);
const ROTATE_FIELDS = new Set(['previous_secret_expires_in']);

async function register(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const values = readClientForm(request.form);
  const catalog = await loadResources(request);
  const reserved = await reservedAmong(request, catalog, [...values.grants.keys(), ...values.introspects]);
  const offered = catalog.resources.filter((resource) => !reserved.has(resource.identifier));
  const offeredIds = new Set(offered.map((resource) => resource.identifier));
  const problems: Problems = new Map();

  let jwks: unknown;
  if (values.jwks.trim()) {
    try {
      jwks = JSON.parse(values.jwks);
    } catch {
      // The parser's own message is not shown: it reads as an internal error, and the fix is the same.
      addProblem(problems, 'jwks', 'not valid JSON: check the braces, quotes and commas');
    }
  }
  refuseReserved(values, reserved, problems);

  const grants = [...values.grants].map(([resource, scopes]) => ({ resource, scopes }));
  const dpopJkts = thumbprints(values.dpop_jkts);
  const body = {
    name: values.name,
    ...(values.auth_method ? { auth_method: values.auth_method } : {}),
    ...(jwks === undefined ? {} : { jwks }),
    ...(values.jwks_uri.trim() ? { jwks_uri: values.jwks_uri.trim() } : {}),
    grants,
    introspects: values.introspects,
    bearer_allowed: values.bearer_allowed,
    dpop_jkts: dpopJkts,
  };
  const target: ErrorTarget = {
    fields: REGISTER_FIELDS,
    grants,
    introspects: values.introspects,
    dpopJkts,
    offered: offeredIds,
  };
  const again = (page: ErrorPage): ConsoleResult => ({
    html: newClientPage(request.page, offered, values, page.errors),
    status: page.status,
  });
  if (problems.size) return again(withSchemaProblems(problems, ClientInput, body, target));

  let created: ClientWithSecret;
  try {
    created = await request.admin<ClientWithSecret>('createClient', { body });
  } catch (thrown) {
    const page = formErrors(thrown, target);
    if (!page) throw thrown;
    return again(page);
  }
  const { client_secret: secret, ...client } = created;
  if (secret === undefined) {
    return {
      redirect: clientHref(client.client_id),
      notice: `Client ${client.name} is registered; it authenticates with its private key.`,
    };
  }
  return { html: clientSecretPage(request.page, client, secret, 'created'), status: 201 };
}

// ---------------------------------------------------------------------------------------------------------------
// One client

interface ClientState {
  client: Client;
  /** Every resource loaded, for the names in the details. */
  resources: Resource[];
  /** Identifiers of the reserved resources (the admin API's own) among those loaded and those the client names. */
  reserved: ReadonlySet<string>;
  /**
   * Whether the client holds a right on the admin API's resource: its credentials and DPoP binding are then left
   * to the admin API and the CLI.
   */
  adminRights: boolean;
  /** Resources the edit form offers: on the admin API's, only the scopes the client holds, to keep or remove. */
  grantable: ResourceOption[];
  introspectable: Resource[];
}

/**
 * The client and the resources its edit form offers: every resource loaded but the admin API's, whose rights the
 * client already holds are offered only to be kept or removed. `named`: identifiers a posted form names.
 */
async function loadClientState(request: ConsoleRequest, named: Iterable<string> = []): Promise<ClientState> {
  const [client, catalog] = await Promise.all([loadClient(request), loadResources(request)]);
  const held = [...client.grants.map((grant) => grant.resource), ...client.introspects];
  const reserved = await reservedAmong(request, catalog, [...held, ...named]);
  const heldScopes = (identifier: string) =>
    client.grants.find((grant) => grant.resource === identifier)?.scopes ?? [];
  return {
    client,
    resources: catalog.resources,
    reserved,
    adminRights: held.some((identifier) => reserved.has(identifier)),
    grantable: catalog.resources.flatMap((resource): ResourceOption[] => {
      if (!reserved.has(resource.identifier)) return [resource];
      const scopes = resource.scopes.filter((scope) => heldScopes(resource.identifier).includes(scope));
      return scopes.length ? [{ ...resource, scopes }] : [];
    }),
    introspectable: catalog.resources.filter(
      (resource) => !reserved.has(resource.identifier) || client.introspects.includes(resource.identifier),
    ),
  };
}

function showClient(
  request: ConsoleRequest,
  state: ClientState,
  extra: Partial<Pick<ClientPageData, 'values' | 'overlap' | 'errors'>> = {},
  status = 200,
): ConsoleResult {
  return {
    html: clientPage(request.page, {
      client: state.client,
      resources: state.resources,
      grantable: state.grantable,
      introspectable: state.introspectable,
      adminRights: state.adminRights,
      defaultOverlapSeconds: request.deps.admin.secretOverlapSeconds,
      ...extra,
    }),
    status,
  };
}

const sorted = (values: readonly string[]) => [...values].sort();
const sameList = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && sorted(a).every((value, index) => value === sorted(b)[index]);
const grantKey = (grants: readonly { resource: string; scopes: readonly string[] }[]) =>
  JSON.stringify(grants.map((g) => [g.resource, sorted(g.scopes)]).sort());

/**
 * The grants and introspection rights to save: as ticked for the resources the form offers, and as the client
 * holds them for the others (beyond the resources the form loads), which the form could not show.
 */
function mergedRights(
  values: ClientEditValues,
  state: ClientState,
): { grants: { resource: string; scopes: string[] }[]; introspects: string[] } {
  const { client } = state;
  const grantable = new Set(state.grantable.map((resource) => resource.identifier));
  const introspectable = new Set(state.introspectable.map((resource) => resource.identifier));
  const grants = [...values.grants].map(([resource, scopes]) => ({ resource, scopes: [...scopes] }));
  for (const grant of client.grants) {
    if (!grantable.has(grant.resource) && !values.grants.has(grant.resource)) grants.push(grant);
  }
  const introspects = [...values.introspects];
  for (const identifier of client.introspects) {
    if (!introspectable.has(identifier) && !introspects.includes(identifier)) introspects.push(identifier);
  }
  return { grants, introspects };
}

async function edit(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const values: ClientEditValues = readClientForm(request.form);
  const state = await loadClientState(request, [...values.grants.keys(), ...values.introspects]);
  const { client } = state;
  const stale = versionProblem(request.form, client.updated_at, 'client');
  if (stale) return showClient(request, state, { errors: { '': stale.message } }, stale.status);

  const problems: Problems = new Map();
  refuseAdminChanges(values, request.form, state, problems);
  const { grants, introspects } = mergedRights(values, state);
  // A client with rights on the admin API keeps its pinned keys (its form shows them without a field).
  const dpopJkts = state.adminRights ? client.dpop_jkts : thumbprints(values.dpop_jkts);

  // Only what changed, so the audit trail shows the change and untouched settings are left alone.
  const body = {
    ...(values.name !== client.name ? { name: values.name } : {}),
    ...(grantKey(grants) !== grantKey(client.grants) ? { grants } : {}),
    ...(!sameList(introspects, client.introspects) ? { introspects } : {}),
    ...(values.bearer_allowed !== client.bearer_allowed ? { bearer_allowed: values.bearer_allowed } : {}),
    ...(dpopJkts.join('\n') !== client.dpop_jkts.join('\n') ? { dpop_jkts: dpopJkts } : {}),
  };
  const target: ErrorTarget = {
    fields: EDIT_FIELDS,
    grants,
    introspects,
    dpopJkts,
    offered: new Set(state.grantable.map((resource) => resource.identifier)),
  };
  if (problems.size) {
    const page = withSchemaProblems(problems, ClientUpdate, body, target);
    return showClient(request, state, { values, errors: page.errors }, page.status);
  }
  if (!Object.keys(body).length) {
    return { redirect: clientHref(client.client_id), notice: 'Nothing changed: there was nothing to save.' };
  }
  try {
    const updated = await request.admin<Client>('updateClient', {
      params: { client_id: client.client_id },
      body,
    });
    return { redirect: clientHref(updated.client_id), notice: `Changes to ${updated.name} are saved.` };
  } catch (thrown) {
    const page = formErrors(thrown, target);
    if (!page) throw thrown;
    return showClient(request, state, { values, errors: page.errors }, page.status);
  }
}

async function setEnabled(request: ConsoleRequest, enabled: boolean): Promise<ConsoleResult> {
  requireWrite(request);
  const params = { client_id: request.params.client_id };
  try {
    const client = await request.admin<Client>(enabled ? 'enableClient' : 'disableClient', { params });
    return {
      redirect: clientHref(client.client_id),
      notice: enabled
        ? `${client.name} is enabled: it can obtain tokens again.`
        : `${client.name} is disabled: it gets no token, and its outstanding tokens are inactive.`,
    };
  } catch (thrown) {
    if (!(thrown instanceof MayflyError) || thrown.code !== 'last_admin_client') throw thrown;
    return showClient(
      request,
      await loadClientState(request),
      { errors: { '': `Not disabled: ${thrown.message}` } },
      thrown.status,
    );
  }
}

/**
 * Why the console never issues a secret of a client with rights on the admin API: the secret would be an admin API
 * credential, shown to whoever uses the console.
 */
const adminCredentials = (client: Client) =>
  `${client.name} holds rights on the admin API, so its secret is an admin API credential: the console never ` +
  `issues or shows one. Rotate it with the mayfly CLI (mayfly client rotate-secret ${client.client_id}) or the ` +
  'admin API.';

async function rotate(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const state = await loadClientState(request);
  if (state.adminRights) {
    return showClient(
      request,
      state,
      { errors: { '': `Not rotated: ${adminCredentials(state.client)}` } },
      403,
    );
  }
  const overlap = formText(request.form, 'previous_secret_expires_in').trim();
  const target: ErrorTarget = {
    fields: ROTATE_FIELDS,
    grants: [],
    introspects: [],
    dpopJkts: [],
    offered: new Set(),
  };
  const again = (page: ErrorPage) =>
    showClient(request, state, { overlap, errors: page.errors }, page.status);
  if (overlap && !/^\d+$/.test(overlap)) {
    return again({
      errors: {
        previous_secret_expires_in:
          'expected a whole number of seconds, e.g. 3600, or nothing for the default',
      },
      status: 400,
    });
  }
  try {
    const rotated = await request.admin<ClientWithSecret>('rotateClientSecret', {
      params: { client_id: request.params.client_id },
      body: overlap ? { previous_secret_expires_in: Number(overlap) } : {},
    });
    const { client_secret: secret, ...client } = rotated;
    // The API always answers a rotation with the new secret.
    if (secret === undefined) throw new Error('a secret rotation answered no secret');
    return { html: clientSecretPage(request.page, client, secret, 'rotated'), status: 201 };
  } catch (thrown) {
    const page = formErrors(thrown, target);
    if (!page) throw thrown;
    return again(page);
  }
}

async function remove(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const client = await loadClient(request);
  try {
    await request.admin('deleteClient', { params: { client_id: client.client_id } });
  } catch (thrown) {
    if (!(thrown instanceof MayflyError) || thrown.code !== 'last_admin_client') throw thrown;
    return {
      html: deleteClientPage(request.page, client, { '': `Not deleted: ${thrown.message}` }),
      status: thrown.status,
    };
  }
  return {
    redirect: '/console/clients',
    notice: `Client ${client.name} (${client.client_id}) is deleted; its tokens are inactive.`,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The list

const LIST_FILTERS = ['name', 'status', 'resource', 'auth_method'] as const;

async function listClients(request: ConsoleRequest): Promise<ConsoleResult> {
  const filters: ClientFilters = {};
  for (const name of [...LIST_FILTERS, 'cursor'] as const) {
    const value = request.query[name]?.trim();
    if (value) filters[name] = value;
  }
  const { resources } = await loadResources(request);
  try {
    const page = await request.admin<Page<Client>>('listClients', {
      query: { ...filters, limit: PAGE_SIZE },
    });
    return {
      html: clientsPage(request.page, {
        items: page.items,
        nextCursor: page.next_cursor,
        filters,
        resources,
      }),
    };
  } catch (thrown) {
    if (!(thrown instanceof MayflyError) || thrown.code !== 'invalid_input') throw thrown;
    const target: ErrorTarget = {
      fields: new Set(LIST_FILTERS),
      grants: [],
      introspects: [],
      dpopJkts: [],
      offered: new Set(),
    };
    const page = formErrors(thrown, target);
    return {
      html: clientsPage(request.page, {
        items: [],
        nextCursor: null,
        filters,
        resources,
        errors: page?.errors,
      }),
      status: thrown.status,
    };
  }
}

export const CLIENT_PAGES: readonly ConsolePage[] = [
  { method: 'GET', path: '/clients', handle: listClients },
  {
    method: 'GET',
    path: '/clients/new',
    async handle(request) {
      requireWrite(request);
      const resources = (await loadResources(request)).resources.filter((resource) => !resource.reserved);
      return { html: newClientPage(request.page, resources, emptyClientForm()) };
    },
  },
  { method: 'POST', path: '/clients/new', handle: register },
  {
    method: 'GET',
    path: '/clients/{client_id}',
    handle: async (request) => showClient(request, await loadClientState(request)),
  },
  { method: 'POST', path: '/clients/{client_id}', handle: edit },
  { method: 'POST', path: '/clients/{client_id}/disable', handle: (request) => setEnabled(request, false) },
  { method: 'POST', path: '/clients/{client_id}/enable', handle: (request) => setEnabled(request, true) },
  { method: 'POST', path: '/clients/{client_id}/rotate-secret', handle: rotate },
  {
    method: 'GET',
    path: '/clients/{client_id}/delete',
    async handle(request) {
      requireWrite(request);
      return { html: deleteClientPage(request.page, await loadClient(request)) };
    },
  },
  { method: 'POST', path: '/clients/{client_id}/delete', handle: remove },
];
