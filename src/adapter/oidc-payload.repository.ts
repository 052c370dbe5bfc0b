import type { Db } from '../db/connect.ts';
import { statement, type Statements } from '../db/statements.ts';

export interface StoredPayload {
  payload: Record<string, unknown>;
  consumed: boolean;
}

export interface PayloadRow {
  model: string;
  id: string;
  payload: Record<string, unknown>;
  grantId: string | null;
  uid: string | null;
  userCode: string | null;
  expiresAt: Date | null;
}

const UPSERT = statement(
  'upsert_payloads',
  `insert into oidc_payload (model, id, payload, grant_id, uid, user_code, expires_at)
   select model, id, payload::jsonb, grant_id, uid, user_code, expires_at
   from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
     as row (model, id, payload, grant_id, uid, user_code, expires_at)
   on conflict (model, id) do update set payload = excluded.payload, grant_id = excluded.grant_id,
     uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at`,
);

/** Stores many payloads in one statement; of two rows with one (model, id) in a batch, the later wins. */
export async function upsertPayloads(statements: Statements, rows: readonly PayloadRow[]): Promise<void> {
  const latest = new Map(rows.map((row) => [`${row.model}\n${row.id}`, row]));
  const unique = [...latest.values()];
  await statements.query(UPSERT, [
    unique.map((row) => row.model),
    unique.map((row) => row.id),
    unique.map((row) => JSON.stringify(row.payload)),
    unique.map((row) => row.grantId),
    unique.map((row) => row.uid),
    unique.map((row) => row.userCode),
    unique.map((row) => row.expiresAt?.toISOString() ?? null),
  ]);
}

const FIND_BY_IDS = statement(
  'find_payloads_by_id',
  `select id, payload, consumed_at is not null as consumed from oidc_payload
   where model = $1 and id = any($2::text[]) and (expires_at is null or expires_at > $3::timestamptz)`,
);

/** Unexpired payloads of one model by id, in one statement; undefined where none is stored. */
export async function findPayloadsById(
  statements: Statements,
  model: string,
  ids: readonly string[],
  now: Date,
): Promise<(StoredPayload | undefined)[]> {
  const rows = await statements.query<{ id: string; payload: Record<string, unknown>; consumed: boolean }>(
    FIND_BY_IDS,
    [model, [...new Set(ids)], now.toISOString()],
  );
  const found = new Map(rows.map((row) => [row.id, { payload: row.payload, consumed: row.consumed }]));
  return ids.map((id) => found.get(id));
}

/** Lookups other than by id (which goes through findPayloadsById). */
export type PayloadLookup = { column: 'uid'; value: string } | { column: 'user_code'; value: string };

export async function findPayload(
  db: Db,
  model: string,
  lookup: PayloadLookup,
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
