import type { ColumnType, Insertable, JSONColumnType, Selectable } from 'kysely';

/** One change made through the admin plane: who, what (before and after, never a secret), when. */
export interface AuditEventTable {
  /** bigint identity: node-postgres returns a string, PGlite a number. */
  id: ColumnType<string | number, never, never>;
  occurred_at: Date;
  /** The admin client id, or `system:<what>` for changes Mayfly makes itself. */
  actor: string;
  /** `<target type>.<verb>`, e.g. `client.disable`. */
  action: string;
  target_type: string;
  target_id: string;
  before: JSONColumnType<object | null, string | null, never>;
  after: JSONColumnType<object | null, string | null, never>;
}

export type AuditEventRow = Selectable<AuditEventTable>;
export type NewAuditEventRow = Insertable<AuditEventTable>;
