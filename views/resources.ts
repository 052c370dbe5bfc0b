import { csrfInput, checkbox, errorSummary, field, select, textarea, type FieldErrors } from './forms.ts';
import { formatTime, html, type Html } from './html.ts';
import { layout, type PageContext } from './layout.ts';

/** A resource as the admin API shows it. */
export interface ResourceView {
  id: string;
  identifier: string;
  name: string | null;
  scopes: readonly string[];
  token_ttl: number;
  token_format: string;
  managed_by?: string | null;
  /** The admin API's own resource: it cannot be changed or deleted. */
  reserved?: boolean;
  created_at: string;
  updated_at: string;
}

/** A client that holds a grant on a resource or introspects it. */
export interface DependentView {
  client_id: string;
  name: string;
  /** The scopes it holds on this resource; empty when it only introspects. */
  scopes: readonly string[];
  introspects: boolean;
}

/** The resource form as typed: kept as text so that a refused form comes back exactly as it was sent. */
export interface ResourceFormValues {
  identifier: string;
  name: string;
  scopes: string;
  token_ttl: string;
  token_format: string;
}

/** What the forms say about token lifetimes: the server's default and maximum. */
export interface TtlLimits {
  defaultTtl: number;
  maxTtl: number;
}

const FORMAT_CHOICES = [
  ['jwt', 'JWT (the resource server verifies tokens itself)'],
  ['opaque', 'Opaque (the resource server asks the introspection endpoint)'],
] as const;

const FORMAT_TEXT: Readonly<Record<string, string>> = { jwt: 'JWT', opaque: 'Opaque' };

const resourceHref = (resource: Pick<ResourceView, 'id'>) =>
  `/console/resources/${encodeURIComponent(resource.id)}`;

const seconds = (value: number) => `${value} second${value === 1 ? '' : 's'}`;

export function resourceTitle(resource: Pick<ResourceView, 'name' | 'identifier'>): string {
  return resource.name ?? resource.identifier;
}

function scopeList(scopes: readonly string[]): Html {
  if (!scopes.length) return html`—`;
  return html`<ul class="plain">
    ${scopes.map((scope) => html`<li><code>${scope}</code></li>`)}
  </ul>`;
}

export interface ResourceListData {
  items: readonly ResourceView[];
  /** The identifier filter as typed. */
  identifier: string;
  /** Links to the next and the first page, when there are more pages. */
  nextHref?: string | undefined;
  firstHref?: string | undefined;
  errors?: FieldErrors | undefined;
}

