import { z } from 'zod';

import type { Clock } from '../clock.ts';
import type { Db } from '../db/connect.ts';
import type { AuditEventRow } from '../db/tables/audit-event.table.ts';
import type { Audit } from '../observability/audit.ts';
import { insertAuditEvent } from './audit-event.repository.ts';

/** Who makes a change: an admin client (its id), a console user (`user:<name>`), or Mayfly itself (`system:<what>`). */
export interface Actor {
  id: string;
}

export interface Change {
  /** `<target type>.<verb>`, e.g. `client.rotate_secret`. */
  action: string;
  targetType: 'resource' | 'client' | 'signing_key' | 'admin_user';
  targetId: string;
  /** Representations as the admin API shows them: never a secret value or hash. */
  before: object | null;
  after: object | null;
}

export const AuditEvent = z
  .object({
    id: z.string(),
    occurred_at: z.iso.datetime(),
    actor: z.string(),
    action: z.string(),
    target_type: z.string(),
    target_id: z.string(),
    before: z.record(z.string(), z.unknown()).nullable(),
    after: z.record(z.string(), z.unknown()).nullable(),
  })
  .meta({ id: 'AuditEvent' });
export type AuditEvent = z.output<typeof AuditEvent>;

export function toAuditEvent(row: AuditEventRow): AuditEvent {
  return {
    // bigint: node-postgres answers a string, PGlite a number.
    id: String(row.id),
    occurred_at: row.occurred_at.toISOString(),
    actor: row.actor,
    action: row.action,
    target_type: row.target_type,
    target_id: row.target_id,
    before: row.before as Record<string, unknown> | null,
    after: row.after as Record<string, unknown> | null,
  };
}

export interface ChangeDeps {
  db: Db;
  clock: Clock;
  audit: Audit;
}

/**
 * Runs one admin change in a transaction together with its audit event, so that no change is ever stored
 * without its record; the log line follows once both are committed.
 */
export async function commitChange<T>(
  deps: ChangeDeps,
  actor: Actor,
  /**
   * `change: null` when nothing changed (e.g. disabling a disabled client): nothing is recorded. One operation may
   * make several changes (a key rotation publishes one key and schedules another), each recorded.
   */
  work: (trx: Db, now: Date) => Promise<{ result: T; change: Change | readonly Change[] | null }>,
): Promise<T> {
  const now = deps.clock.now();
  // Inside a caller's transaction (the bootstrap), the change joins it.
  const inTransaction = <R>(fn: (trx: Db) => Promise<R>): Promise<R> =>
    deps.db.isTransaction ? fn(deps.db) : deps.db.transaction().execute(fn);
  const { result, events } = await inTransaction(async (trx) => {
    const { result, change } = await work(trx, now);
    const changes: readonly Change[] = change === null ? [] : Array.isArray(change) ? change : [change];
    const events: AuditEvent[] = [];
    for (const one of changes) {
      const row = await insertAuditEvent(trx, {
        occurred_at: now,
        actor: actor.id,
        action: one.action,
        target_type: one.targetType,
        target_id: one.targetId,
        before: one.before && JSON.stringify(one.before),
        after: one.after && JSON.stringify(one.after),
      });
      events.push(toAuditEvent(row));
    }
    return { result, events };
  });
  for (const event of events) deps.audit.adminChange(event);
  return result;
}
