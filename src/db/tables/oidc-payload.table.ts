import type { ColumnType } from 'kysely';

export interface OidcPayloadTable {
  model: string;
  /** SHA-256 of the model id, never the id itself: for several models the id is a bearer token. */
  id: string;
  payload: ColumnType<Record<string, unknown>, string, string>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  consumed_at: Date | null;
  expires_at: Date | null;
}
