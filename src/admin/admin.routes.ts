import { z } from 'zod';

import { ANOMALY_ACTIONS, AnomalyEvent, anomalyAction, toAnomalyEvent } from '../abuse/anomalies.ts';
import { ANOMALY_KINDS } from '../abuse/anomaly-detector.ts';
import { AuditEvent, toAuditEvent } from '../audit/audit-trail.ts';
import { listAuditEvents, type AuditEventFilter } from '../audit/audit-event.repository.ts';
import type { AuditEventRow } from '../db/tables/audit-event.table.ts';
import {
  createClient,
  deleteClient,
  getClient,
  listClientPage,
  rotateClientSecret,
  setClientEnabled,
  updateClient,
  type ClientDeps,
} from '../clients/client.service.ts';
import {
  Client,
  ClientInput,
  ClientUpdate,
  ClientWithSecret,
  SecretRotation,
} from '../clients/client.schemas.ts';
import {
  createResource,
  deleteResource,
  getResource,
  listResourcePage,
  updateResource,
  type ResourceDeps,
} from '../clients/resource.service.ts';
import { Resource, ResourceIdentifier, ResourceInput, ResourceUpdate } from '../clients/resource.schemas.ts';
import { containsNul, MayflyError, type ErrorCode } from '../errors.ts';
import { ADMIN_SCOPES, type AdminScope } from '../clients/admin-rights.ts';
import type { Actor } from '../audit/audit-trail.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import { SigningKeyInfo } from '../keys/key.service.ts';
import {
  AdminUser,
  AdminUserInput,
  AdminUserName,
  AdminUserUpdate,
  AdminUserWithTotp,
} from '../console/admin-user.schemas.ts';
import {
  createAdminUser,
  deleteAdminUser,
  getAdminUser,
  listAdminUsers,
  updateAdminUser,
  type AdminUserDeps,
} from '../console/admin-user.service.ts';
import {
  RegistrationToken,
  RegistrationTokenInput,
  RegistrationTokenWithValue,
} from '../registration/registration.schemas.ts';
import {
  createRegistrationToken,
  listRegistrationTokens,
  revokeRegistrationToken,
} from '../registration/registration-token.service.ts';

export type AdminDeps = ResourceDeps & ClientDeps & AdminUserDeps & { keys: KeyRing };

export interface AdminRequest<P, Q, B> {
  /** Who asks: the admin client of an API request, or the person behind a console request. */
  actor: Actor;
  params: P;
  query: Q;
  body: B;
  deps: AdminDeps;
}

/** One admin operation: what the router dispatches and what the OpenAPI document describes, from one place. */
export interface AdminRoute<P = unknown, Q = unknown, B = unknown> {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** OpenAPI path template under /admin/v1, e.g. `/clients/{client_id}`. */
  path: string;
  operationId: string;
  summary: string;
  scope: AdminScope;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** Whether the body may be left out (every member optional). */
  bodyOptional?: boolean;
  status: 200 | 201 | 204;
  response?: z.ZodType;
  errors: readonly ErrorCode[];
  handle(request: AdminRequest<P, Q, B>): Promise<unknown>;
}

const Page = <T extends z.ZodType>(item: T, id: string) =>
  z
    .object({
      items: z.array(item),
      next_cursor: z
        .string()
        .nullable()
        .meta({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
    })
    .meta({ id });

const Limit = z
  .string()
  .regex(/^\d+$/, 'expected a whole number from 1 to 200')
  .transform(Number)
  .pipe(z.number().int().min(1, 'expected at least 1').max(200, 'expected at most 200'))
  .optional()
  .meta({ description: 'Page size, 1 to 200 (default 50).' });
const Cursor = z.string().max(4096).optional().meta({ description: 'next_cursor of the previous page.' });
const DEFAULT_LIMIT = 50;

/** Cursors are opaque to callers; inside, the keyset of the last item. */
function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeCursor<T>(cursor: string | undefined, schema: z.ZodType<T>): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const parsed = schema.safeParse(decoded);
    if (parsed.success && !containsNul(decoded)) return parsed.data;
  } catch {
    // Falls through to the error below.
  }
  throw new MayflyError('invalid_input', 'cursor: not a cursor returned by this list', [
    { path: 'cursor', message: 'not a cursor returned by this list' },
  ]);
}

const ResourceRef = z.strictObject({
  resource: z
    .string()
    .min(1)
    .meta({ description: 'The resource id, or its identifier URL-encoded (encodeURIComponent).' }),
});
const ClientRef = z.strictObject({ client_id: z.string().min(1).max(255) });

