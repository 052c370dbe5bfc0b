import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { commitChange, type Actor, type ChangeDeps } from '../audit/audit-trail.ts';
import type { Db } from '../db/connect.ts';
import type { ResourceRow } from '../db/tables/resource.table.ts';
import { MayflyError, parseInput } from '../errors.ts';
import { ADMIN_SCOPES, refuseRemovingLastAdmin } from './admin-rights.ts';
import { generateClientSecret, hashClientSecret } from './client-secret.ts';
import {
  deleteClientGrants,
  deleteClientIntrospections,
  deleteClientRow,
  expireClientSecrets,
  findClientDetail,
  insertClient,
  insertClientGrants,
  insertClientIntrospections,
  insertClientSecret,
  listClientDetails,
  lockClient,
  updateClientRow,
  type ClientDetail,
  type ClientFilter,
} from './client.repository.ts';
import type { Client } from './client.schemas.ts';
import { ClientInput, ClientUpdate, SecretRotation, type ClientWithSecret } from './client.schemas.ts';
import { findResourcesByIdentifiers } from './resource.repository.ts';

export interface ClientDeps extends ChangeDeps {
  /** Seconds a previous secret keeps working after a rotation, unless the rotation says otherwise. */
  secretOverlapSeconds: number;
}

export function toClient(detail: ClientDetail): Client {
  const { client } = detail;
  return {
    client_id: client.id,
    name: client.name,
    auth_method: client.auth_method,
    jwks: client.jwks as Client['jwks'],
    jwks_uri: client.jwks_uri,
    grants: detail.grants,
    introspects: detail.introspects,
    bearer_allowed: client.bearer_allowed,
    dpop_jkts: client.dpop_jkts,
    managed_by: client.managed_by,
    rate_limits: {
      tokens_per_minute: client.token_rate_limit,
      introspections_per_minute: client.introspection_rate_limit,
    },
    status: client.disabled_at ? 'disabled' : 'enabled',
    disabled_at: client.disabled_at?.toISOString() ?? null,
    secrets: detail.secrets.map((s) => ({
      id: s.id,
      created_at: s.created_at.toISOString(),
      expires_at: s.expires_at?.toISOString() ?? null,
    })),
    created_at: client.created_at.toISOString(),
    updated_at: client.updated_at.toISOString(),
  };
}

/**
 * 128 random bits, base64url; never starting with `-` or `_`, so that an id is never mistaken for a command-line
 * option or looks like a continuation.
 */
function generateClientId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

/** The secret itself never enters an audit record; that one was issued does. */
const SECRET_ISSUED = { client_secret: '[redacted]' } as const;

/** `forChange`: lock the client first, so that concurrent changes to it (two rotations, a rotation and a delete)
 * run one after the other and each sees what the previous one did. */
async function loadClient(
  db: Db,
  clientId: string,
  now: Date,
  options: { forChange?: boolean } = {},
): Promise<ClientDetail> {
  if (options.forChange && !(await lockClient(db, clientId))) {
    throw new MayflyError('client_not_found', `no client ${clientId}`);
  }
  const detail = await findClientDetail(db, clientId, now);
  if (!detail) throw new MayflyError('client_not_found', `no client ${clientId}`);
  return detail;
}

export async function getClient(deps: ChangeDeps, clientId: string): Promise<Client> {
  return toClient(await loadClient(deps.db, clientId, deps.clock.now()));
}

export async function listClientPage(
  deps: ChangeDeps,
  filter: ClientFilter,
  page: { limit: number; after?: readonly [string, string] | undefined },
): Promise<{ items: Client[]; last: readonly [string, string] | undefined }> {
  const details = await listClientDetails(deps.db, filter, page, deps.clock.now());
  const last = details.at(-1);
  return {
    items: details.map(toClient),
    last: details.length === page.limit && last ? [last.client.name, last.client.id] : undefined,
  };
}

