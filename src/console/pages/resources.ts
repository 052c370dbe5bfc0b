import { ResourceInput, ResourceUpdate } from '../../clients/resource.schemas.ts';
import { inputProblems, MayflyError, type ErrorDetail } from '../../errors.ts';
import type { FieldErrors } from '../../../views/forms.ts';
import { query } from '../../../views/html.ts';
import {
  deleteResourcePage,
  newResourcePage,
  resourceListPage,
  resourcePage,
  type DependentView,
  type ResourceFormValues,
  type ResourceView,
  type TtlLimits,
} from '../../../views/resources.ts';
import type { ConsolePage, ConsoleRequest, ConsoleResult } from '../console.ts';
import { formText, requireWrite, versionProblem, type FormValues } from '../http.ts';

interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

interface ClientSummary {
  client_id: string;
  name: string;
  grants: { resource: string; scopes: string[] }[];
  introspects: string[];
}

const FORM_FIELDS = ['identifier', 'name', 'scopes', 'token_ttl', 'token_format'] as const;
const DEPENDENTS_SHOWN = 50;

function formValues(form: FormValues): ResourceFormValues {
  const scopes = form.scopes;
  return {
    identifier: formText(form, 'identifier'),
    name: formText(form, 'name'),
    scopes: Array.isArray(scopes) ? scopes.join('\n') : (scopes ?? ''),
    token_ttl: formText(form, 'token_ttl'),
    token_format: formText(form, 'token_format'),
  };
}

function storedValues(resource: ResourceView): ResourceFormValues {
  return {
    identifier: resource.identifier,
    name: resource.name ?? '',
    scopes: resource.scopes.join('\n'),
    token_ttl: String(resource.token_ttl),
    token_format: resource.token_format,
  };
}

/** Scopes as typed: separated by spaces, commas or new lines. */
function splitScopes(value: string): string[] {
  return value.split(/[\s,]+/).filter((scope) => scope !== '');
}

/** A number of seconds as typed: a number (the API judges whether it is whole and allowed) or a message. */
function parseSeconds(value: string): number | { error: string } {
  const trimmed = value.trim();
  if (!/^[+-]?\d+(\.\d+)?$/.test(trimmed)) {
    return { error: 'expected a whole number of seconds, e.g. 300' };
  }
  return Number(trimmed);
}

/** Adds a message to a field, after any it already has. */
function addError(errors: Record<string, string>, name: string, message: string): void {
  const previous = errors[name];
  if (previous === undefined) errors[name] = message;
  else if (!previous.split('; ').includes(message)) errors[name] = `${previous}; ${message}`;
}

/**
 * The problems an API error names, by form field: `scopes.2` goes to the scopes field (naming that scope), and a
 * path the form has no field for goes to the form as a whole.
 */
function fieldErrors(
  details: readonly ErrorDetail[],
  scopes: readonly string[],
  fallback: string,
): FieldErrors {
  const errors: Record<string, string> = {};
  for (const detail of details) {
    const [head = '', index] = detail.path.split('.');
    const name = (FORM_FIELDS as readonly string[]).includes(head) ? head : '';
    const scope = head === 'scopes' && index !== undefined ? scopes[Number(index)] : undefined;
    const prefix = name === '' && detail.path !== '' ? `${detail.path}: ` : '';
    addError(
      errors,
      name,
      scope === undefined ? `${prefix}${detail.message}` : `“${scope}”: ${detail.message}`,
    );
  }
  if (!Object.keys(errors).length) errors[''] = fallback;
  return errors;
}

function limits(request: ConsoleRequest): TtlLimits {
  const { defaultTtl, maxTtl } = request.deps.admin.tokens;
  return { defaultTtl, maxTtl };
}

const resourceHref = (resource: ResourceView) => `/console/resources/${encodeURIComponent(resource.id)}`;

function loadResource(request: ConsoleRequest): Promise<ResourceView> {
  return request.admin<ResourceView>('getResource', { params: { resource: request.params.id } });
}

