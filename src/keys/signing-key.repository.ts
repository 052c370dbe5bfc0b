import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';
import type { NewSigningKeyRow, SigningKeyRow } from '../db/tables/signing-key.table.ts';

export async function findSigningKeys(db: Db): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().orderBy('activated_at', 'desc').execute();
}

/**
 * Inserts the first key unless one exists, under a transaction-scoped advisory lock so that instances starting
 * together on one database create exactly one.
 */
export async function insertFirstSigningKey(
  db: Db,
  lockKey: number,
  makeKey: () => Promise<NewSigningKeyRow>,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${lockKey})`.execute(trx);
    const existing = await trx.selectFrom('signing_key').select('kid').limit(1).executeTakeFirst();
    if (existing) return;
    await trx.insertInto('signing_key').values(await makeKey()).execute();
  });
}
