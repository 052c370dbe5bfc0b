import type { ColumnType, Selectable } from 'kysely';

export type AdminRole = 'read' | 'write';

/** A person who administers Mayfly in the web console. */
export interface AdminUserTable {
  /**
   * A random UUID the database gives each user when created, never changed: what is bound to one user (device
   * cookies, sessions) names it, as a user deleted and created again under the same name is another person.
   */
  id: ColumnType<string, never, never>;
  name: string;
  /** `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` (see src/console/password.ts). */
  password_hash: string;
  role: AdminRole;
  /** The TOTP seed sealed with the KEK; null: no second factor. */
  totp_secret: string | null;
  /** bigint: node-postgres answers a string, PGlite a number. */
  totp_last_step: ColumnType<string | number | null, number | null, number | null>;
  totp_failures: ColumnType<number, number | undefined, number>;
  credentials_version: ColumnType<number, number | undefined, number>;
  disabled_at: Date | null;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: Date;
}
export type AdminUserRow = Selectable<AdminUserTable>;

/** A signed-in console session; the cookie holds the id, the table only its hash. */
export interface ConsoleSessionTable {
  id_hash: string;
  user_name: string;
  /** admin_user.id: a session of a deleted user never opens for one created again under the same name. */
  user_id: string;
  credentials_version: number;
  csrf_token: string;
  notice: string | null;
  sent_forms: ColumnType<string[], string[] | undefined, string[]>;
  created_at: Date;
  last_seen_at: Date;
  expires_at: Date;
}