/** The clients holding a grant on the resource or introspecting it (the first few). */
async function loadDependents(
  request: ConsoleRequest,
  resource: ResourceView,
): Promise<{ dependents: DependentView[]; more: boolean }> {
  const page = await request.admin<Page<ClientSummary>>('listClients', {
    query: { resource: resource.identifier, limit: String(DEPENDENTS_SHOWN) },
  });
  return {
    dependents: page.items.map((client) => ({
      client_id: client.client_id,
      name: client.name,
      scopes: client.grants.find((grant) => grant.resource === resource.identifier)?.scopes ?? [],
      introspects: client.introspects.includes(resource.identifier),
    })),
    more: page.next_cursor !== null,
  };
}

async function showResource(
  request: ConsoleRequest,
  resource: ResourceView,
  form?: { values: ResourceFormValues; errors: FieldErrors; status: number },
): Promise<ConsoleResult> {
  const { dependents, more } = await loadDependents(request, resource);
  return {
    html: resourcePage(request.page, {
      resource,
      dependents,
      moreDependents: more,
      values: form?.values ?? storedValues(resource),
      limits: limits(request),
      errors: form?.errors,
    }),
    status: form?.status ?? 200,
  };
}

async function listPage(request: ConsoleRequest): Promise<ConsoleResult> {
  const identifier = (request.query.identifier ?? '').trim();
  const { cursor, limit } = request.query;
  const filter = { identifier: identifier || undefined, limit };
  try {
    const page = await request.admin<Page<ResourceView>>('listResources', {
      query: { ...filter, ...(cursor === undefined ? {} : { cursor }) },
    });
    return {
      html: resourceListPage(request.page, {
        items: page.items,
        identifier,
        nextHref:
          page.next_cursor === null
            ? undefined
            : `/console/resources${query({ ...filter, cursor: page.next_cursor })}`,
        firstHref: cursor === undefined ? undefined : `/console/resources${query(filter)}`,
      }),
    };
  } catch (error) {
    if (!(error instanceof MayflyError) || error.code !== 'invalid_input') throw error;
    const errors = fieldErrors(
      error.details.map((detail) =>
        detail.path === 'cursor'
          ? { path: '', message: 'this page link is out of date: start again from the first page' }
          : detail,
      ),
      [],
      error.message,
    );
    return {
      html: resourceListPage(request.page, { items: [], identifier, errors }),
      status: 400,
    };
  }
}

async function createPage(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const values = formValues(request.form);
  const scopes = splitScopes(values.scopes);
  const name = values.name.trim();
  const body = {
    identifier: values.identifier.trim(),
    ...(name === '' ? {} : { name }),
    scopes,
    ...(values.token_format === '' ? {} : { token_format: values.token_format }),
  };
  const refuse = (errors: FieldErrors, status: number): ConsoleResult => ({
    html: newResourcePage(request.page, values, limits(request), errors),
    status,
  });
  let ttl: number | undefined;
  if (values.token_ttl.trim() !== '') {
    const parsed = parseSeconds(values.token_ttl);
    if (typeof parsed !== 'number') {
      const problems = [...inputProblems(ResourceInput, body), { path: 'token_ttl', message: parsed.error }];
      return refuse(fieldErrors(problems, scopes, parsed.error), 400);
    }
    ttl = parsed;
  }
  try {
    const created = await request.admin<ResourceView>('createResource', {
      body: { ...body, ...(ttl === undefined ? {} : { token_ttl: ttl }) },
    });
    return { redirect: resourceHref(created), notice: `Resource ${created.identifier} created.` };
  } catch (error) {
    if (!(error instanceof MayflyError)) throw error;
    if (error.code === 'invalid_input') return refuse(fieldErrors(error.details, scopes, error.message), 400);
    if (error.code === 'resource_exists') {
      return refuse(
        {
          identifier: `a resource with the identifier ${body.identifier} already exists: choose another identifier, or edit that resource`,
        },
        409,
      );
    }
    throw error;
  }
}

const sameScopes = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((scope, index) => scope === b[index]);