/** Grants and introspection rights name resources by identifier; every one must exist and define its scopes. */
async function resolveRights(
  trx: Db,
  grants: readonly { resource: string; scopes: string[] }[],
  introspects: readonly string[],
): Promise<{
  grants: { resourceId: string; scopes: string[] }[];
  introspects: string[];
  /** Whether the grants include admin:write on the admin API's own resource. */
  administers: boolean;
}> {
  const named = [...new Set([...grants.map((g) => g.resource), ...introspects])];
  const found = new Map((await findResourcesByIdentifiers(trx, named)).map((r) => [r.identifier, r]));
  const missing = named.filter((identifier) => !found.has(identifier));
  if (missing.length) {
    throw new MayflyError('resource_not_found', `no resource with identifier ${missing.join(', ')}`);
  }
  const resourceNamed = (identifier: string): ResourceRow => {
    const resource = found.get(identifier);
    // Unreachable after the check above; keeps the lookup typed without a non-null assertion.
    if (!resource) throw new MayflyError('resource_not_found', `no resource with identifier ${identifier}`);
    return resource;
  };
  return {
    grants: grants.map((grant) => {
      const resource = resourceNamed(grant.resource);
      const undefinedScopes = grant.scopes.filter((scope) => !resource.scopes.includes(scope));
      if (undefinedScopes.length) {
        throw new MayflyError(
          'scope_not_defined',
          `${grant.resource} does not define ${undefinedScopes.join(', ')}; it defines ${resource.scopes.join(' ')}`,
        );
      }
      return { resourceId: resource.id, scopes: grant.scopes };
    }),
    introspects: introspects.map((identifier) => resourceNamed(identifier).id),
    administers: grants.some(
      (grant) => resourceNamed(grant.resource).reserved && grant.scopes.includes(ADMIN_SCOPES.write),
    ),
  };
}

export async function createClient(
  deps: ChangeDeps,
  actor: Actor,
  input: ClientInput,
  options: { clientId?: string } = {},
): Promise<ClientWithSecret> {
  const parsed = parseInput(ClientInput, input);
  return commitChange(deps, actor, async (trx, now) => {
    const rights = await resolveRights(trx, parsed.grants, parsed.introspects);
    const client = await insertClient(trx, {
      id: options.clientId ?? generateClientId(),
      name: parsed.name,
      auth_method: parsed.auth_method,
      jwks: parsed.jwks ? JSON.stringify(parsed.jwks) : null,
      jwks_uri: parsed.jwks_uri ?? null,
      bearer_allowed: parsed.bearer_allowed,
      dpop_jkts: parsed.dpop_jkts,
      managed_by: parsed.managed_by ?? null,
      token_rate_limit: parsed.rate_limits?.tokens_per_minute ?? null,
      introspection_rate_limit: parsed.rate_limits?.introspections_per_minute ?? null,
    });
    let clientSecret: string | undefined;
    if (parsed.auth_method !== 'private_key_jwt') {
      clientSecret = generateClientSecret();
      await insertClientSecret(trx, client.id, hashClientSecret(clientSecret));
    }
    await insertClientGrants(trx, client.id, rights.grants);
    await insertClientIntrospections(trx, client.id, rights.introspects);
    const created = toClient(await loadClient(trx, client.id, now));
    return {
      result: clientSecret === undefined ? created : { ...created, client_secret: clientSecret },
      change: {
        action: 'client.create',
        targetType: 'client',
        targetId: client.id,
        before: null,
        after: clientSecret === undefined ? created : { ...created, ...SECRET_ISSUED },
      },
    };
  });
}

export async function updateClient(
  deps: ChangeDeps,
  actor: Actor,
  clientId: string,
  input: ClientUpdate,
): Promise<Client> {
  const update = parseInput(ClientUpdate, input);
  return commitChange(deps, actor, async (trx, now) => {
    const before = await loadClient(trx, clientId, now, { forChange: true });
    const keyChange = update.jwks !== undefined || update.jwks_uri !== undefined;
    if (keyChange && before.client.auth_method !== 'private_key_jwt') {
      throw new MayflyError(
        'invalid_input',
        `${update.jwks ? 'jwks' : 'jwks_uri'}: keys are only used with private_key_jwt, not ${before.client.auth_method}`,
        [{ path: update.jwks ? 'jwks' : 'jwks_uri', message: 'keys are only used with private_key_jwt' }],
      );
    }
    const rights = await resolveRights(trx, update.grants ?? [], update.introspects ?? []);
    if (update.grants && !rights.administers)
      await refuseRemovingLastAdmin(trx, clientId, 'changing the grants of');
    await updateClientRow(
      trx,
      clientId,
      {
        ...(update.name !== undefined ? { name: update.name } : {}),
        ...(update.bearer_allowed !== undefined ? { bearer_allowed: update.bearer_allowed } : {}),
        ...(update.dpop_jkts !== undefined ? { dpop_jkts: update.dpop_jkts } : {}),
        ...(update.managed_by !== undefined ? { managed_by: update.managed_by } : {}),
        ...(update.rate_limits?.tokens_per_minute !== undefined
          ? { token_rate_limit: update.rate_limits.tokens_per_minute }
          : {}),
        ...(update.rate_limits?.introspections_per_minute !== undefined
          ? { introspection_rate_limit: update.rate_limits.introspections_per_minute }
          : {}),
        // A new key source replaces the other one: exactly one of the two is ever set.
        ...(update.jwks ? { jwks: JSON.stringify(update.jwks), jwks_uri: null } : {}),
        ...(update.jwks_uri ? { jwks_uri: update.jwks_uri, jwks: null } : {}),
      },
      now,
    );
    if (update.grants) {
      await deleteClientGrants(trx, clientId);
      await insertClientGrants(trx, clientId, rights.grants);
    }
    if (update.introspects) {
      await deleteClientIntrospections(trx, clientId);
      await insertClientIntrospections(trx, clientId, rights.introspects);
    }
    const result = toClient(await loadClient(trx, clientId, now));
    return {
      result,
      change: {
        action: 'client.update',
        targetType: 'client',
        targetId: clientId,
        before: toClient(before),
        after: result,
      },
    };
  });
}