const ResourceListQuery = z.strictObject({
  limit: Limit,
  cursor: Cursor,
  identifier: ResourceIdentifier.optional().meta({ description: 'Only the resource with this identifier.' }),
});
const ClientListQuery = z.strictObject({
  limit: Limit,
  cursor: Cursor,
  name: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .meta({ description: 'Case-insensitive substring of the name.' }),
  status: z.enum(['enabled', 'disabled'], { error: 'expected enabled or disabled' }).optional(),
  resource: ResourceIdentifier.optional().meta({
    description: 'Clients holding a grant on, or introspecting, this resource.',
  }),
  auth_method: z
    .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'], {
      error: 'expected client_secret_basic, client_secret_post or private_key_jwt',
    })
    .optional(),
});
const DeleteResourceQuery = z.strictObject({
  force: z
    .enum(['true', 'false'], { error: 'expected true or false' })
    .optional()
    .meta({ description: 'Delete even while clients hold grants on it or introspect it.' }),
});
const Timestamp = z.iso
  .datetime({
    offset: true,
    error: 'expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z',
  })
  // Both databases store years 1 to 9999 of the proleptic calendar; an instant outside them cannot be compared.
  .refine((value) => {
    const year = new Date(value).getUTCFullYear();
    return year >= 1 && year <= 9999;
  }, 'expected a date-time between the years 0001 and 9999');
const AuditQuery = z.strictObject({
  limit: Limit,
  cursor: Cursor,
  actor: z.string().min(1).max(255).optional().meta({ description: 'The admin client id.' }),
  action: z.string().min(1).max(100).optional().meta({ description: 'e.g. client.create, resource.delete' }),
  target: z.string().min(1).max(2048).optional().meta({ description: 'The id of a resource or client.' }),
  since: Timestamp.optional(),
  until: Timestamp.optional(),
});

const AnomalyQuery = z.strictObject({
  limit: Limit,
  cursor: Cursor,
  client_id: z.string().min(1).max(255).optional().meta({ description: 'Anomalies of this client.' }),
  kind: z
    .enum(ANOMALY_KINDS, { error: `expected one of ${ANOMALY_KINDS.join(', ')}` })
    .optional()
    .meta({ description: 'One kind of anomaly.' }),
  since: Timestamp.optional(),
  until: Timestamp.optional(),
});

const KeyRef = z.strictObject({ kid: z.string().min(1).max(255) });
const KeyRotation = z
  .strictObject({
    immediate: z
      .boolean({ error: 'expected true or false' })
      .optional()
      .meta({ description: 'Sign with a new key at once instead of after the propagation time.' }),
  })
  .meta({ id: 'KeyRotation' });
const SigningKeyList = z.object({ items: z.array(SigningKeyInfo) }).meta({ id: 'SigningKeyList' });
const KeyRotationResult = z
  .object({
    key: SigningKeyInfo,
    created: z.boolean().meta({ description: 'false: a published successor already existed and is kept.' }),
  })
  .meta({ id: 'KeyRotationResult' });
const KeyRevocationResult = z
  .object({ key: SigningKeyInfo, signing_kid: z.string().meta({ description: 'The key signing now.' }) })
  .meta({ id: 'KeyRevocationResult' });

/** One page of the audit trail, newest first, with a cursor on the identity column. */
async function auditEventPage<T>(
  db: AdminDeps['db'],
  query: {
    limit?: number | undefined;
    cursor?: string | undefined;
    since?: string | undefined;
    until?: string | undefined;
  },
  toItem: (row: AuditEventRow) => T,
  filter: Omit<AuditEventFilter, 'since' | 'until'>,
): Promise<{ items: T[]; next_cursor: string | null }> {
  const limit = query.limit ?? DEFAULT_LIMIT;
  const rows = await listAuditEvents(
    db,
    {
      ...filter,
      since: query.since === undefined ? undefined : new Date(query.since),
      until: query.until === undefined ? undefined : new Date(query.until),
    },
    { limit, before: decodeCursor(query.cursor, z.string().regex(/^\d{1,18}$/)) },
  );
  const last = rows.at(-1);
  return {
    items: rows.map(toItem),
    next_cursor: rows.length === limit && last ? encodeCursor(String(last.id)) : null,
  };
}

const route = <P, Q, B>(definition: AdminRoute<P, Q, B>) => definition as unknown as AdminRoute;

