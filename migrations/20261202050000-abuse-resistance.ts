import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Counters shared by every instance, in the layout rate-limiter-flexible's Postgres store reads and writes:
  // `key` is `<limit>:<subject>`, `expire` the end of the current window in epoch milliseconds.
  await db.schema
    .createTable('rate_limit')
    .addColumn('key', 'varchar(255)', (col) => col.primaryKey())
    .addColumn('points', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('expire', 'bigint')
    .execute();
  await db.schema.createIndex('rate_limit_expire_idx').on('rate_limit').column('expire').execute();

  // Per-client limits (requests per minute); null follows the server default.
  await db.schema
    .alterTable('client')
    .addColumn('token_rate_limit', 'integer', (col) => col.check(sql`token_rate_limit > 0`))
    .addColumn('introspection_rate_limit', 'integer', (col) => col.check(sql`introspection_rate_limit > 0`))
    .execute();

  // Anomalies are listed from the audit trail by action.
  await db.schema.createIndex('audit_event_action_idx').on('audit_event').columns(['action', 'id']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_event_action_idx').execute();
  await db.schema
    .alterTable('client')
    .dropColumn('introspection_rate_limit')
    .dropColumn('token_rate_limit')
    .execute();
  await db.schema.dropTable('rate_limit').execute();
}
