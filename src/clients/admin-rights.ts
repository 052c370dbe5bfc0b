import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';
import { MayflyError } from '../errors.ts';

/** Scopes of the admin API's own (reserved) resource. */
export const ADMIN_SCOPES = { read: 'admin:read', write: 'admin:write' } as const;
export type AdminScope = (typeof ADMIN_SCOPES)[keyof typeof ADMIN_SCOPES];

const ADMIN_GUARD_LOCK = 0x6d66_7004;

async function countAdminWriters(db: Db, exceptClientId: string | undefined): Promise<number> {
  let query = db
    .selectFrom('client_grant as g')
    .innerJoin('resource as r', 'r.id', 'g.resource_id')
    .innerJoin('client as c', 'c.id', 'g.client_id')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('r.reserved', '=', true)
    .where('c.disabled_at', 'is', null)
    .where(sql<boolean>`${ADMIN_SCOPES.write} = any(g.scopes)`);
  if (exceptClientId !== undefined) query = query.where('g.client_id', '<>', exceptClientId);
  const row = await query.executeTakeFirstOrThrow();
  return Number(row.count);
}

/**
 * Refuses a change that would leave no enabled client able to administer Mayfly: nobody could undo it without
 * touching the database. Changes that could race each other are serialised by a transaction-scoped lock.
 */
export async function refuseRemovingLastAdmin(trx: Db, clientId: string, change: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(${ADMIN_GUARD_LOCK})`.execute(trx);
  const all = await countAdminWriters(trx, undefined);
  const others = await countAdminWriters(trx, clientId);
  if (all > others && others === 0) {
    throw new MayflyError(
      'last_admin_client',
      `client ${clientId} is the last enabled client with ${ADMIN_SCOPES.write}; ${change} it would lock every ` +
        'administrator out. Create another admin client first.',
    );
  }
}
