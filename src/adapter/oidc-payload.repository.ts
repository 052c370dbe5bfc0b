import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';

export interface StoredPayload {
  payload: Record<string, unknown>;
  consumed: boolean;
}

export async function upsertPayload(
  db: Db,
  row: {
    model: string;
    id: string;
    payload: Record<string, unknown>;
    grantId: string | null;
    uid: string | null;
    userCode: string | null;
    expiresAt: Date | null;
  },
): Promise<void> {
  const values = {
    model: row.model,
    id: row.id,
    payload: JSON.stringify(row.payload),
    grant_id: row.grantId,
    uid: row.uid,
    user_code: row.userCode,
    expires_at: row.expiresAt,
  };
  await db
    .insertInto('oidc_payload')
    .values(values)
    .onConflict((oc) =>
      oc.columns(['model', 'id']).doUpdateSet({
        payload: values.payload,
        grant_id: values.grant_id,
        uid: values.uid,
        user_code: values.user_code,
        expires_at: values.expires_at,
      }),
    )
    .execute();
}

type Lookup =
  { column: 'id'; value: string } | { column: 'uid'; value: string } | { column: 'user_code'; value: string };

export async function findPayload(
  db: Db,
  model: string,
  lookup: Lookup,
  now: Date,
): Promise<StoredPayload | undefined> {
  const row = await db
    .selectFrom('oidc_payload')
    .select(['payload', 'consumed_at'])
    .where('model', '=', model)
    .where(lookup.column, '=', lookup.value)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirst();
  return row && { payload: row.payload, consumed: row.consumed_at !== null };
}

export async function consumePayload(db: Db, model: string, id: string, now: Date): Promise<void> {
  await db
    .updateTable('oidc_payload')
    .set({ consumed_at: now })
    .where('model', '=', model)
    .where('id', '=', id)
    .execute();
}

export async function deletePayload(db: Db, model: string, id: string): Promise<void> {
  await db.deleteFrom('oidc_payload').where('model', '=', model).where('id', '=', id).execute();
}

export async function deletePayloadsByGrantId(db: Db, model: string, grantId: string): Promise<void> {
  await db.deleteFrom('oidc_payload').where('model', '=', model).where('grant_id', '=', grantId).execute();
}

/**
 * Records a one-time value. Atomic: of any number of concurrent calls with one id, exactly one returns true.
 * An expired row that the purge has not removed yet counts as absent.
 */
export async function insertReplayMarker(
  db: Db,
  model: string,
  id: string,
  expiresAt: Date,
  now: Date,
): Promise<boolean> {
  const inserted = await db
    .insertInto('oidc_payload')
    .values({ model, id, payload: '{}', grant_id: null, uid: null, user_code: null, expires_at: expiresAt })
    .onConflict((oc) =>
      oc
        .columns(['model', 'id'])
        .doUpdateSet({ expires_at: expiresAt })
        .where('oidc_payload.expires_at', '<=', now),
    )
    .returning('id')
    .executeTakeFirst();
  return inserted !== undefined;
}

export async function extendReplayMarker(db: Db, model: string, id: string, expiresAt: Date): Promise<void> {
  await db
    .updateTable('oidc_payload')
    .set({ expires_at: sql<Date>`greatest(expires_at, ${expiresAt})` })
    .where('model', '=', model)
    .where('id', '=', id)
    .execute();
}
