import type { Db } from '../db/connect.ts';
import type { NewSigningKeyRow, SigningKeyRow, SigningKeyUpdate } from '../db/tables/signing-key.table.ts';

export async function findSigningKeys(db: Db): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().orderBy('activates_at', 'desc').orderBy('kid').execute();
}

/** The rows a change is decided on, locked until the transaction ends. */
export async function lockSigningKeys(trx: Db): Promise<SigningKeyRow[]> {
  return trx
    .selectFrom('signing_key')
    .selectAll()
    .orderBy('activates_at', 'desc')
    .orderBy('kid')
    .forUpdate()
    .execute();
}

export async function insertSigningKey(trx: Db, row: NewSigningKeyRow): Promise<SigningKeyRow> {
  return trx.insertInto('signing_key').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function updateSigningKey(trx: Db, kid: string, change: SigningKeyUpdate): Promise<SigningKeyRow> {
  return trx
    .updateTable('signing_key')
    .set(change)
    .where('kid', '=', kid)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteSigningKey(trx: Db, kid: string): Promise<void> {
  await trx.deleteFrom('signing_key').where('kid', '=', kid).execute();
}
