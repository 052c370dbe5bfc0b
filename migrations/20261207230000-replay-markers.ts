import { sql, type Kysely } from 'kysely';

/**
 * One-time values (DPoP proof and client assertion `jti`s, as the provider hashes them) move to a narrow table of
 * their own: every token request writes one, so each costs two index entries instead of five and no JSON. The
 * columns of oidc_payload that only grants and interactive flows fill are indexed only where they are set.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('replay_marker')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .execute();
  await db.schema
    .createIndex('replay_marker_expires_at_idx')
    .on('replay_marker')
    .column('expires_at')
    .execute();
  // Markers still standing keep refusing their values after the upgrade.
  await sql`insert into replay_marker (id, expires_at)
    select id, expires_at from oidc_payload
    where model = 'ReplayDetection' and expires_at is not null and expires_at > now()`.execute(db);
  await sql`delete from oidc_payload where model = 'ReplayDetection'`.execute(db);

  for (const column of ['grant_id', 'uid', 'user_code']) {
    await db.schema.dropIndex(`oidc_payload_${column}_idx`).execute();
    await db.schema
      .createIndex(`oidc_payload_${column}_idx`)
      .on('oidc_payload')
      .columns(['model', column])
      .where(sql.ref(column), 'is not', null)
      .execute();
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const column of ['grant_id', 'uid', 'user_code']) {
    await db.schema.dropIndex(`oidc_payload_${column}_idx`).execute();
    await db.schema
      .createIndex(`oidc_payload_${column}_idx`)
      .on('oidc_payload')
      .columns(['model', column])
      .execute();
  }
  await sql`insert into oidc_payload (model, id, payload, expires_at)
    select 'ReplayDetection', id, '{}'::jsonb, expires_at from replay_marker
    on conflict (model, id) do nothing`.execute(db);
  await db.schema.dropTable('replay_marker').execute();
}
