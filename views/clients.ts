import {
  actionButton,
  checkbox,
  csrfInput,
  onceInput,
  errorSummary,
  field,
  select,
  textarea,
  type FieldErrors,
} from './forms.ts';
import { formatTime, html, query, type Html } from './html.ts';
import { layout, type PageContext } from './layout.ts';

export type AuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

/** A client as the admin API shows it (never a secret value). */
export interface ClientView {
  client_id: string;
  name: string;
  auth_method: AuthMethod;
  jwks: { keys: readonly Readonly<Record<string, unknown>>[] } | null;
  jwks_uri: string | null;
  grants: readonly { resource: string; scopes: readonly string[] }[];
  introspects: readonly string[];
  bearer_allowed: boolean;
  rate_limits: { tokens_per_minute: number | null; introspections_per_minute: number | null };
  dpop_jkts: readonly string[];
  managed_by: string | null;
  status: 'enabled' | 'disabled';
  disabled_at: string | null;
  secrets: readonly { id: string; created_at: string; expires_at: string | null }[];
  created_at: string;
  updated_at: string;
}

/** What the forms need of a resource: its identifier, name and scopes. */
export interface ResourceOption {
  identifier: string;
  name: string | null;
  scopes: readonly string[];
  reserved: boolean;
}

/** Form field names: one `grant:<resource identifier>` checkbox group per resource, its scopes as values. */
export const GRANT_FIELD_PREFIX = 'grant:';
export const grantField = (identifier: string): string => `${GRANT_FIELD_PREFIX}${identifier}`;

/** What the register and edit forms show: as typed, or as the client has it. */
export interface ClientFormValues {
  name: string;
  auth_method: string;
  jwks: string;
  jwks_uri: string;
  /** Scopes ticked, by resource identifier. */
  grants: ReadonlyMap<string, readonly string[]>;
  introspects: readonly string[];
  bearer_allowed: boolean;
  /** Thumbprints, one per line. */
  dpop_jkts: string;
}

export type ClientEditValues = Pick<
  ClientFormValues,
  'name' | 'grants' | 'introspects' | 'bearer_allowed' | 'dpop_jkts'
>;

export const AUTH_METHODS: readonly (readonly [AuthMethod, string])[] = [
  ['client_secret_basic', 'Client secret in HTTP Basic authentication (client_secret_basic)'],
  ['client_secret_post', 'Client secret in the request body (client_secret_post)'],
  ['private_key_jwt', 'Assertion signed with the client’s private key (private_key_jwt)'],
];

const AUTH_METHOD_SHORT: Readonly<Record<AuthMethod, string>> = {
  client_secret_basic: 'Secret (HTTP Basic)',
  client_secret_post: 'Secret (request body)',
  private_key_jwt: 'Private key JWT',
};

export function authMethodText(method: string): string {
  return method in AUTH_METHOD_SHORT ? AUTH_METHOD_SHORT[method as AuthMethod] : method;
}

const clientHref = (clientId: string) => `/console/clients/${encodeURIComponent(clientId)}`;

export function emptyClientForm(): ClientFormValues {
  return {
    name: '',
    auth_method: 'client_secret_basic',
    jwks: '',
    jwks_uri: '',
    grants: new Map(),
    introspects: [],
    bearer_allowed: false,
    dpop_jkts: '',
  };
}

/** The edit form's values as the client has them now. */
export function clientEditValues(client: ClientView): ClientEditValues {
  return {
    name: client.name,
    grants: new Map(client.grants.map((grant) => [grant.resource, grant.scopes])),
    introspects: client.introspects,
    bearer_allowed: client.bearer_allowed,
    dpop_jkts: client.dpop_jkts.join('\n'),
  };
}

function statusBadge(status: ClientView['status']): Html {
  return html`<span class="badge status-${status}">${status === 'enabled' ? 'Enabled' : 'Disabled'}</span>`;
}

function resourceLabel(identifier: string, resources: readonly ResourceOption[]): Html {
  const name = resources.find((resource) => resource.identifier === identifier)?.name;
  return name
    ? html`${name} <span class="muted"><code>${identifier}</code></span>`
    : html`<code>${identifier}</code>`;
}