/**
 * Disabling takes effect at once: the token endpoint refuses the client and its tokens are inactive, for good —
 * enabling the client again does not revive them. Token `iat` has whole-second precision, so the cut-off is the
 * next whole second, and enabling waits for that second to begin (at most one second) so that every token issued
 * after enabling is valid.
 */
export async function setClientEnabled(
  deps: ChangeDeps,
  actor: Actor,
  clientId: string,
  enabled: boolean,
): Promise<Client> {
  if (enabled) {
    const current = await findClientDetail(deps.db, clientId, deps.clock.now());
    const wait = (current?.client.tokens_not_before?.getTime() ?? 0) - deps.clock.now().getTime();
    if (wait > 0) await sleep(Math.min(wait, 1000));
  }
  return commitChange(deps, actor, async (trx, now) => {
    const before = await loadClient(trx, clientId, now, { forChange: true });
    const unchanged = (before.client.disabled_at === null) === enabled;
    if (unchanged) return { result: toClient(before), change: null };
    if (!enabled) await refuseRemovingLastAdmin(trx, clientId, 'disabling');
    // The first whole second after now: a token with that iat or later was issued after this change.
    const cutOff = new Date((Math.floor(now.getTime() / 1000) + 1) * 1000);
    await updateClientRow(
      trx,
      clientId,
      enabled ? { disabled_at: null } : { disabled_at: now, tokens_not_before: cutOff },
      now,
    );
    const result = toClient(await loadClient(trx, clientId, now));
    return {
      result,
      change: {
        action: enabled ? 'client.enable' : 'client.disable',
        targetType: 'client',
        targetId: clientId,
        before: toClient(before),
        after: result,
      },
    };
  });
}

export async function deleteClient(deps: ChangeDeps, actor: Actor, clientId: string): Promise<void> {
  await commitChange(deps, actor, async (trx, now) => {
    const before = await loadClient(trx, clientId, now, { forChange: true });
    await refuseRemovingLastAdmin(trx, clientId, 'deleting');
    await deleteClientRow(trx, clientId);
    return {
      result: undefined,
      change: {
        action: 'client.delete',
        targetType: 'client',
        targetId: clientId,
        before: toClient(before),
        after: null,
      },
    };
  });
}

/**
 * A new secret at once; the previous ones keep working for the overlap so that every instance of the client can
 * switch without an outage, or stop at once when the old secret may be compromised.
 */
export async function rotateClientSecret(
  deps: ClientDeps,
  actor: Actor,
  clientId: string,
  input: SecretRotation,
): Promise<ClientWithSecret> {
  const rotation = parseInput(SecretRotation, input);
  const overlap = rotation.previous_secret_expires_in ?? deps.secretOverlapSeconds;
  return commitChange(deps, actor, async (trx, now) => {
    const before = await loadClient(trx, clientId, now, { forChange: true });
    if (before.client.auth_method === 'private_key_jwt') {
      throw new MayflyError(
        'invalid_input',
        `client ${clientId} authenticates with private_key_jwt and has no secret; update its jwks instead`,
        [{ path: 'auth_method', message: 'private_key_jwt clients have no secret' }],
      );
    }
    await expireClientSecrets(trx, clientId, new Date(now.getTime() + overlap * 1000));
    const clientSecret = generateClientSecret();
    await insertClientSecret(trx, clientId, hashClientSecret(clientSecret));
    await updateClientRow(trx, clientId, {}, now);
    const after = toClient(await loadClient(trx, clientId, now));
    return {
      result: { ...after, client_secret: clientSecret },
      change: {
        action: 'client.rotate_secret',
        targetType: 'client',
        targetId: clientId,
        before: toClient(before),
        after: { ...after, ...SECRET_ISSUED, previous_secret_expires_in: overlap },
      },
    };
  });
}