async function updatePage(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const resource = await loadResource(request);
  // The reserved resource has no edit form: the admin API answers why it cannot be changed.
  const stale = resource.reserved ? undefined : versionProblem(request.form, resource.updated_at, 'resource');
  if (stale) {
    return showResource(request, resource, {
      values: storedValues(resource),
      errors: { '': stale.message },
      status: stale.status,
    });
  }
  const values = { ...formValues(request.form), identifier: resource.identifier };
  const scopes = splitScopes(values.scopes);
  const name = values.name.trim();
  const refuse = (errors: FieldErrors, status: number) =>
    showResource(request, resource, { values, errors, status });

  const changes: Record<string, unknown> = {};
  if (name !== (resource.name ?? '')) changes.name = name === '' ? null : name;
  if (!sameScopes(scopes, resource.scopes)) changes.scopes = scopes;
  if (values.token_format !== resource.token_format) changes.token_format = values.token_format;
  const ttl =
    values.token_ttl.trim() === ''
      ? { error: 'enter the token lifetime in seconds' }
      : parseSeconds(values.token_ttl);
  if (typeof ttl !== 'number') {
    // The schema's "nothing to update" (path '') does not apply: the lifetime is what is missing.
    const problems = inputProblems(ResourceUpdate, changes).filter((problem) => problem.path !== '');
    problems.push({ path: 'token_ttl', message: ttl.error });
    return refuse(fieldErrors(problems, scopes, ttl.error), 400);
  }
  if (ttl !== resource.token_ttl) changes.token_ttl = ttl;

  if (!Object.keys(changes).length && !resource.reserved) {
    return { redirect: resourceHref(resource), notice: 'Nothing to save: the form matched the resource.' };
  }
  try {
    const body = Object.keys(changes).length ? changes : { name: resource.name };
    const updated = await request.admin<ResourceView>('updateResource', {
      params: { resource: resource.id },
      body,
    });
    return { redirect: resourceHref(updated), notice: `Resource ${updated.identifier} saved.` };
  } catch (error) {
    if (!(error instanceof MayflyError)) throw error;
    switch (error.code) {
      case 'invalid_input':
        return refuse(fieldErrors(error.details, scopes, error.message), 400);
      case 'scope_in_use':
        return refuse({ scopes: error.message }, 409);
      case 'resource_reserved':
        return refuse({ '': error.message }, 409);
      default:
        throw error;
    }
  }
}

async function deletePage(request: ConsoleRequest): Promise<ConsoleResult> {
  requireWrite(request);
  const resource = await loadResource(request);
  const force = formText(request.form, 'force') === 'on';
  try {
    await request.admin('deleteResource', {
      params: { resource: resource.id },
      query: force ? { force: 'true' } : {},
    });
    return { redirect: '/console/resources', notice: `Resource ${resource.identifier} deleted.` };
  } catch (error) {
    if (!(error instanceof MayflyError)) throw error;
    if (error.code !== 'resource_in_use' && error.code !== 'resource_reserved') throw error;
    const { dependents, more } = await loadDependents(request, resource);
    const message =
      error.code === 'resource_in_use'
        ? `Not deleted: ${error.message.replace(/ or delete with force$/, '')}, or tick “Also delete while clients depend on it”.`
        : error.message;
    return {
      html: deleteResourcePage(request.page, {
        resource,
        dependents,
        moreDependents: more,
        errors: error.code === 'resource_in_use' ? { force: message } : { '': message },
        force: false,
      }),
      status: 409,
    };
  }
}

/** Listed before `/resources/{id}`, which `/resources/new` also matches: the first match wins. */
export const RESOURCE_PAGES: readonly ConsolePage[] = [
  { method: 'GET', path: '/resources', handle: listPage },
  {
    method: 'GET',
    path: '/resources/new',
    handle(request) {
      requireWrite(request);
      const values = { identifier: '', name: '', scopes: '', token_ttl: '', token_format: 'jwt' };
      return Promise.resolve({ html: newResourcePage(request.page, values, limits(request)) });
    },
  },
  { method: 'POST', path: '/resources/new', handle: createPage },
  {
    method: 'GET',
    path: '/resources/{id}',
    handle: async (request) => showResource(request, await loadResource(request)),
  },
  { method: 'POST', path: '/resources/{id}', handle: updatePage },
  {
    method: 'GET',
    path: '/resources/{id}/delete',
    async handle(request) {
      requireWrite(request);
      const resource = await loadResource(request);
      const { dependents, more } = await loadDependents(request, resource);
      return {
        html: deleteResourcePage(request.page, { resource, dependents, moreDependents: more, force: false }),
      };
    },
  },
  { method: 'POST', path: '/resources/{id}/delete', handle: deletePage },
];
