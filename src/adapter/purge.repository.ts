import { sql, type RawBuilder } from 'kysely';

import type { Db } from '../db/connect.ts';

/**
 * Deletes up to `limit` expired rows of one table, in its own short transaction so a large backlog never holds
 * long locks. Returns undefined when another instance holds the purge lock (transaction-scoped, so it is safe
 * behind a transaction-pooling pgbouncer).
 */
export function purgeExpiredBatch(
  db: Db,
  table: 'oidc_payload' | 'replay_marker' | 'revoked_token',
  now: Date,
  limit: number,
  lockKey: number,
): Promise<number | undefined> {
  return purgeBatch(
    db,
    sql`delete from ${sql.table(table)} where ctid in (
    select ctid from ${sql.table(table)} where expires_at <= ${now} limit ${limit})`,
    lockKey,
  );
}

/**
 * Deletes up to `limit` rate-limit counters whose window has ended. Their expiry is in epoch milliseconds of
 * real time, as the rate limiter writes it. Same lock as the other purges.
 */
export function purgeRateLimitBatch(
  db: Db,
  nowMs: number,
  limit: number,
  lockKey: number,
): Promise<number | undefined> {
  return purgeBatch(
    db,
    sql`delete from rate_limit where key in (
    select key from rate_limit where expire <= ${nowMs} limit ${limit})`,
    lockKey,
  );
}

async function purgeBatch(
  db: Db,
  deletion: RawBuilder<unknown>,
  lockKey: number,
): Promise<number | undefined> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{
      locked: boolean;
    }>`select pg_try_advisory_xact_lock(${lockKey}) as locked`.execute(trx);
    if (!rows[0]?.locked) return undefined;
    const deleted = await deletion.execute(trx);
    return Number(deleted.numAffectedRows ?? 0n);
  });
}