function resourceTable(items: readonly ResourceView[]): Html {
  return html`<div class="table-wrap">
    <table class="responsive">
      <caption class="visually-hidden">
        Resources
      </caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Identifier (audience)</th>
          <th scope="col">Scopes</th>
          <th scope="col">Token lifetime</th>
          <th scope="col">Format</th>
        </tr>
      </thead>
      <tbody>
        ${items.map(
          (resource) =>
            html`<tr>
              <td data-label="Name">
                <a href="${resourceHref(resource)}">${resourceTitle(resource)}</a>
                ${resource.reserved ? html` <span class="badge">Reserved</span>` : ''}
              </td>
              <td data-label="Identifier"><code>${resource.identifier}</code></td>
              <td data-label="Scopes">
                ${resource.scopes.map((scope, index) => html`${index ? ' ' : ''}<code>${scope}</code>`)}
              </td>
              <td data-label="Token lifetime">${seconds(resource.token_ttl)}</td>
              <td data-label="Format">${FORMAT_TEXT[resource.token_format] ?? resource.token_format}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

export function resourceListPage(context: PageContext, data: ResourceListData): Html {
  const canWrite = context.user.role === 'write';
  const filtered = data.identifier !== '';
  const empty = filtered
    ? html`<p class="empty">
        No resource has the identifier <code>${data.identifier}</code>.
        <a href="/console/resources">Show every resource</a>${
          canWrite ? html` or <a href="/console/resources/new">create a resource</a>` : ''
        }.
      </p>`
    : html`<p class="empty">
        No resources yet. A resource is an API that accepts Mayfly's tokens: register it with its identifier
        (the token audience) and the scopes clients may ask
        for.${
          canWrite
            ? html` <a href="/console/resources/new">Create the first resource</a>.`
            : ' Ask an administrator with the write role to create one.'
        }
      </p>`;
  return layout(
    context,
    'resources',
    'Resources',
    html`<p>
        A resource is an API that accepts Mayfly's access tokens. Its identifier is the audience of its
        tokens; its scopes are what clients can be granted.
      </p>
      ${canWrite ? html`<p><a href="/console/resources/new" class="button primary">Create a resource</a></p>` : ''}
      ${errorSummary(data.errors)}
      <section aria-labelledby="filter-heading">
        <h2 id="filter-heading">Find a resource</h2>
        <form method="get" action="/console/resources" class="filters">
          ${field({
            name: 'identifier',
            label: 'Identifier',
            type: 'search',
            inputmode: 'url',
            value: data.identifier,
            errors: data.errors,
            hint: 'The exact identifier, e.g. https://api.example.com',
          })}
          <div class="actions">
            <button type="submit">Find</button>
            ${filtered ? html`<a href="/console/resources" class="button">Clear</a>` : ''}
          </div>
        </form>
      </section>
      <section aria-labelledby="list-heading">
        <h2 id="list-heading">${filtered ? 'Matching resources' : 'All resources'}</h2>
        ${data.errors && Object.keys(data.errors).length ? '' : data.items.length ? resourceTable(data.items) : empty}
        ${
          data.nextHref || data.firstHref
            ? html`<nav aria-label="Pages" class="actions">
                ${data.firstHref ? html`<a href="${data.firstHref}">First page</a>` : ''}
                ${data.nextHref ? html`<a href="${data.nextHref}" rel="next">Next page</a>` : ''}
              </nav>`
            : ''
        }
      </section>`,
  );
}

function ttlHint(limits: TtlLimits, creating: boolean): string {
  return creating
    ? `Whole seconds, at most ${limits.maxTtl}. Leave empty for the default, ${limits.defaultTtl}.`
    : `Whole seconds, at most ${limits.maxTtl}. Tokens already issued keep their lifetime.`;
}

function ttlField(
  values: ResourceFormValues,
  errors: FieldErrors | undefined,
  limits: TtlLimits,
  creating: boolean,
) {
  return field({
    name: 'token_ttl',
    label: 'Token lifetime (seconds)',
    value: values.token_ttl,
    errors,
    inputmode: 'numeric',
    hint: ttlHint(limits, creating),
  });
}

function scopesField(values: ResourceFormValues, errors: FieldErrors | undefined): Html {
  return textarea({
    name: 'scopes',
    label: 'Scopes',
    value: values.scopes,
    errors,
    rows: 4,
    required: true,
    hint: 'Separate scopes with spaces, commas or new lines, e.g. orders:read orders:write',
  });
}

function formatField(values: ResourceFormValues, errors: FieldErrors | undefined): Html {
  return select({
    name: 'token_format',
    label: 'Token format',
    value: values.token_format,
    errors,
    choices: FORMAT_CHOICES,
  });
}

export function newResourcePage(
  context: PageContext,
  values: ResourceFormValues,
  limits: TtlLimits,
  errors?: FieldErrors,
): Html {
  return layout(
    context,
    'resources',
    'Create a resource',
    html`${errorSummary(errors)}
      <form method="post" action="/console/resources/new" class="stack" novalidate>
        ${csrfInput(context.csrf)}
        ${field({
          name: 'identifier',
          label: 'Identifier',
          type: 'url',
          value: values.identifier,
          errors,
          required: true,
          inputmode: 'url',
          hint: 'An absolute URI without a fragment, e.g. https://api.example.com. It is the audience of the tokens and never changes.',
        })}
        ${field({
          name: 'name',
          label: 'Name (optional)',
          value: values.name,
          errors,
          hint: 'A name people recognise, up to 200 characters.',
        })}
        ${scopesField(values, errors)} ${ttlField(values, errors, limits, true)}
        ${formatField(values, errors)}
        <div class="actions">
          <button type="submit" class="primary">Create resource</button>
          <a href="/console/resources" class="button">Cancel</a>
        </div>
      </form>`,
  );
}

function dependentList(dependents: readonly DependentView[], more: boolean): Html {
  return html`<ul class="plain">
      ${dependents.map(
        (client) =>
          html`<li>
            <a href="/console/clients/${encodeURIComponent(client.client_id)}">${client.name}</a>
            <span class="muted"
              >(<code>${client.client_id}</code>)${
                client.scopes.length ? html` · granted ${client.scopes.join(' ')}` : ''
              }${client.introspects ? ' · introspects' : ''}</span
            >
          </li>`,
      )}
    </ul>
    ${more ? html`<p class="hint">More clients depend on it than are listed here.</p>` : ''}`;
}

export interface ResourcePageData {
  resource: ResourceView;
  dependents: readonly DependentView[];
  moreDependents: boolean;
  /** The edit form as typed (after a refused save) or as stored. */
  values: ResourceFormValues;
  limits: TtlLimits;
  errors?: FieldErrors | undefined;
}

export function resourcePage(context: PageContext, data: ResourcePageData): Html {
  const { resource, errors } = data;
  const canWrite = context.user.role === 'write';
  const reserved = resource.reserved === true;
  return layout(
    context,
    'resources',
    resourceTitle(resource),
    html`<p><a href="/console/resources">All resources</a></p>
      ${errorSummary(errors)}
      ${
        reserved
          ? html`<div class="warning" role="note">
              <p>
                This is the admin API's own resource: it cannot be changed or deleted, here or through the
                API.
              </p>
            </div>`
          : ''
      }
      ${
        resource.managed_by
          ? html`<div class="warning" role="note">
              <p>
                Managed by <code>${resource.managed_by}</code>: a change made here may be undone the next time
                that configuration is applied.
              </p>
            </div>`
          : ''
      }
      <section aria-labelledby="details-heading">
        <h2 id="details-heading">Details</h2>
        <dl class="details">
          <dt>Identifier</dt>
          <dd><code>${resource.identifier}</code></dd>
          <dt>Name</dt>
          <dd>${resource.name ?? html`<span class="muted">none</span>`}</dd>
          <dt>Id</dt>
          <dd><code>${resource.id}</code></dd>
          <dt>Scopes</dt>
          <dd>${scopeList(resource.scopes)}</dd>
          <dt>Token lifetime</dt>
          <dd>${seconds(resource.token_ttl)}</dd>
          <dt>Token format</dt>
          <dd>${FORMAT_TEXT[resource.token_format] ?? resource.token_format}</dd>
          <dt>Created</dt>
          <dd>${formatTime(resource.created_at)}</dd>
          <dt>Last changed</dt>
          <dd>${formatTime(resource.updated_at)}</dd>
        </dl>
        <p><a href="/console/audit?target=${encodeURIComponent(resource.id)}">Changes to this resource</a></p>
      </section>
      <section aria-labelledby="clients-heading">
        <h2 id="clients-heading">Clients that depend on it</h2>
        ${
          data.dependents.length
            ? dependentList(data.dependents, data.moreDependents)
            : html`<p class="empty">No client holds a grant on this resource or introspects it.</p>`
        }
      </section>
      ${
        canWrite && !reserved
          ? html`<section aria-labelledby="edit-heading">
                <h2 id="edit-heading">Edit</h2>
                <form method="post" action="${resourceHref(resource)}" class="stack" novalidate>
                  ${csrfInput(context.csrf)}
                  <input type="hidden" name="_version" value="${resource.updated_at}" />
                  ${field({
                    name: 'name',
                    label: 'Name',
                    value: data.values.name,
                    errors,
                    hint: 'Leave empty to remove the name.',
                  })}
                  ${scopesField(data.values, errors)} ${ttlField(data.values, errors, data.limits, false)}
                  ${formatField(data.values, errors)}
                  <p class="hint">The identifier never changes: create a new resource for a new audience.</p>
                  <div class="actions">
                    <button type="submit" class="primary">Save changes</button>
                  </div>
                </form>
              </section>
              <section aria-labelledby="delete-heading">
                <h2 id="delete-heading">Delete</h2>
                <p>Deleting a resource ends every grant and introspection right on it.</p>
                <p>
                  <a href="${resourceHref(resource)}/delete" class="button danger">Delete resource…</a>
                </p>
              </section>`
          : !canWrite
            ? html`<p class="hint">Your role is read only: you can look but not change this resource.</p>`
            : ''
      }`,
  );
}

export interface DeleteResourceData {
  resource: ResourceView;
  dependents: readonly DependentView[];
  moreDependents: boolean;
  /** Why the last attempt was refused (e.g. clients depend on it). */
  errors?: FieldErrors | undefined;
  force: boolean;
}

export function deleteResourcePage(context: PageContext, data: DeleteResourceData): Html {
  const { resource } = data;
  const title = `Delete resource ${resource.identifier}?`;
  if (resource.reserved) {
    return layout(
      context,
      'resources',
      title,
      html`${errorSummary(data.errors)}
        <div class="warning" role="note">
          <p><code>${resource.identifier}</code> is the admin API's own resource: it cannot be deleted.</p>
        </div>
        <p><a href="${resourceHref(resource)}">Back to the resource</a></p>`,
    );
  }
  const inUse = data.dependents.length > 0 || data.errors?.force !== undefined;
  return layout(
    context,
    'resources',
    title,
    html`${errorSummary(data.errors)}
      <div class="warning" role="note">
        <p>
          <strong>This cannot be undone.</strong> ${resourceTitle(resource)}
          (<code>${resource.identifier}</code>) is deleted with its scopes: no client can obtain new tokens
          for it, and every grant and introspection right on it ends.
        </p>
      </div>
      ${
        data.dependents.length
          ? html`<section aria-labelledby="dependents-heading">
              <h2 id="dependents-heading">Clients that depend on it</h2>
              ${dependentList(data.dependents, data.moreDependents)}
              <p>
                Change these clients first, or delete anyway: their grants and introspection rights on this
                resource end with it.
              </p>
            </section>`
          : ''
      }
      <form method="post" action="${resourceHref(resource)}/delete" class="stack">
        ${csrfInput(context.csrf)}
        ${
          inUse
            ? checkbox({
                name: 'force',
                label: 'Also delete while clients depend on it',
                checked: data.force,
                errors: data.errors,
                hint: 'Their grants and introspection rights on this resource end at once.',
              })
            : ''
        }
        <div class="actions">
          <button type="submit" class="danger">Delete resource</button>
          <a href="${resourceHref(resource)}" class="button">Cancel</a>
        </div>
      </form>`,
  );
}
