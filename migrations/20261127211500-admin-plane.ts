import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // The admin API's own resource (`<issuer>/admin`): it cannot be edited or deleted through the admin API.
  await db.schema
    .alterTable('resource')
    .addColumn('reserved', 'boolean', (col) => col.notNull().defaultTo(false))
    .execute();

  // Tokens issued before this instant are inactive: set when the client is disabled, so enabling it again does
  // not revive them.
  await db.schema.alterTable('client').addColumn('tokens_not_before', 'timestamptz').execute();

  await db.schema
    .createTable('audit_event')
    .addColumn('id', 'bigint', (col) => col.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('occurred_at', 'timestamptz', (col) => col.notNull())
    .addColumn('actor', 'text', (col) => col.notNull())
    .addColumn('action', 'text', (col) => col.notNull())
    .addColumn('target_type', 'text', (col) => col.notNull())
    .addColumn('target_id', 'text', (col) => col.notNull())
    .addColumn('before', 'jsonb')
    .addColumn('after', 'jsonb')
    .execute();
  await db.schema.createIndex('audit_event_actor_idx').on('audit_event').columns(['actor', 'id']).execute();
  await db.schema
    .createIndex('audit_event_target_idx')
    .on('audit_event')
    .columns(['target_id', 'id'])
    .execute();
  await db.schema
    .createIndex('audit_event_occurred_at_idx')
    .on('audit_event')
    .column('occurred_at')
    .execute();

  await db.schema.createIndex('client_name_id_idx').on('client').columns(['name', 'id']).execute();
  await db.schema
    .createIndex('client_introspection_resource_id_idx')
    .on('client_introspection')
    .column('resource_id')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('client_introspection_resource_id_idx').execute();
  await db.schema.dropIndex('client_name_id_idx').execute();
  await db.schema.dropTable('audit_event').execute();
  await db.schema.alterTable('client').dropColumn('tokens_not_before').execute();
  await db.schema.alterTable('resource').dropColumn('reserved').execute();
}
