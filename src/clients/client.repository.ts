import { sql } from 'kysely';
import { jsonArrayFrom } from 'kysely/helpers/postgres';

import type { Db } from '../db/connect.ts';
import type { ClientRow, NewClientRow } from '../db/tables/client.table.ts';
import type { TokenFormat } from '../db/tables/resource.table.ts';

/** Everything the token path needs to authenticate and authorize one client, read in one query. */
export interface ClientAccess {
  client: ClientRow;
  secretHashes: string[];
  grants: { resource: string; scopes: string[]; tokenTtl: number; tokenFormat: TokenFormat }[];
  introspects: string[];
}

export async function findClientAccess(db: Db, clientId: string): Promise<ClientAccess | undefined> {
  const row = await db
    .selectFrom('client as c')
    .selectAll('c')
    .select((eb) => [
      jsonArrayFrom(
        eb
          .selectFrom('client_secret as s')
          .select('s.secret_hash')
          .whereRef('s.client_id', '=', 'c.id')
          .where((w) => w.or([w('s.expires_at', 'is', null), w('s.expires_at', '>', sql<Date>`now()`)])),
      ).as('secrets'),
      jsonArrayFrom(
        eb
          .selectFrom('client_grant as g')
          .innerJoin('resource as r', 'r.id', 'g.resource_id')
          .select([
            'r.identifier as resource',
            'g.scopes',
            'r.token_ttl as tokenTtl',
            'r.token_format as tokenFormat',
          ])
          .whereRef('g.client_id', '=', 'c.id'),
      ).as('grants'),
      jsonArrayFrom(
        eb
          .selectFrom('client_introspection as i')
          .innerJoin('resource as r', 'r.id', 'i.resource_id')
          .select('r.identifier')
          .whereRef('i.client_id', '=', 'c.id'),
      ).as('introspects'),
    ])
    .where('c.id', '=', clientId)
    .executeTakeFirst();
  if (!row) return undefined;
  const { secrets, grants, introspects, ...client } = row;
  return {
    client,
    secretHashes: secrets.map((s) => s.secret_hash),
    grants,
    introspects: introspects.map((i) => i.identifier),
  };
}

export async function insertClient(db: Db, row: NewClientRow): Promise<ClientRow> {
  return db.insertInto('client').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function insertClientSecret(db: Db, clientId: string, secretHash: string): Promise<void> {
  await db.insertInto('client_secret').values({ client_id: clientId, secret_hash: secretHash }).execute();
}

export async function insertClientGrants(
  db: Db,
  clientId: string,
  grants: readonly { resourceId: string; scopes: string[] }[],
): Promise<void> {
  if (grants.length === 0) return;
  await db
    .insertInto('client_grant')
    .values(grants.map((g) => ({ client_id: clientId, resource_id: g.resourceId, scopes: g.scopes })))
    .execute();
}

export async function insertClientIntrospections(
  db: Db,
  clientId: string,
  resourceIds: readonly string[],
): Promise<void> {
  if (resourceIds.length === 0) return;
  await db
    .insertInto('client_introspection')
    .values(resourceIds.map((resourceId) => ({ client_id: clientId, resource_id: resourceId })))
    .execute();
}

/** True while the client exists and is not disabled. */
export async function isClientActive(db: Db, clientId: string): Promise<boolean> {
  const row = await db
    .selectFrom('client')
    .select('id')
    .where('id', '=', clientId)
    .where('disabled_at', 'is', null)
    .executeTakeFirst();
  return row !== undefined;
}
