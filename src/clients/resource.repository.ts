import type { Db } from '../db/connect.ts';
import type { NewResourceRow, ResourceRow } from '../db/tables/resource.table.ts';

export async function insertResource(db: Db, row: NewResourceRow): Promise<ResourceRow | undefined> {
  return db
    .insertInto('resource')
    .values(row)
    .onConflict((oc) => oc.column('identifier').doNothing())
    .returningAll()
    .executeTakeFirst();
}

export async function findResourcesByIdentifiers(
  db: Db,
  identifiers: readonly string[],
): Promise<ResourceRow[]> {
  if (identifiers.length === 0) return [];
  return db.selectFrom('resource').selectAll().where('identifier', 'in', identifiers).execute();
}
