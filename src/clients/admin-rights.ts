import { lockForTransaction } from '../db/advisory-lock.ts';
import type { Db } from '../db/connect.ts';
import { MayflyError } from '../errors.ts';
import { countAdminWriters } from './client.repository.ts';

/** Scopes of the admin API's own (reserved) resource. */
export const ADMIN_SCOPES = { read: 'admin:read', write: 'admin:write' } as const;
export type AdminScope = (typeof ADMIN_SCOPES)[keyof typeof ADMIN_SCOPES];

const ADMIN_GUARD_LOCK = 0x6d66_7004;

/**
 * Refuses a change that would leave no enabled client able to administer Mayfly: nobody could undo it without
 * touching the database. Changes that could race each other are serialised by a transaction-scoped lock.
 */
export async function refuseRemovingLastAdmin(trx: Db, clientId: string, change: string): Promise<void> {
  await lockForTransaction(trx, ADMIN_GUARD_LOCK);
  const all = await countAdminWriters(trx, ADMIN_SCOPES.write, undefined);
  const others = await countAdminWriters(trx, ADMIN_SCOPES.write, clientId);
  if (all > others && others === 0) {
    throw new MayflyError(
      'last_admin_client',
      `client ${clientId} is the last enabled client with ${ADMIN_SCOPES.write}; ${change} it would lock every ` +
        'administrator out. Create another admin client first.',
    );
  }
}
