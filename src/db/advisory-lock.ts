import { sql } from 'kysely';

import type { Db } from './connect.ts';

/**
 * Runs `work` on one connection while holding a session-level advisory lock on `key`: instances sharing the
 * database do it one at a time. The lock is released even when `work` fails.
 */
export async function withAdvisoryLock<T>(
  db: Db,
  key: number,
  work: (connection: Db) => Promise<T>,
): Promise<T> {
  return db.connection().execute(async (connection) => {
    await sql`select pg_advisory_lock(${key})`.execute(connection);
    try {
      return await work(connection);
    } finally {
      await sql`select pg_advisory_unlock(${key})`.execute(connection);
    }
  });
}

/** Takes a transaction-scoped advisory lock on `key`, released when the transaction ends. */
export async function lockForTransaction(trx: Db, key: number): Promise<void> {
  await sql`select pg_advisory_xact_lock(${key})`.execute(trx);
}
