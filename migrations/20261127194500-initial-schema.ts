import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('resource')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('identifier', 'text', (col) => col.notNull())
    .addColumn('name', 'text')
    .addColumn('scopes', sql`text[]`, (col) => col.notNull())
    .addColumn('token_ttl', 'integer', (col) => col.notNull())
    .addColumn('token_format', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('resource_identifier_key', ['identifier'])
    .addCheckConstraint('resource_token_ttl_check', sql`token_ttl > 0`)
    .addCheckConstraint('resource_token_format_check', sql`token_format in ('jwt', 'opaque')`)
    .execute();

  await db.schema
    .createTable('client')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('auth_method', 'text', (col) => col.notNull())
    .addColumn('jwks', 'jsonb')
    .addColumn('jwks_uri', 'text')
    .addColumn('bearer_allowed', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('disabled_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      'client_auth_method_check',
      sql`auth_method in ('client_secret_basic', 'client_secret_post', 'private_key_jwt')`,
    )
    .addCheckConstraint(
      'client_private_key_jwt_keys_check',
      sql`auth_method <> 'private_key_jwt' or (jwks is null) <> (jwks_uri is null)`,
    )
    .execute();

  await db.schema
    .createTable('client_secret')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('client_id', 'text', (col) => col.notNull().references('client.id').onDelete('cascade'))
    .addColumn('secret_hash', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('client_secret_client_id_idx')
    .on('client_secret')
    .column('client_id')
    .execute();

  await db.schema
    .createTable('client_grant')
    .addColumn('client_id', 'text', (col) => col.notNull().references('client.id').onDelete('cascade'))
    .addColumn('resource_id', 'uuid', (col) => col.notNull().references('resource.id').onDelete('cascade'))
    .addColumn('scopes', sql`text[]`, (col) => col.notNull())
    .addPrimaryKeyConstraint('client_grant_pkey', ['client_id', 'resource_id'])
    .execute();
  await db.schema
    .createIndex('client_grant_resource_id_idx')
    .on('client_grant')
    .column('resource_id')
    .execute();

  await db.schema
    .createTable('client_introspection')
    .addColumn('client_id', 'text', (col) => col.notNull().references('client.id').onDelete('cascade'))
    .addColumn('resource_id', 'uuid', (col) => col.notNull().references('resource.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('client_introspection_pkey', ['client_id', 'resource_id'])
    .execute();

  await db.schema
    .createTable('oidc_payload')
    .addColumn('model', 'text', (col) => col.notNull())
    .addColumn('id', 'text', (col) => col.notNull())
    .addColumn('payload', 'jsonb', (col) => col.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('uid', 'text')
    .addColumn('user_code', 'text')
    .addColumn('consumed_at', 'timestamptz')
    .addColumn('expires_at', 'timestamptz')
    .addPrimaryKeyConstraint('oidc_payload_pkey', ['model', 'id'])
    .execute();
  await db.schema
    .createIndex('oidc_payload_expires_at_idx')
    .on('oidc_payload')
    .column('expires_at')
    .execute();
  await db.schema
    .createIndex('oidc_payload_grant_id_idx')
    .on('oidc_payload')
    .columns(['model', 'grant_id'])
    .execute();
  await db.schema.createIndex('oidc_payload_uid_idx').on('oidc_payload').columns(['model', 'uid']).execute();
  await db.schema
    .createIndex('oidc_payload_user_code_idx')
    .on('oidc_payload')
    .columns(['model', 'user_code'])
    .execute();

  await db.schema
    .createTable('revoked_token')
    .addColumn('jti', 'text', (col) => col.primaryKey())
    .addColumn('client_id', 'text', (col) => col.notNull())
    .addColumn('revoked_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .execute();
  await db.schema
    .createIndex('revoked_token_expires_at_idx')
    .on('revoked_token')
    .column('expires_at')
    .execute();

  await db.schema
    .createTable('signing_key')
    .addColumn('kid', 'text', (col) => col.primaryKey())
    .addColumn('alg', 'text', (col) => col.notNull())
    .addColumn('public_jwk', 'jsonb', (col) => col.notNull())
    .addColumn('private_jwk', 'jsonb', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('activated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'signing_key',
    'revoked_token',
    'oidc_payload',
    'client_introspection',
    'client_grant',
    'client_secret',
    'client',
    'resource',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
