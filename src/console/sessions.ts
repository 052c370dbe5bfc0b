import { createHash, randomBytes } from 'node:crypto';

import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';
import type { AdminRole } from '../db/tables/admin-user.table.ts';

export interface ConsoleSession {
  idHash: string;
  userName: string;
  role: AdminRole;
  csrf: string;
  notice: string | null;
  lastSeenAt: Date;
}

/** Only the hash of a session id is stored: the ids are 256 random bits, so a fast hash is enough. */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * `user`: the user as read for checking the credentials. A credential change committed after that read, even while
 * they were being checked, ends the session (see findSession); the user deleted meanwhile fails the insert (a
 * foreign key violation), even when created again under the same name: the session names the user's id.
 */
export async function createSession(
  db: Db,
  user: { id: string; name: string; credentials_version: number },
  now: Date,
  lifetimeSeconds: number,
): Promise<{ id: string }> {
  const id = newSecret();
  await db
    .insertInto('console_session')
    .values({
      id_hash: hashSessionId(id),
      user_name: user.name,
      user_id: user.id,
      credentials_version: user.credentials_version,
      csrf_token: newSecret(),
      notice: null,
      created_at: now,
      last_seen_at: now,
      expires_at: new Date(now.getTime() + lifetimeSeconds * 1000),
    })
    .execute();
  return { id };
}

/**
 * The live session with this id: not past its absolute expiry, used within the idle timeout, and its user (the one
 * it was signed in by, not another of the same name) still enabled with the same credentials. Anything else
 * answers undefined.
 */
export async function findSession(
  db: Db,
  id: string,
  now: Date,
  idleSeconds: number,
): Promise<ConsoleSession | undefined> {
  const row = await db
    .selectFrom('console_session as s')
    .innerJoin('admin_user as u', (join) =>
      join.onRef('u.name', '=', 's.user_name').onRef('u.id', '=', 's.user_id'),
    )
    .select(['s.id_hash', 's.user_name', 's.csrf_token', 's.notice', 's.last_seen_at', 'u.role'])
    .where('s.id_hash', '=', hashSessionId(id))
    .where('s.expires_at', '>', now)
    .where('s.last_seen_at', '>', new Date(now.getTime() - idleSeconds * 1000))
    .where('u.disabled_at', 'is', null)
    .whereRef('s.credentials_version', '=', 'u.credentials_version')
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    idHash: row.id_hash,
    userName: row.user_name,
    role: row.role,
    csrf: row.csrf_token,
    notice: row.notice,
    lastSeenAt: row.last_seen_at,
  };
}

/** Marks the session used now, and takes (clears) or sets its notice. */
export async function touchSession(
  db: Db,
  idHash: string,
  now: Date,
  notice: { set: string } | 'clear' | 'keep',
): Promise<void> {
  await db
    .updateTable('console_session')
    .set({
      last_seen_at: now,
      ...(notice === 'keep' ? {} : { notice: notice === 'clear' ? null : notice.set }),
    })
    .where('id_hash', '=', idHash)
    .execute();
}

/** The latest one-time form tokens a session remembers. */
const SENT_FORMS_KEPT = 50;

/**
 * Marks a one-time form token as sent for the session; false when it was sent before. One statement, so two
 * concurrent posts of the same form cannot both pass.
 */
export async function claimFormToken(db: Db, idHash: string, token: string): Promise<boolean> {
  const result = await db
    .updateTable('console_session')
    .set({
      sent_forms: sql<
        string[]
      >`(array_append(sent_forms, ${token}))[greatest(1, cardinality(sent_forms) + 2 - ${SENT_FORMS_KEPT}):]`,
    })
    .where('id_hash', '=', idHash)
    .where(sql<boolean>`not (${token} = any(sent_forms))`)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteSession(db: Db, idHash: string): Promise<void> {
  await db.deleteFrom('console_session').where('id_hash', '=', idHash).execute();
}

/** Sessions past their absolute expiry or idle too long; run at each sign-in (the only place sessions start). */
export async function purgeSessions(db: Db, now: Date, idleSeconds: number): Promise<number> {
  const result = await db
    .deleteFrom('console_session')
    .where((eb) =>
      eb.or([
        eb('expires_at', '<=', now),
        eb('last_seen_at', '<=', new Date(now.getTime() - idleSeconds * 1000)),
      ]),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
