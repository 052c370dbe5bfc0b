import { sql } from 'kysely';

import type { Db } from './connect.ts';

/** Takes a transaction-scoped advisory lock on `key`, released when the transaction ends. */
export async function lockForTransaction(trx: Db, key: number): Promise<void> {
  await sql`select pg_advisory_xact_lock(${key})`.execute(trx);
}

/** Takes a transaction-scoped advisory lock on `key` if it is free; false when another session holds it. */
export async function tryLockForTransaction(trx: Db, key: number): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${key}) as locked`.execute(
    trx,
  );
  return rows[0]?.locked === true;
}
