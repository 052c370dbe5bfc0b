import { sql, type Kysely } from 'kysely';

/**
 * `client.version` changes with everything the token path reads about a client: its row, secrets, grants,
 * introspection rights, and the resources those name. An instance may then keep what it read about a client and
 * check, with a one-row lookup, that it is still current; a change made through any instance is seen at once.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('client')
    .addColumn('version', 'bigint', (col) => col.notNull().defaultTo(1))
    .execute();
  await sql`
    create function mayfly_client_changed() returns trigger language plpgsql as $$
    begin
      new.version := old.version + 1;
      return new;
    end $$`.execute(db);
  await sql`
    create trigger client_version before update on client
    for each row when (old.* is distinct from new.*) execute function mayfly_client_changed()`.execute(db);
  await sql`
    create function mayfly_client_part_changed() returns trigger language plpgsql as $$
    begin
      if tg_op <> 'INSERT' then
        update client set version = version + 1 where id = old.client_id;
      end if;
      if tg_op <> 'DELETE' and (tg_op = 'INSERT' or new.client_id is distinct from old.client_id) then
        update client set version = version + 1 where id = new.client_id;
      end if;
      return null;
    end $$`.execute(db);
  for (const table of ['client_secret', 'client_grant', 'client_introspection']) {
    await sql`
      create trigger ${sql.raw(`${table}_version`)} after insert or update or delete on ${sql.table(table)}
      for each row execute function mayfly_client_part_changed()`.execute(db);
  }
  await sql`
    create function mayfly_resource_changed() returns trigger language plpgsql as $$
    begin
      update client set version = version + 1
       where id in (select client_id from client_grant where resource_id = new.id
                    union select client_id from client_introspection where resource_id = new.id);
      return null;
    end $$`.execute(db);
  await sql`
    create trigger resource_version after update on resource
    for each row when (old.* is distinct from new.*) execute function mayfly_resource_changed()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger resource_version on resource`.execute(db);
  await sql`drop function mayfly_resource_changed()`.execute(db);
  for (const table of ['client_secret', 'client_grant', 'client_introspection']) {
    await sql`drop trigger ${sql.raw(`${table}_version`)} on ${sql.table(table)}`.execute(db);
  }
  await sql`drop function mayfly_client_part_changed()`.execute(db);
  await sql`drop trigger client_version on client`.execute(db);
  await sql`drop function mayfly_client_changed()`.execute(db);
  await db.schema.alterTable('client').dropColumn('version').execute();
}