const READ = ADMIN_SCOPES.read;
const WRITE = ADMIN_SCOPES.write;

export const ADMIN_ROUTES: readonly AdminRoute[] = [
  route({
    method: 'POST',
    path: '/resources',
    operationId: 'createResource',
    summary:
      'Register a resource server: its identifier (the token audience), scopes, token lifetime and format.',
    scope: WRITE,
    body: ResourceInput,
    status: 201,
    response: Resource,
    errors: ['invalid_input', 'resource_exists'],
    handle: ({ deps, actor, body }) => createResource(deps, actor, body),
  }),
  route({
    method: 'GET',
    path: '/resources',
    operationId: 'listResources',
    summary: 'List resources in identifier order.',
    scope: READ,
    query: ResourceListQuery,
    status: 200,
    response: Page(Resource, 'ResourcePage'),
    errors: ['invalid_input'],
    async handle({ deps, query }) {
      const limit = query.limit ?? DEFAULT_LIMIT;
      const page = await listResourcePage(deps.db, {
        limit,
        after: decodeCursor(query.cursor, z.string()),
        identifier: query.identifier,
      });
      return { items: page.items, next_cursor: page.last === undefined ? null : encodeCursor(page.last) };
    },
  }),
  route({
    method: 'GET',
    path: '/resources/{resource}',
    operationId: 'getResource',
    summary: 'Show one resource.',
    scope: READ,
    params: ResourceRef,
    status: 200,
    response: Resource,
    errors: ['resource_not_found'],
    handle: ({ deps, params }) => getResource(deps.db, params.resource),
  }),
  route({
    method: 'PATCH',
    path: '/resources/{resource}',
    operationId: 'updateResource',
    summary: 'Change the name, scopes, token lifetime or format of a resource. The identifier never changes.',
    scope: WRITE,
    params: ResourceRef,
    body: ResourceUpdate,
    status: 200,
    response: Resource,
    errors: ['invalid_input', 'resource_not_found', 'scope_in_use', 'resource_reserved'],
    handle: ({ deps, actor, params, body }) => updateResource(deps, actor, params.resource, body),
  }),
  route({
    method: 'DELETE',
    path: '/resources/{resource}',
    operationId: 'deleteResource',
    summary: 'Delete a resource; refused while clients depend on it unless force=true.',
    scope: WRITE,
    params: ResourceRef,
    query: DeleteResourceQuery,
    status: 204,
    errors: ['resource_not_found', 'resource_in_use', 'resource_reserved'],
    handle: ({ deps, actor, params, query }) =>
      deleteResource(deps, actor, params.resource, { force: query.force === 'true' }),
  }),
  route({
    method: 'POST',
    path: '/clients',
    operationId: 'createClient',
    summary: 'Register a client. For secret methods the answer holds client_secret, shown this once.',
    scope: WRITE,
    body: ClientInput,
    status: 201,
    response: ClientWithSecret,
    errors: ['invalid_input', 'resource_not_found', 'scope_not_defined'],
    handle: ({ deps, actor, body }) => createClient(deps, actor, body),
  }),
  route({
    method: 'GET',
    path: '/clients',
    operationId: 'listClients',
    summary: 'List clients in name order, with filters.',
    scope: READ,
    query: ClientListQuery,
    status: 200,
    response: Page(Client, 'ClientPage'),
    errors: ['invalid_input'],
    async handle({ deps, query }) {
      const limit = query.limit ?? DEFAULT_LIMIT;
      const page = await listClientPage(
        deps,
        { name: query.name, status: query.status, resource: query.resource, authMethod: query.auth_method },
        { limit, after: decodeCursor(query.cursor, z.tuple([z.string(), z.string()])) },
      );
      return { items: page.items, next_cursor: page.last === undefined ? null : encodeCursor(page.last) };
    },
  }),
  route({
    method: 'GET',
    path: '/clients/{client_id}',
    operationId: 'getClient',
    summary: 'Show one client, with its grants, introspection rights and the secrets that still work.',
    scope: READ,
    params: ClientRef,
    status: 200,
    response: Client,
    errors: ['client_not_found'],
    handle: ({ deps, params }) => getClient(deps, params.client_id),
  }),
  route({
    method: 'PATCH',
    path: '/clients/{client_id}',
    operationId: 'updateClient',
    summary: 'Change the name, grants, introspection rights, bearer exception or keys of a client.',
    scope: WRITE,
    params: ClientRef,
    body: ClientUpdate,
    status: 200,
    response: Client,
    errors: [
      'invalid_input',
      'client_not_found',
      'resource_not_found',
      'scope_not_defined',
      'last_admin_client',
    ],
    handle: ({ deps, actor, params, body }) => updateClient(deps, actor, params.client_id, body),
  }),
  route({
    method: 'POST',
    path: '/clients/{client_id}/disable',
    operationId: 'disableClient',
    summary: 'Disable a client: it gets no token, and its outstanding tokens are inactive at once.',
    scope: WRITE,
    params: ClientRef,
    status: 200,
    response: Client,
    errors: ['client_not_found', 'last_admin_client'],
    handle: ({ deps, actor, params }) => setClientEnabled(deps, actor, params.client_id, false),
  }),
  route({
    method: 'POST',
    path: '/clients/{client_id}/enable',
    operationId: 'enableClient',
    summary: 'Enable a disabled client.',
    scope: WRITE,
    params: ClientRef,
    status: 200,
    response: Client,
    errors: ['client_not_found'],
    handle: ({ deps, actor, params }) => setClientEnabled(deps, actor, params.client_id, true),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{client_id}',
    operationId: 'deleteClient',
    summary:
      'Delete a client: its secrets, grants and rights go, and its outstanding tokens are inactive at once.',
    scope: WRITE,
    params: ClientRef,
    status: 204,
    errors: ['client_not_found', 'last_admin_client'],
    handle: ({ deps, actor, params }) => deleteClient(deps, actor, params.client_id),
  }),
  route({
    method: 'POST',
    path: '/clients/{client_id}/secrets',
    operationId: 'rotateClientSecret',
    summary:
      'Issue a new client secret (answered once). Previous secrets keep working for previous_secret_expires_in seconds.',
    scope: WRITE,
    params: ClientRef,
    body: SecretRotation,
    bodyOptional: true,
    status: 201,
    response: ClientWithSecret,
    errors: ['invalid_input', 'client_not_found'],
    handle: ({ deps, actor, params, body }) => rotateClientSecret(deps, actor, params.client_id, body),
  }),
  route({
    method: 'GET',
    path: '/keys',
    operationId: 'listSigningKeys',
    summary:
      'The signing keys: phase (published, active, retired, revoked) and the time of each next transition.',
    scope: READ,
    status: 200,
    response: SigningKeyList,
    errors: [],
    handle: async ({ deps }) => ({ items: await deps.keys.list() }),
  }),
  route({
    method: 'POST',
    path: '/keys/rotate',
    operationId: 'rotateSigningKey',
    summary:
      'Start a rotation now: publish a successor that signs after the propagation time (kept if one is already ' +
      'published). With immediate, a new key signs at once: resource servers holding a cached JWKS meet an ' +
      'unknown kid until they refetch it.',
    scope: WRITE,
    body: KeyRotation,
    bodyOptional: true,
    status: 200,
    response: KeyRotationResult,
    errors: ['invalid_input'],
    handle: ({ deps, actor, body }) => deps.keys.rotate(actor, body.immediate ?? false),
  }),
  route({
    method: 'POST',
    path: '/keys/{kid}/revoke',
    operationId: 'revokeSigningKey',
    summary:
      'Emergency revocation: the key leaves the JWKS at once, every token it signed is inactive, and when it was ' +
      'signing a successor signs at once.',
    scope: WRITE,
    params: KeyRef,
    status: 200,
    response: KeyRevocationResult,
    errors: ['key_not_found'],
    handle: ({ deps, actor, params }) => deps.keys.revoke(actor, params.kid),
  }),
  route({
    method: 'GET',
    path: '/audit-events',
    operationId: 'listAuditEvents',
    summary:
      'The trail of admin changes, newest first: who, what (before and after, secrets redacted), when.',
    scope: READ,
    query: AuditQuery,
    status: 200,
    response: Page(AuditEvent, 'AuditEventPage'),
    errors: ['invalid_input'],
    handle: ({ deps, query }) =>
      auditEventPage(deps.db, query, toAuditEvent, {
        actor: query.actor,
        action: query.action,
        targetId: query.target,
      }),
  }),
  route({
    method: 'GET',
    path: '/anomalies',
    operationId: 'listAnomalies',
    summary:
      'Unusual client behaviour seen at the token endpoint, newest first: a spike of denials or of issued tokens, ' +
      'many addresses or DPoP keys, a disabled or deleted client still trying.',
    scope: READ,
    query: AnomalyQuery,
    status: 200,
    response: Page(AnomalyEvent, 'AnomalyEventPage'),
    errors: ['invalid_input'],
    handle: ({ deps, query }) =>
      auditEventPage(deps.db, query, toAnomalyEvent, {
        actions: query.kind === undefined ? ANOMALY_ACTIONS : [anomalyAction(query.kind)],
        targetId: query.client_id,
      }),
  }),
  route({
    method: 'POST',
    path: '/registration-tokens',
    operationId: 'createRegistrationToken',
    summary:
      'Mint an initial access token for dynamic client registration (RFC 7591): it caps the resources, scopes, ' +
      'authentication methods and token lifetimes of the clients it registers. The token is answered this once.',
    scope: WRITE,
    body: RegistrationTokenInput,
    status: 201,
    response: RegistrationTokenWithValue,
    errors: ['invalid_input', 'resource_not_found', 'scope_not_defined'],
    handle: ({ deps, actor, body }) => createRegistrationToken(deps, actor, body),
  }),
  route({
    method: 'GET',
    path: '/registration-tokens',
    operationId: 'listRegistrationTokens',
    summary: 'List initial access tokens, newest first: caps, uses left, expiry (never the token values).',
    scope: READ,
    status: 200,
    response: z.object({ items: z.array(RegistrationToken) }).meta({ id: 'RegistrationTokenList' }),
    errors: [],
    handle: async ({ deps }) => ({ items: await listRegistrationTokens(deps) }),
  }),
  route({
    method: 'DELETE',
    path: '/registration-tokens/{id}',
    operationId: 'revokeRegistrationToken',
    summary: 'Revoke an initial access token at once; clients it already registered are unaffected.',
    scope: WRITE,
    params: z.strictObject({ id: z.string().min(1).max(64) }),
    status: 204,
    errors: ['not_found'],
    handle: ({ deps, actor, params }) => revokeRegistrationToken(deps, actor, params.id),
  }),
  route({
    method: 'POST',
    path: '/admin-users',
    operationId: 'createAdminUser',
    summary:
      'Create a person who signs in to the web console, with a password (hashed with scrypt) and a role. With ' +
      'totp, a TOTP second factor is enrolled and its secret answered this once.',
    scope: WRITE,
    body: AdminUserInput,
    status: 201,
    response: AdminUserWithTotp,
    errors: ['invalid_input', 'admin_user_exists'],
    handle: ({ deps, actor, body }) => createAdminUser(deps, actor, body),
  }),
  route({
    method: 'GET',
    path: '/admin-users',
    operationId: 'listAdminUsers',
    summary: 'List the console users in name order (never a password hash or TOTP secret).',
    scope: READ,
    status: 200,
    response: z.object({ items: z.array(AdminUser) }).meta({ id: 'AdminUserList' }),
    errors: [],
    handle: async ({ deps }) => ({ items: await listAdminUsers(deps.db) }),
  }),
  route({
    method: 'GET',
    path: '/admin-users/{name}',
    operationId: 'getAdminUser',
    summary: 'Show one console user.',
    scope: READ,
    params: z.strictObject({ name: AdminUserName }),
    status: 200,
    response: AdminUser,
    errors: ['invalid_input', 'admin_user_not_found'],
    handle: ({ deps, params }) => getAdminUser(deps.db, params.name),
  }),
  route({
    method: 'PATCH',
    path: '/admin-users/{name}',
    operationId: 'updateAdminUser',
    summary:
      "Change a console user's password, role or status, or enrol or remove its TOTP second factor. A new " +
      'password, a new second factor or disabling ends every session of the user at once.',
    scope: WRITE,
    params: z.strictObject({ name: AdminUserName }),
    body: AdminUserUpdate,
    status: 200,
    response: AdminUserWithTotp,
    errors: ['invalid_input', 'admin_user_not_found'],
    handle: ({ deps, actor, params, body }) => updateAdminUser(deps, actor, params.name, body),
  }),
  route({
    method: 'DELETE',
    path: '/admin-users/{name}',
    operationId: 'deleteAdminUser',
    summary: 'Delete a console user; its sessions end at once. Its past changes stay in the audit trail.',
    scope: WRITE,
    params: z.strictObject({ name: AdminUserName }),
    status: 204,
    errors: ['invalid_input', 'admin_user_not_found'],
    handle: ({ deps, actor, params }) => deleteAdminUser(deps, actor, params.name),
  }),
];
