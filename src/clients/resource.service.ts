import { commitChange, type Actor, type ChangeDeps } from '../audit/audit-trail.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/connect.ts';
import type { ResourceRow } from '../db/tables/resource.table.ts';
import { MayflyError, parseInput } from '../errors.ts';
import {
  deleteResourceRow,
  findResourceById,
  findResourceByIdentifier,
  findResourceDependents,
  insertResource,
  listResources,
  updateResourceRow,
} from './resource.repository.ts';
import type { Resource } from './resource.schemas.ts';
import { ResourceInput, ResourceUpdate } from './resource.schemas.ts';

export type TokenLimits = Config['tokens'];

export interface ResourceDeps extends ChangeDeps {
  tokens: TokenLimits;
}

export function toResource(row: ResourceRow): Resource {
  return {
    id: row.id,
    identifier: row.identifier,
    name: row.name,
    scopes: row.scopes,
    token_ttl: row.token_ttl,
    token_format: row.token_format,
    managed_by: row.managed_by,
    reserved: row.reserved,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

function checkTtl(tokenTtl: number, limits: TokenLimits): void {
  if (tokenTtl > limits.maxTtl) {
    throw new MayflyError(
      'invalid_input',
      `token_ttl: at most ${limits.maxTtl} seconds (MAYFLY_MAX_TOKEN_TTL)`,
      [{ path: 'token_ttl', message: `at most ${limits.maxTtl} seconds` }],
    );
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A resource is named by its id or by its identifier (an absolute URI, so the two never collide). */
export async function findResourceRow(
  db: Db,
  ref: string,
  options: { forUpdate?: boolean } = {},
): Promise<ResourceRow> {
  const row = UUID.test(ref)
    ? await findResourceById(db, ref, options)
    : await findResourceByIdentifier(db, ref, options);
  if (!row) throw new MayflyError('resource_not_found', `no resource ${ref}`);
  return row;
}

export async function getResource(db: Db, ref: string): Promise<Resource> {
  return toResource(await findResourceRow(db, ref));
}

export async function listResourcePage(
  db: Db,
  query: { limit: number; after?: string | undefined; identifier?: string | undefined },
): Promise<{ items: Resource[]; last: string | undefined }> {
  const rows = await listResources(db, query);
  return {
    items: rows.map(toResource),
    last: rows.length === query.limit ? rows.at(-1)?.identifier : undefined,
  };
}

export async function createResource(
  deps: ResourceDeps,
  actor: Actor,
  input: ResourceInput,
  options: { reserved?: boolean } = {},
): Promise<Resource> {
  const parsed = parseInput(ResourceInput, input);
  const tokenTtl = parsed.token_ttl ?? deps.tokens.defaultTtl;
  checkTtl(tokenTtl, deps.tokens);
  return commitChange(deps, actor, async (trx) => {
    const row = await insertResource(trx, {
      identifier: parsed.identifier,
      name: parsed.name ?? null,
      scopes: parsed.scopes,
      token_ttl: tokenTtl,
      token_format: parsed.token_format,
      reserved: options.reserved ?? false,
      managed_by: parsed.managed_by ?? null,
    });
    if (!row) {
      throw new MayflyError('resource_exists', `a resource with identifier ${parsed.identifier} exists`);
    }
    const result = toResource(row);
    return {
      result,
      change: {
        action: 'resource.create',
        targetType: 'resource',
        targetId: row.id,
        before: null,
        after: result,
      },
    };
  });
}

function refuseReserved(row: ResourceRow): void {
  if (row.reserved) {
    throw new MayflyError(
      'resource_reserved',
      `${row.identifier} is the admin API's own resource; it cannot be changed or deleted`,
    );
  }
}

export async function updateResource(
  deps: ResourceDeps,
  actor: Actor,
  ref: string,
  input: ResourceUpdate,
): Promise<Resource> {
  const update = parseInput(ResourceUpdate, input);
  if (update.token_ttl !== undefined) checkTtl(update.token_ttl, deps.tokens);
  return commitChange(deps, actor, async (trx, now) => {
    // Locked until commit: a grant being written at the same time either commits first and is seen below, or
    // waits and then reads the new scopes.
    const row = await findResourceRow(trx, ref, { forUpdate: true });
    refuseReserved(row);
    if (update.scopes) {
      const kept = new Set(update.scopes);
      const { grants } = await findResourceDependents(trx, row.id);
      const holders = grants.filter((grant) => grant.scopes.some((scope) => !kept.has(scope)));
      if (holders.length) {
        const dropped = [...new Set(holders.flatMap((g) => g.scopes.filter((s) => !kept.has(s))))];
        throw new MayflyError(
          'scope_in_use',
          `cannot remove ${dropped.join(', ')}: granted to client ${holders.map((h) => h.client_id).join(', ')}; change those grants first`,
        );
      }
    }
    const updated = await updateResourceRow(
      trx,
      row.id,
      {
        ...(update.name !== undefined ? { name: update.name } : {}),
        ...(update.scopes !== undefined ? { scopes: update.scopes } : {}),
        ...(update.token_ttl !== undefined ? { token_ttl: update.token_ttl } : {}),
        ...(update.token_format !== undefined ? { token_format: update.token_format } : {}),
        ...(update.managed_by !== undefined ? { managed_by: update.managed_by } : {}),
      },
      now,
    );
    if (!updated) throw new MayflyError('resource_not_found', `no resource ${ref}`);
    const result = toResource(updated);
    return {
      result,
      change: {
        action: 'resource.update',
        targetType: 'resource',
        targetId: row.id,
        before: toResource(row),
        after: result,
      },
    };
  });
}

/**
 * Deleting a resource ends every grant and introspection right on it, so it is refused while clients depend on
 * it unless `force` says that is intended.
 */
export async function deleteResource(
  deps: ResourceDeps,
  actor: Actor,
  ref: string,
  options: { force: boolean },
): Promise<void> {
  await commitChange(deps, actor, async (trx) => {
    const row = await findResourceRow(trx, ref, { forUpdate: true });
    refuseReserved(row);
    const { grants, introspectors } = await findResourceDependents(trx, row.id);
    const dependents = [...new Set([...grants.map((g) => g.client_id), ...introspectors])];
    if (dependents.length && !options.force) {
      throw new MayflyError(
        'resource_in_use',
        `clients ${dependents.join(', ')} hold grants on or introspect ${row.identifier}; change them first or delete with force`,
      );
    }
    await deleteResourceRow(trx, row.id);
    return {
      result: undefined,
      change: {
        action: 'resource.delete',
        targetType: 'resource',
        targetId: row.id,
        before: { ...toResource(row), dependents },
        after: null,
      },
    };
  });
}
