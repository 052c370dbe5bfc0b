import type { Db } from '../db/connect.ts';

export async function isTokenRevoked(db: Db, jti: string): Promise<boolean> {
  const row = await db.selectFrom('revoked_token').select('jti').where('jti', '=', jti).executeTakeFirst();
  return row !== undefined;
}

export async function insertRevokedToken(
  db: Db,
  jti: string,
  clientId: string,
  expiresAt: Date,
): Promise<void> {
  await db
    .insertInto('revoked_token')
    .values({ jti, client_id: clientId, expires_at: expiresAt })
    .onConflict((oc) => oc.column('jti').doNothing())
    .execute();
}
