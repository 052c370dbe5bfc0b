import type { ColumnType } from 'kysely';

/** JWT access tokens are not stored, so a revoked one is remembered by `jti` until it would have expired. */
export interface RevokedTokenTable {
  jti: string;
  client_id: string;
  revoked_at: ColumnType<Date, never, never>;
  expires_at: Date;
}
