import { sql, type Kysely } from 'kysely';

/**
 * A console user gets a random id of its own, never reused: a user deleted and created again under the same name
 * starts its credentials version at 0 again, so what was bound to the name and that version (device cookies, a
 * session stored by a sign-in that raced the deletion) would carry over to the new user. Bound to the id, it does
 * not. gen_random_uuid() (122 random bits) is built into PostgreSQL 13+ and PGlite; being volatile, it gives every
 * existing row an id of its own, so device cookies issued before this migration stop counting.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('admin_user')
    .addColumn('id', 'uuid', (col) => col.notNull().defaultTo(sql`gen_random_uuid()`))
    .execute();
  await db.schema.alterTable('admin_user').addUniqueConstraint('admin_user_id_key', ['id']).execute();

  // A session names the user it signed in by id too: one stored for a deleted user cannot open for a new one.
  await db.schema
    .alterTable('console_session')
    .addColumn('user_id', 'uuid', (col) => col.references('admin_user.id').onDelete('cascade'))
    .execute();
  await sql`update console_session s set user_id = u.id from admin_user u where u.name = s.user_name`.execute(
    db,
  );
  // None should be left without one (user_name references admin_user); any that were would end, not fail this.
  await sql`delete from console_session where user_id is null`.execute(db);
  await db.schema
    .alterTable('console_session')
    .alterColumn('user_id', (col) => col.setNotNull())
    .execute();
  await db.schema
    .createIndex('console_session_user_id_idx')
    .on('console_session')
    .column('user_id')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('console_session').dropColumn('user_id').execute();
  await db.schema.alterTable('admin_user').dropColumn('id').execute();
}
