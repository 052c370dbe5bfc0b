import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Initial access tokens (RFC 7591 §3): minted by an admin, each caps what the clients it registers may obtain.
  await db.schema
    .createTable('registration_token')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('token_hash', 'text', (col) => col.notNull())
    .addColumn('resources', 'jsonb', (col) => col.notNull())
    .addColumn('auth_methods', sql`text[]`, (col) => col.notNull())
    .addColumn('max_token_ttl', 'integer')
    .addColumn('uses', 'integer', (col) => col.notNull())
    .addColumn('uses_left', 'integer', (col) => col.notNull())
    .addColumn('created_by', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addUniqueConstraint('registration_token_token_hash_key', ['token_hash'])
    .addCheckConstraint('registration_token_uses_left_check', sql`uses_left >= 0 and uses_left <= uses`)
    .execute();

  // One row per dynamically registered client: its registration access token (RFC 7592 §3) and the caps of the
  // initial access token it was registered with, copied so that they outlive that token.
  await db.schema
    .createTable('client_registration')
    .addColumn('client_id', 'text', (col) => col.primaryKey().references('client.id').onDelete('cascade'))
    .addColumn('access_token_hash', 'text', (col) => col.notNull())
    .addColumn('registration_token_id', 'uuid', (col) => col.notNull())
    .addColumn('resources', 'jsonb', (col) => col.notNull())
    .addColumn('auth_methods', sql`text[]`, (col) => col.notNull())
    .addColumn('max_token_ttl', 'integer')
    .addColumn('issued_at', 'timestamptz', (col) => col.notNull())
    .addUniqueConstraint('client_registration_access_token_hash_key', ['access_token_hash'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('client_registration').execute();
  await db.schema.dropTable('registration_token').execute();
}
