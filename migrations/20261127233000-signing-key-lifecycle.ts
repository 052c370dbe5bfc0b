import { sql, type Kysely } from 'kysely';

/**
 * Signing keys get a lifecycle (published → active → retired → removed, or revoked) and their private halves are
 * sealed under a key-encryption key. Keys stored before this migration keep their clear private JWK until the
 * server, which holds the KEK, seals it at start-up: no key is lost and none stays in clear.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('signing_key').renameColumn('activated_at', 'activates_at').execute();
  await db.schema
    .alterTable('signing_key')
    .addColumn('published_at', 'timestamptz')
    .addColumn('retires_at', 'timestamptz')
    .addColumn('removes_at', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('recorded_phase', 'text', (col) => col.notNull().defaultTo('active'))
    .addColumn('sealed_private_jwk', 'text')
    .execute();
  await sql`update signing_key set published_at = created_at`.execute(db);
  await db.schema
    .alterTable('signing_key')
    .alterColumn('published_at', (col) => col.setNotNull())
    .execute();
  await db.schema
    .alterTable('signing_key')
    .alterColumn('activates_at', (col) => col.dropDefault())
    .execute();
  await db.schema
    .alterTable('signing_key')
    .alterColumn('private_jwk', (col) => col.dropNotNull())
    .execute();
  await db.schema
    .alterTable('signing_key')
    .addCheckConstraint('signing_key_private_half', sql`num_nonnulls(private_jwk, sealed_private_jwk) = 1`)
    .execute();
  await db.schema
    .alterTable('signing_key')
    .addCheckConstraint(
      'signing_key_recorded_phase',
      sql`recorded_phase in ('published', 'active', 'retired', 'revoked')`,
    )
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  // Keys created or sealed since exist only sealed: dropping the column would destroy them.
  const sealedOnly = await sql<{
    n: number;
  }>`select count(*)::int as n from signing_key where private_jwk is null`.execute(db);
  if ((sealedOnly.rows[0]?.n ?? 0) > 0) {
    throw new Error(
      'signing keys exist only sealed under the KEK; reverting this migration would destroy them',
    );
  }
  await db.schema.alterTable('signing_key').dropConstraint('signing_key_recorded_phase').execute();
  await db.schema.alterTable('signing_key').dropConstraint('signing_key_private_half').execute();
  await db.schema
    .alterTable('signing_key')
    .dropColumn('sealed_private_jwk')
    .dropColumn('recorded_phase')
    .dropColumn('revoked_at')
    .dropColumn('removes_at')
    .dropColumn('retires_at')
    .dropColumn('published_at')
    .execute();
  await db.schema.alterTable('signing_key').renameColumn('activates_at', 'activated_at').execute();
}
