import type { Db } from '../db/connect.ts';
import type { AuditEventRow, NewAuditEventRow } from '../db/tables/audit-event.table.ts';

export async function insertAuditEvent(db: Db, row: NewAuditEventRow): Promise<AuditEventRow> {
  return db.insertInto('audit_event').values(row).returningAll().executeTakeFirstOrThrow();
}

export interface AuditEventFilter {
  actor?: string | undefined;
  action?: string | undefined;
  /** Any of these actions. */
  actions?: readonly string[] | undefined;
  targetId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
}

/** Newest first; keyset pagination on the identity column. */
export async function listAuditEvents(
  db: Db,
  filter: AuditEventFilter,
  page: { limit: number; before?: string | undefined },
): Promise<AuditEventRow[]> {
  let query = db.selectFrom('audit_event').selectAll().orderBy('id', 'desc').limit(page.limit);
  if (page.before !== undefined) query = query.where('id', '<', page.before);
  if (filter.actor !== undefined) query = query.where('actor', '=', filter.actor);
  if (filter.action !== undefined) query = query.where('action', '=', filter.action);
  if (filter.actions !== undefined) query = query.where('action', 'in', filter.actions);
  if (filter.targetId !== undefined) query = query.where('target_id', '=', filter.targetId);
  if (filter.since !== undefined) query = query.where('occurred_at', '>=', filter.since);
  if (filter.until !== undefined) query = query.where('occurred_at', '<', filter.until);
  return query.execute();
}
