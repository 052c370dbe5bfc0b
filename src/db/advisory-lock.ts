import { sql } from 'kysely';

import type { Db } from './connect.ts';

/** Takes a transaction-scoped advisory lock on `key`, released when the transaction ends. */
export async function lockForTransaction(trx: Db, key: number): Promise<void> {
  await sql`select pg_advisory_xact_lock(${key})`.execute(trx);
}
