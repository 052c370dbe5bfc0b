import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // RFC 7638 thumbprints of the only keys this client's DPoP proofs may use; empty: any key.
  await db.schema
    .alterTable('client')
    .addColumn('dpop_jkts', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'::text[]`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('client').dropColumn('dpop_jkts').execute();
}
