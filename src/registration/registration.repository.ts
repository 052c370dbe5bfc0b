import type { Db } from '../db/connect.ts';
import type {
  ClientRegistrationRow,
  NewClientRegistrationRow,
  NewRegistrationTokenRow,
  RegistrationTokenRow,
} from '../db/tables/registration.table.ts';

export async function insertRegistrationToken(
  db: Db,
  row: NewRegistrationTokenRow,
): Promise<RegistrationTokenRow> {
  return db.insertInto('registration_token').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function listRegistrationTokens(db: Db): Promise<RegistrationTokenRow[]> {
  return db
    .selectFrom('registration_token')
    .selectAll()
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .execute();
}

export async function deleteRegistrationToken(db: Db, id: string): Promise<RegistrationTokenRow | undefined> {
  return db.deleteFrom('registration_token').where('id', '=', id).returningAll().executeTakeFirst();
}

/**
 * Takes one use of a token in a single statement: of two registrations racing for the last use, the second
 * waits for the first's row lock, then finds no use left.
 */
export async function consumeRegistrationToken(
  db: Db,
  tokenHash: string,
  now: Date,
): Promise<RegistrationTokenRow | undefined> {
  return db
    .updateTable('registration_token')
    .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
    .where('token_hash', '=', tokenHash)
    .where('uses_left', '>', 0)
    .where('expires_at', '>', now)
    .returningAll()
    .executeTakeFirst();
}

/** Read without consuming: only to say, in the audit log, why a token was refused. */
export async function findRegistrationTokenByHash(
  db: Db,
  tokenHash: string,
): Promise<RegistrationTokenRow | undefined> {
  return db
    .selectFrom('registration_token')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
}

export async function insertClientRegistration(db: Db, row: NewClientRegistrationRow): Promise<void> {
  await db.insertInto('client_registration').values(row).execute();
}

/**
 * Replaces the registration access token only if the presented one is still current, so two requests with the
 * same token cannot both rotate it.
 */
export async function rotateRegistrationAccessToken(
  db: Db,
  clientId: string,
  presentedHash: string,
  nextHash: string,
): Promise<ClientRegistrationRow | undefined> {
  return db
    .updateTable('client_registration')
    .set({ access_token_hash: nextHash })
    .where('client_id', '=', clientId)
    .where('access_token_hash', '=', presentedHash)
    .returningAll()
    .executeTakeFirst();
}

export async function findClientRegistration(
  db: Db,
  clientId: string,
  accessTokenHash: string,
): Promise<ClientRegistrationRow | undefined> {
  return db
    .selectFrom('client_registration')
    .selectAll()
    .where('client_id', '=', clientId)
    .where('access_token_hash', '=', accessTokenHash)
    .executeTakeFirst();
}
