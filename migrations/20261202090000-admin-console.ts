import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // People who administer Mayfly in the web console. Only a scrypt hash of the password is kept, and the TOTP
  // seed (when enrolled) is sealed with the KEK like the private signing keys.
  await db.schema
    .createTable('admin_user')
    .addColumn('name', 'text', (col) => col.primaryKey())
    .addColumn('password_hash', 'text', (col) => col.notNull())
    .addColumn('role', 'text', (col) => col.notNull())
    .addColumn('totp_secret', 'text')
    // The last TOTP time step accepted: a code is good once (RFC 6238 §5.2).
    .addColumn('totp_last_step', 'bigint')
    // Wrong codes given after the right password, in a row: the second factor locks at a threshold.
    .addColumn('totp_failures', 'integer', (col) => col.notNull().defaultTo(0))
    // Raised by every new password, new or removed second factor and disabling. A session holds the version of
    // the credentials it was signed in with and ends when they differ, even when the change raced the sign-in.
    .addColumn('credentials_version', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('disabled_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('admin_user_role_check', sql`role in ('read', 'write')`)
    .addCheckConstraint('admin_user_name_check', sql`name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'`)
    .execute();

  // Console sessions. The cookie holds a random id; only its SHA-256 is stored, so a copy of the table signs no
  // one in. A session ends when idle for too long, at its absolute expiry, or when its user is disabled or deleted.
  await db.schema
    .createTable('console_session')
    .addColumn('id_hash', 'text', (col) => col.primaryKey())
    .addColumn('user_name', 'text', (col) =>
      col.notNull().references('admin_user.name').onDelete('cascade').onUpdate('cascade'),
    )
    .addColumn('credentials_version', 'integer', (col) => col.notNull())
    .addColumn('csrf_token', 'text', (col) => col.notNull())
    // A message for the next page shown (after a change and its redirect), then cleared.
    .addColumn('notice', 'text')
    // One-time tokens of forms already sent (the latest 50): a form whose answer must not repeat (a new client's
    // secret) is refused when sent again, e.g. by reloading its answer.
    .addColumn('sent_forms', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull())
    .addColumn('last_seen_at', 'timestamptz', (col) => col.notNull())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .execute();
  await db.schema
    .createIndex('console_session_user_name_idx')
    .on('console_session')
    .column('user_name')
    .execute();
  await db.schema
    .createIndex('console_session_expires_at_idx')
    .on('console_session')
    .column('expires_at')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('console_session').execute();
  await db.schema.dropTable('admin_user').execute();
}
