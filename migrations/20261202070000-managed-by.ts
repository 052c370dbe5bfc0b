import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Who manages an object declaratively (e.g. `policy`): `mayfly apply --prune` deletes only what it manages.
  await db.schema.alterTable('resource').addColumn('managed_by', 'text').execute();
  await db.schema.alterTable('client').addColumn('managed_by', 'text').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('client').dropColumn('managed_by').execute();
  await db.schema.alterTable('resource').dropColumn('managed_by').execute();
}
