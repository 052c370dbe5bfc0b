import type { Db } from '../db/connect.ts';
import { statement, type Statements } from '../db/statements.ts';

const FIND_REVOKED = statement(
  'find_revoked_jtis',
  'select jti from revoked_token where jti = any($1::text[])',
);

/** For each `jti`, in order, whether its token was revoked: one statement for many. */
export async function findRevoked(statements: Statements, jtis: readonly string[]): Promise<boolean[]> {
  const rows = await statements.query<{ jti: string }>(FIND_REVOKED, [[...new Set(jtis)]]);
  const revoked = new Set(rows.map((row) => row.jti));
  return jtis.map((jti) => revoked.has(jti));
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
