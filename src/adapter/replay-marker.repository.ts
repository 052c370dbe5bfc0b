import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';
import { statement, type Statements } from '../db/statements.ts';

export interface ReplayClaim {
  id: string;
  expiresAt: Date;
  now: Date;
}

/**
 * Claims many one-time values in one statement. A value is claimed when no marker holds it, or only one that has
 * expired (the purge has not removed it yet). Atomic per value across instances: of concurrent claims of one
 * value, exactly one statement inserts it.
 */
const CLAIM = statement(
  'claim_replay_markers',
  `insert into replay_marker (id, expires_at)
   select id, $2::timestamptz from unnest($1::text[]) as claim (id)
   on conflict (id) do update set expires_at = excluded.expires_at
   where replay_marker.expires_at <= $3::timestamptz
   returning id`,
);

/**
 * For each claim, in order, whether it won. A value named twice in one batch is won at most by its first claim:
 * the later ones are replays, as they would be in separate statements.
 */
export async function claimReplayMarkers(
  statements: Statements,
  claims: readonly ReplayClaim[],
): Promise<boolean[]> {
  const ids = [...new Set(claims.map((claim) => claim.id))];
  // One expiry for the batch (the latest asked for), and "expired" judged by the earliest clock reading.
  const expiresAt = new Date(Math.max(...claims.map((claim) => claim.expiresAt.getTime())));
  const now = new Date(Math.min(...claims.map((claim) => claim.now.getTime())));
  const rows = await statements.query<{ id: string }>(CLAIM, [
    ids,
    expiresAt.toISOString(),
    now.toISOString(),
  ]);
  const won = new Set(rows.map((row) => row.id));
  return claims.map((claim) => won.delete(claim.id));
}

/** A value valid for longer than the usual window keeps its marker until it expires. */
export async function extendReplayMarker(db: Db, id: string, expiresAt: Date): Promise<void> {
  await db
    .updateTable('replay_marker')
    .set({ expires_at: sql<Date>`greatest(expires_at, ${expiresAt})` })
    .where('id', '=', id)
    .execute();
}

export async function deleteReplayMarker(db: Db, id: string): Promise<void> {
  await db.deleteFrom('replay_marker').where('id', '=', id).execute();
}