function grantList(client: ClientView, resources: readonly ResourceOption[]): Html {
  if (!client.grants.length) return html`<span class="muted">None</span>`;
  return html`<ul class="plain">
    ${client.grants.map(
      (grant) => html`<li>${resourceLabel(grant.resource, resources)}: ${grant.scopes.join(' ')}</li>`,
    )}
  </ul>`;
}

// ---------------------------------------------------------------------------------------------------------------
// The list

export interface ClientFilters {
  name?: string | undefined;
  status?: string | undefined;
  resource?: string | undefined;
  auth_method?: string | undefined;
  cursor?: string | undefined;
}

export interface ClientListData {
  items: readonly ClientView[];
  nextCursor: string | null;
  filters: ClientFilters;
  /** Every resource, for the resource filter. */
  resources: readonly ResourceOption[];
  errors?: FieldErrors | undefined;
}

function clientTable(items: readonly ClientView[], resources: readonly ResourceOption[]): Html {
  return html`<div class="table-wrap">
    <table class="responsive">
      <caption class="visually-hidden">
        Clients
      </caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Client id</th>
          <th scope="col">Authentication</th>
          <th scope="col">Grants</th>
          <th scope="col">Status</th>
        </tr>
      </thead>
      <tbody>
        ${items.map(
          (client) =>
            html`<tr>
              <th scope="row" data-label="Name">
                <a href="${clientHref(client.client_id)}">${client.name}</a>
              </th>
              <td data-label="Client id"><code>${client.client_id}</code></td>
              <td data-label="Authentication">${authMethodText(client.auth_method)}</td>
              <td data-label="Grants">${grantList(client, resources)}</td>
              <td data-label="Status">${statusBadge(client.status)}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

function emptyList(context: PageContext, filters: ClientFilters): Html {
  const filtered = Boolean(filters.name ?? filters.status ?? filters.resource ?? filters.auth_method);
  if (filtered) {
    return html`<p class="empty">
      No client matches these filters. Change them, or <a href="/console/clients">show every client</a>.
    </p>`;
  }
  if (filters.cursor) {
    return html`<p class="empty">No more clients. <a href="/console/clients">Back to the first page</a>.</p>`;
  }
  return html`<p class="empty">
    No clients yet. A client is a service that obtains tokens for the resources it is granted.
    ${
      context.user.role === 'write'
        ? html`<a href="/console/clients/new">Register the first client</a>.`
        : 'Ask an administrator with the write role to register one.'
    }
  </p>`;
}

export function clientsPage(context: PageContext, data: ClientListData): Html {
  const { filters, errors } = data;
  const kept = {
    name: filters.name,
    status: filters.status,
    resource: filters.resource,
    auth_method: filters.auth_method,
  };
  const anyFilter = Object.values(kept).some(Boolean);
  const results = errors
    ? ''
    : data.items.length
      ? html`${clientTable(data.items, data.resources)}
        ${
          data.nextCursor || filters.cursor
            ? html`<nav class="actions" aria-label="Pages">
                ${filters.cursor ? html`<a href="/console/clients${query(kept)}">First page</a>` : ''}
                ${
                  data.nextCursor
                    ? html`<a href="/console/clients${query({ ...kept, cursor: data.nextCursor })}" rel="next"
                        >Next page</a
                      >`
                    : ''
                }
              </nav>`
            : ''
        }`
      : emptyList(context, filters);
  return layout(
    context,
    'clients',
    'Clients',
    html`<p>Clients are the services that obtain access tokens with the client credentials grant.</p>
      ${
        context.user.role === 'write'
          ? html`<p><a href="/console/clients/new" class="button primary">Register a client</a></p>`
          : ''
      }
      ${errorSummary(errors)}
      <form method="get" action="/console/clients" class="filters" role="search" aria-label="Filter clients">
        ${field({ name: 'name', label: 'Name contains', type: 'search', value: filters.name, errors })}
        ${select({
          name: 'status',
          label: 'Status',
          value: filters.status,
          errors,
          choices: [
            ['', 'Any status'],
            ['enabled', 'Enabled'],
            ['disabled', 'Disabled'],
          ],
        })}
        ${select({
          name: 'resource',
          label: 'Resource',
          value: filters.resource,
          errors,
          choices: [
            ['', 'Any resource'],
            ...data.resources.map(
              (resource) =>
                [
                  resource.identifier,
                  resource.name ? `${resource.name} (${resource.identifier})` : resource.identifier,
                ] as const,
            ),
          ],
        })}
        ${select({
          name: 'auth_method',
          label: 'Authentication method',
          value: filters.auth_method,
          errors,
          choices: [
            ['', 'Any method'],
            ...AUTH_METHODS.map(([value]) => [value, authMethodText(value)] as const),
          ],
        })}
        <div class="actions">
          <button type="submit">Search</button>
          ${anyFilter ? html`<a href="/console/clients">Clear filters</a>` : ''}
        </div>
      </form>
      ${results}`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Form parts shared by registration and editing

function fieldError(name: string, errors: FieldErrors | undefined): Html {
  const error = errors?.[name];
  return error ? html`<p class="field-error" id="error-${name}">${error}</p>` : html``;
}

function describedBy(ids: readonly (string | false | undefined)[]): Html | string {
  const list = ids.filter(Boolean).join(' ');
  return list ? html` aria-describedby="${list}"` : '';
}

/** A checkbox of a group: many share the name, each with its own value. `|` never occurs in an identifier. */
function groupCheckbox(options: {
  name: string;
  value: string;
  id: string;
  label: Html | string;
  checked: boolean;
  describedBy: Html | string;
}): Html {
  return html`<div class="field checkbox">
    <input
      type="checkbox"
      id="${options.id}"
      name="${options.name}"
      value="${options.value}"
      ${options.checked ? html` checked` : ''}${options.describedBy}
    />
    <label for="${options.id}">${options.label}</label>
  </div>`;
}

function resourceLegend(resource: ResourceOption): Html {
  return resource.name
    ? html`${resource.name} <span class="muted">(${resource.identifier})</span>`
    : html`${resource.identifier}`;
}

function grantsFieldset(
  resources: readonly ResourceOption[],
  chosen: ReadonlyMap<string, readonly string[]>,
  errors: FieldErrors | undefined,
  canCreateResources: boolean,
): Html {
  const error = errors?.grants;
  return html`<fieldset id="field-grants" ${describedBy(['hint-grants', error && 'error-grants'])}>
    <legend>Grants</legend>
    <p class="hint" id="hint-grants">
      The scopes this client may obtain, per resource. Each token is for one resource and holds only scopes
      ticked here.
    </p>
    ${fieldError('grants', errors)}
    ${
      resources.length
        ? resources.map((resource) => {
            const name = grantField(resource.identifier);
            const ticked = chosen.get(resource.identifier) ?? [];
            const resourceError = errors?.[name];
            const hint = resource.reserved ? `hint-${name}` : undefined;
            return html`<fieldset id="field-${name}" ${resourceError ? html` class="invalid"` : ''}>
              <legend>${resourceLegend(resource)}</legend>
              ${
                resource.reserved
                  ? html`<p class="hint" id="hint-${name}">
                      The admin API itself: admin:write lets this client change every setting of Mayfly. Only
                      the scopes the client holds are listed, to keep or remove: they are given with the admin
                      API or the mayfly CLI.
                    </p>`
                  : ''
              }
              ${fieldError(name, errors)}
              ${resource.scopes.map((scope) =>
                groupCheckbox({
                  name,
                  value: scope,
                  id: `field-${name}|${scope}`,
                  label: scope,
                  checked: ticked.includes(scope),
                  describedBy: describedBy([hint, resourceError && `error-${name}`]),
                }),
              )}
            </fieldset>`;
          })
        : html`<p class="empty">
            No resources yet, so there is nothing to grant: the client can be registered now and given grants
            later.${canCreateResources ? html` <a href="/console/resources/new">Create a resource</a>.` : ''}
          </p>`
    }
  </fieldset>`;
}

function introspectsFieldset(
  resources: readonly ResourceOption[],
  chosen: readonly string[],
  errors: FieldErrors | undefined,
): Html {
  const error = errors?.introspects;
  if (!resources.length && !error) return html``;
  return html`<fieldset
    id="field-introspects"
    ${describedBy(['hint-introspects', error && 'error-introspects'])}
  >
    <legend>Introspection rights</legend>
    <p class="hint" id="hint-introspects">
      Only for a resource server: the resources whose tokens this client may introspect. Most clients need
      none.
    </p>
    ${fieldError('introspects', errors)}
    ${resources.map((resource) =>
      groupCheckbox({
        name: 'introspects',
        value: resource.identifier,
        id: `field-introspects|${resource.identifier}`,
        label: resourceLegend(resource),
        checked: chosen.includes(resource.identifier),
        describedBy: '',
      }),
    )}
  </fieldset>`;
}

const BEARER_HINT =
  'Weakens security: anyone who obtains a Bearer token can use it, while a DPoP-bound token is useless without ' +
  'the client’s private key. Only for clients that cannot send DPoP proofs; the audit log marks every request of ' +
  'such a client.';

function bearerCheckbox(checked: boolean, errors: FieldErrors | undefined, extraHint = ''): Html {
  return checkbox({
    name: 'bearer_allowed',
    label: 'Allow Bearer tokens (no DPoP)',
    checked,
    hint: extraHint ? `${BEARER_HINT} ${extraHint}` : BEARER_HINT,
    errors,
  });
}

/**
 * A setting of a client with rights on the admin API that the edit form shows without a control: its id is the one
 * the control would have, so that an error summary's link still leads to it.
 */
function lockedSetting(
  name: string,
  label: string,
  value: Html,
  note: string,
  errors: FieldErrors | undefined,
): Html {
  const error = errors?.[name];
  return html`<div class="field${error ? ' invalid' : ''}" id="field-${name}">
    <p><strong>${label}</strong></p>
    ${value}
    <p class="hint">${note}</p>
    ${fieldError(name, errors)}
  </div>`;
}

/** The DPoP settings of a client with rights on the admin API: they can be tightened here, never loosened. */
function adminBindingFields(
  client: ClientView,
  values: ClientEditValues,
  errors: FieldErrors | undefined,
): Html {
  const bearer = client.bearer_allowed
    ? bearerCheckbox(
        values.bearer_allowed,
        errors,
        'This client holds rights on the admin API: Bearer tokens can be turned off here, not allowed again.',
      )
    : lockedSetting(
        'bearer_allowed',
        'Bearer tokens (no DPoP)',
        html`<p>Not allowed: every token is bound to a DPoP key.</p>`,
        'This client holds rights on the admin API: its tokens stay bound to DPoP keys. Only the admin API or ' +
          'the mayfly CLI can allow Bearer tokens for it.',
        errors,
      );
  const pinned = client.dpop_jkts.length
    ? html`<ul class="plain">
        ${client.dpop_jkts.map((jkt) => html`<li><code>${jkt}</code></li>`)}
      </ul>`
    : html`<p>None: any key the client proves possession of.</p>`;
  return html`${bearer}
  ${lockedSetting(
    'dpop_jkts',
    'Pinned DPoP keys',
    pinned,
    'This client holds rights on the admin API: its pinned keys are changed with the admin API or the mayfly ' +
      'CLI, not here.',
    errors,
  )}`;
}

function pinnedKeysField(value: string, errors: FieldErrors | undefined): Html {
  return textarea({
    name: 'dpop_jkts',
    label: 'Pinned DPoP keys (optional)',
    value,
    errors,
    rows: 3,
    hint:
      'SHA-256 JWK thumbprints (RFC 7638, 43 characters each), one per line: the client may then prove ' +
      'possession only with these keys. Leave empty to accept any key.',
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Registration

export function newClientPage(
  context: PageContext,
  resources: readonly ResourceOption[],
  values: ClientFormValues,
  errors?: FieldErrors,
): Html {
  return layout(
    context,
    'clients',
    'Register a client',
    html`${errorSummary(errors)}
      <form method="post" action="/console/clients/new" class="stack" novalidate>
        ${csrfInput(context.csrf)} ${onceInput()}
        ${field({
          name: 'name',
          label: 'Name',
          value: values.name,
          errors,
          required: true,
          autocomplete: 'off',
          hint: 'Who this client is, e.g. orders-service. Up to 200 characters.',
        })}
        ${select({
          name: 'auth_method',
          label: 'Authentication method',
          value: values.auth_method,
          errors,
          hint:
            'How the client proves who it is at the token endpoint. The secret methods get a secret on the ' +
            'next page; private_key_jwt needs the public keys below.',
          choices: AUTH_METHODS,
        })}
        <fieldset id="field-keys">
          <legend>Public keys (private_key_jwt only)</legend>
          <p class="hint">
            Give exactly one of the two for private_key_jwt, and neither for the secret methods. Public keys
            only: never paste a private key.
          </p>
          ${textarea({
            name: 'jwks',
            label: 'JWKS (JSON)',
            value: values.jwks,
            errors,
            rows: 6,
            hint: 'A JSON Web Key Set, e.g. {"keys": [{"kty": "EC", "crv": "P-256", "x": "…", "y": "…"}]}.',
          })}
          ${field({
            name: 'jwks_uri',
            label: 'JWKS URL',
            type: 'url',
            value: values.jwks_uri,
            errors,
            autocomplete: 'off',
            hint: 'The http(s) URL where the client publishes its JWKS; Mayfly fetches it when needed.',
          })}
        </fieldset>
        ${grantsFieldset(resources, values.grants, errors, context.user.role === 'write')}
        ${introspectsFieldset(resources, values.introspects, errors)}
        ${bearerCheckbox(values.bearer_allowed, errors)} ${pinnedKeysField(values.dpop_jkts, errors)}
        <div class="actions">
          <button type="submit" class="primary">Register client</button>
          <a href="/console/clients" class="button">Cancel</a>
        </div>
      </form>`,
  );
}

/**
 * The one page that ever shows a client secret: the answer to the registration or rotation (never a redirect,
 * so the secret is in no URL and on no later page).
 */
export function clientSecretPage(
  context: PageContext,
  client: ClientView,
  secret: string,
  kind: 'created' | 'rotated',
): Html {
  const overlapping = client.secrets.filter((s) => s.expires_at !== null);
  const lastExpiry = overlapping
    .map((s) => s.expires_at ?? '')
    .sort()
    .at(-1);
  return layout(
    context,
    'clients',
    kind === 'created' ? `Client ${client.name} registered` : `New secret for ${client.name}`,
    html`<div class="warning" role="alert">
        <p>
          <strong>Copy the client secret now: it is shown only this once.</strong> Mayfly keeps only a hash of
          it and cannot show it again, on this page or anywhere else. If it is lost, issue a new one with
          “Rotate the secret”.
        </p>
      </div>
      <dl class="details">
        <dt>Client id</dt>
        <dd><code id="client-id">${client.client_id}</code></dd>
        <dt>Name</dt>
        <dd>${client.name}</dd>
        <dt>Authentication method</dt>
        <dd>${authMethodText(client.auth_method)} <span class="muted">(${client.auth_method})</span></dd>
      </dl>
      <div class="actions">
        <button type="button" data-copy="client-id" hidden>Copy the client id</button>
      </div>
      <p id="client-id-status" role="status" aria-live="polite"></p>
      <h2 id="secret-heading">Client secret</h2>
      <code id="client-secret" class="secret">${secret}</code>
      <div class="actions">
        <button type="button" data-copy="client-secret" hidden>Copy the secret</button>
      </div>
      <p id="client-secret-status" role="status" aria-live="polite"></p>
      ${
        kind === 'rotated'
          ? html`<p>
              ${
                lastExpiry
                  ? html`The previous secret keeps working until ${formatTime(lastExpiry)}: give the new one
                    to every instance of the client before then.`
                  : 'The previous secret no longer works.'
              }
            </p>`
          : ''
      }
      <p><a href="${clientHref(client.client_id)}">Go to the client’s page</a></p>`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// One client

export interface ClientPageData {
  client: ClientView;
  /** Every resource: names for the details. */
  resources: readonly ResourceOption[];
  /** Resources offered in the edit form, for grants and for introspection rights. */
  grantable: readonly ResourceOption[];
  introspectable: readonly ResourceOption[];
  /**
   * Whether the client holds a right on the admin API's resource: its secret is not rotated and its DPoP binding
   * not loosened here.
   */
  adminRights: boolean;
  /** The edit form as typed (after an error), else the client's values. */
  values?: ClientEditValues | undefined;
  /** The rotation form's overlap as typed (after an error). */
  overlap?: string | undefined;
  errors?: FieldErrors | undefined;
  /** The server's default overlap of a secret rotation, in seconds. */
  defaultOverlapSeconds: number;
}

function duration(seconds: number): string {
  if (seconds % 86_400 === 0 && seconds > 0) return `${seconds / 86_400} day${seconds === 86_400 ? '' : 's'}`;
  if (seconds % 3600 === 0 && seconds > 0) return `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}`;
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

function perMinute(value: number | null): string {
  return value === null ? 'server default' : `${value} per minute`;
}

function keysDetail(client: ClientView): Html {
  if (client.jwks_uri) return html`JWKS published at <code>${client.jwks_uri}</code>`;
  const keys = client.jwks?.keys ?? [];
  if (!keys.length) return html`<span class="muted">None</span>`;
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  return html`<ul class="plain">
    ${keys.map(
      (key) =>
        html`<li>
          ${text(key.kty)}${text(key.crv) ? ` ${text(key.crv)}` : ''}${text(key.alg) ? `, ${text(key.alg)}` : ''}
          ${text(key.kid) ? html`<span class="muted">key id <code>${text(key.kid)}</code></span>` : ''}
        </li>`,
    )}
  </ul>`;
}

function secretsDetail(client: ClientView): Html {
  if (client.auth_method === 'private_key_jwt')
    return html`<span class="muted">None (signs with its keys)</span>`;
  if (!client.secrets.length) return html`<span class="muted">No secret works at present</span>`;
  return html`<div class="table-wrap">
    <table class="responsive">
      <caption class="visually-hidden">
        Active secrets
      </caption>
      <thead>
        <tr>
          <th scope="col">Secret id</th>
          <th scope="col">Created</th>
          <th scope="col">Expires</th>
        </tr>
      </thead>
      <tbody>
        ${client.secrets.map(
          (secret) =>
            html`<tr>
              <td data-label="Secret id"><code>${secret.id}</code></td>
              <td data-label="Created">${formatTime(secret.created_at)}</td>
              <td data-label="Expires">
                ${secret.expires_at ? formatTime(secret.expires_at) : 'Never (current secret)'}
              </td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

function details(client: ClientView, resources: readonly ResourceOption[]): Html {
  return html`<dl class="details">
    <dt>Client id</dt>
    <dd><code>${client.client_id}</code></dd>
    <dt>Name</dt>
    <dd>${client.name}</dd>
    <dt>Status</dt>
    <dd>
      ${statusBadge(client.status)}
      ${client.disabled_at ? html`<span class="muted">since ${formatTime(client.disabled_at)}</span>` : ''}
    </dd>
    <dt>Authentication method</dt>
    <dd>${authMethodText(client.auth_method)} <span class="muted">(${client.auth_method})</span></dd>
    ${
      client.auth_method === 'private_key_jwt'
        ? html`<dt>Public keys</dt>
            <dd>${keysDetail(client)}</dd>`
        : ''
    }
    <dt>Grants</dt>
    <dd>${grantList(client, resources)}</dd>
    <dt>Introspection rights</dt>
    <dd>
      ${
        client.introspects.length
          ? html`<ul class="plain">
              ${client.introspects.map((identifier) => html`<li>${resourceLabel(identifier, resources)}</li>`)}
            </ul>`
          : html`<span class="muted">None</span>`
      }
    </dd>
    <dt>Bearer tokens</dt>
    <dd>
      ${
        client.bearer_allowed
          ? html`<strong>Allowed</strong> without DPoP (an exception: such tokens can be replayed by whoever
              obtains them)`
          : 'Not allowed: every token is bound to a DPoP key'
      }
    </dd>
    <dt>Pinned DPoP keys</dt>
    <dd>
      ${
        client.dpop_jkts.length
          ? html`<ul class="plain">
              ${client.dpop_jkts.map((jkt) => html`<li><code>${jkt}</code></li>`)}
            </ul>`
          : html`<span class="muted">None: any key the client proves possession of</span>`
      }
    </dd>
    <dt>Rate limits</dt>
    <dd>
      Tokens: ${perMinute(client.rate_limits.tokens_per_minute)}; introspections:
      ${perMinute(client.rate_limits.introspections_per_minute)}
    </dd>
    <dt>Active secrets</dt>
    <dd>${secretsDetail(client)}</dd>
    ${
      client.managed_by
        ? html`<dt>Managed by</dt>
            <dd>${client.managed_by}</dd>`
        : ''
    }
    <dt>Created</dt>
    <dd>${formatTime(client.created_at)}</dd>
    <dt>Updated</dt>
    <dd>${formatTime(client.updated_at)}</dd>
  </dl>`;
}

/** Rights the client holds on resources the edit form does not list (past the resources it loads): kept as they are. */
function keptRights(data: ClientPageData): Html {
  const { client } = data;
  const grants = client.grants.filter((g) => !data.grantable.some((r) => r.identifier === g.resource));
  const introspects = client.introspects.filter((i) => !data.introspectable.some((r) => r.identifier === i));
  if (!grants.length && !introspects.length) return html``;
  return html`<div class="warning" role="note">
    <p>
      This form lists only the first resources. The client’s rights on the others are kept as they are when
      you save; change them with the admin API or the mayfly CLI:
    </p>
    <ul class="plain">
      ${grants.map((g) => html`<li>grant on <code>${g.resource}</code>: ${g.scopes.join(' ')}</li>`)}
      ${introspects.map((i) => html`<li>introspects <code>${i}</code></li>`)}
    </ul>
  </div>`;
}

function editSection(context: PageContext, data: ClientPageData): Html {
  const { client, errors } = data;
  const values = data.values ?? clientEditValues(client);
  return html`<section aria-labelledby="edit-heading">
    <h2 id="edit-heading">Edit</h2>
    ${
      client.managed_by
        ? html`<p class="warning" role="note">
            This client is managed by <strong>${client.managed_by}</strong>: a later
            <code>mayfly apply</code> may undo changes made here.
          </p>`
        : ''
    }
    ${
      data.adminRights
        ? html`<p class="warning" role="note">
            This client holds rights on the admin API. Here they can be kept or removed, never added to, and
            its DPoP binding can be tightened, never loosened: the rest is done with the admin API or the
            mayfly CLI.
          </p>`
        : ''
    }
    <form method="post" action="${clientHref(client.client_id)}" class="stack" novalidate>
      ${csrfInput(context.csrf)}
      <input type="hidden" name="_version" value="${client.updated_at}" />
      ${field({ name: 'name', label: 'Name', value: values.name, errors, required: true, autocomplete: 'off' })}
      ${grantsFieldset(data.grantable, values.grants, errors, true)}
      ${introspectsFieldset(data.introspectable, values.introspects, errors)} ${keptRights(data)}
      ${
        data.adminRights
          ? adminBindingFields(client, values, errors)
          : html`${bearerCheckbox(values.bearer_allowed, errors)} ${pinnedKeysField(values.dpop_jkts, errors)}`
      }
      <div class="actions">
        <button type="submit" class="primary">Save changes</button>
      </div>
    </form>
  </section>`;
}

function rotateSection(context: PageContext, data: ClientPageData): Html {
  const { client } = data;
  if (client.auth_method === 'private_key_jwt') return html``;
  if (data.adminRights) {
    return html`<section aria-labelledby="rotate-heading">
      <h2 id="rotate-heading">Rotate the secret</h2>
      <p>
        This client holds rights on the admin API, so its secret is an admin API credential: the console never
        issues or shows one. Rotate it with the mayfly CLI,
        <code>mayfly client rotate-secret ${client.client_id}</code>, or with the admin API.
      </p>
    </section>`;
  }
  return html`<section aria-labelledby="rotate-heading">
    <h2 id="rotate-heading">Rotate the secret</h2>
    <p>
      Issues a new secret, shown once on the next page. The previous secret keeps working for a while, so
      every instance of the client can switch without an outage.
    </p>
    <form method="post" action="${clientHref(client.client_id)}/rotate-secret" class="stack" novalidate>
      ${csrfInput(context.csrf)} ${onceInput()}
      ${field({
        name: 'previous_secret_expires_in',
        label: 'Previous secret keeps working for (seconds, optional)',
        value: data.overlap,
        errors: data.errors,
        inputmode: 'numeric',
        autocomplete: 'off',
        hint:
          `Leave empty for the server default, ${duration(data.defaultOverlapSeconds)}. ` +
          'Enter 0 to end the previous secret at once, e.g. when it may have leaked. At most 2592000 (30 days).',
      })}
      <div class="actions">
        <button type="submit">Issue a new secret</button>
      </div>
    </form>
  </section>`;
}

function statusSection(context: PageContext, client: ClientView): Html {
  const action = `${clientHref(client.client_id)}/${client.status === 'enabled' ? 'disable' : 'enable'}`;
  return html`<section aria-labelledby="status-heading">
    <h2 id="status-heading">${client.status === 'enabled' ? 'Disable' : 'Enable'}</h2>
    ${
      client.status === 'enabled'
        ? html`<p>
            Disabling takes effect at once: the client gets no token, and its outstanding tokens become
            inactive. Enabling it again does not revive them.
          </p>`
        : html`<p>
            Enabling lets the client obtain tokens again; tokens issued before it was disabled stay inactive.
          </p>`
    }
    <div class="actions">
      ${actionButton({
        action,
        label: client.status === 'enabled' ? `Disable ${client.name}` : `Enable ${client.name}`,
        csrf: context.csrf,
        danger: client.status === 'enabled',
      })}
    </div>
  </section>`;
}

export function clientPage(context: PageContext, data: ClientPageData): Html {
  const { client } = data;
  const canWrite = context.user.role === 'write';
  return layout(
    context,
    'clients',
    client.name,
    html`<p><a href="/console/clients">All clients</a></p>
      ${errorSummary(data.errors)} ${details(client, data.resources)}
      ${
        canWrite
          ? html`${editSection(context, data)} ${rotateSection(context, data)}
              ${statusSection(context, client)}
              <section aria-labelledby="delete-heading">
                <h2 id="delete-heading">Delete</h2>
                <p>
                  Deleting removes the client, its secrets, grants and rights; its tokens become inactive.
                </p>
                <p>
                  <a href="${clientHref(client.client_id)}/delete" class="button danger"
                    >Delete ${client.name}…</a
                  >
                </p>
              </section>`
          : html`<p class="hint">
              Your role is read only: changes need an administrator with the write role.
            </p>`
      }`,
  );
}

export function deleteClientPage(context: PageContext, client: ClientView, errors?: FieldErrors): Html {
  return layout(
    context,
    'clients',
    `Delete client ${client.name}?`,
    html`${errorSummary(errors)}
      <div class="warning" role="note">
        <p>
          <strong>This cannot be undone.</strong> Client <strong>${client.name}</strong> (id
          <code>${client.client_id}</code>) is deleted with its secrets, grants and rights. It gets no token
          from now on, and every token it holds becomes inactive at once.
        </p>
      </div>
      <form method="post" action="${clientHref(client.client_id)}/delete" class="stack">
        ${csrfInput(context.csrf)}
        <div class="actions">
          <button type="submit" class="danger">Delete client ${client.name}</button>
          <a href="${clientHref(client.client_id)}" class="button">Cancel</a>
        </div>
      </form>`,
  );
}
