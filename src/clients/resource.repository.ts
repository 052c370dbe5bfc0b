import type { Db } from '../db/connect.ts';
import type { NewResourceRow, ResourceRow, UpdateResourceRow } from '../db/tables/resource.table.ts';

export async function insertResource(db: Db, row: NewResourceRow): Promise<ResourceRow | undefined> {
  return db
    .insertInto('resource')
    .values(row)
    .onConflict((oc) => oc.column('identifier').doNothing())
    .returningAll()
    .executeTakeFirst();
}

/**
 * Locked FOR SHARE: a grant being written keeps its resource from being deleted or losing scopes until the
 * grant is committed, and waits for such a change to commit first.
 */
export async function findResourcesByIdentifiers(
  db: Db,
  identifiers: readonly string[],
): Promise<ResourceRow[]> {
  if (identifiers.length === 0) return [];
  return db.selectFrom('resource').selectAll().where('identifier', 'in', identifiers).forShare().execute();
}

export async function findResourceById(
  db: Db,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<ResourceRow | undefined> {
  const query = db.selectFrom('resource').selectAll().where('id', '=', id);
  return (options.forUpdate ? query.forUpdate() : query).executeTakeFirst();
}

export async function findResourceByIdentifier(
  db: Db,
  identifier: string,
  options: { forUpdate?: boolean } = {},
): Promise<ResourceRow | undefined> {
  const query = db.selectFrom('resource').selectAll().where('identifier', '=', identifier);
  return (options.forUpdate ? query.forUpdate() : query).executeTakeFirst();
}

/** Keyset pagination in identifier order: stable under concurrent inserts, no OFFSET scans. */
export async function listResources(
  db: Db,
  page: { limit: number; after?: string | undefined; identifier?: string | undefined },
): Promise<ResourceRow[]> {
  let query = db.selectFrom('resource').selectAll().orderBy('identifier').limit(page.limit);
  if (page.after !== undefined) query = query.where('identifier', '>', page.after);
  if (page.identifier !== undefined) query = query.where('identifier', '=', page.identifier);
  return query.execute();
}

export async function updateResourceRow(
  db: Db,
  id: string,
  changes: UpdateResourceRow,
  now: Date,
): Promise<ResourceRow | undefined> {
  return db
    .updateTable('resource')
    .set({ ...changes, updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function deleteResourceRow(db: Db, id: string): Promise<void> {
  await db.deleteFrom('resource').where('id', '=', id).execute();
}

/** Clients that hold a grant on the resource (with the scopes they hold) or may introspect its tokens. */
export async function findResourceDependents(
  db: Db,
  resourceId: string,
): Promise<{ grants: { client_id: string; scopes: string[] }[]; introspectors: string[] }> {
  const [grants, introspectors] = await Promise.all([
    db
      .selectFrom('client_grant')
      .select(['client_id', 'scopes'])
      .where('resource_id', '=', resourceId)
      .orderBy('client_id')
      .execute(),
    db
      .selectFrom('client_introspection')
      .select('client_id')
      .where('resource_id', '=', resourceId)
      .orderBy('client_id')
      .execute(),
  ]);
  return { grants, introspectors: introspectors.map((row) => row.client_id) };
}
