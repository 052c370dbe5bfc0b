import { sql, type ExpressionBuilder } from 'kysely';
import { jsonArrayFrom } from 'kysely/helpers/postgres';

import type { Db } from '../db/connect.ts';
import type { Database } from '../db/database.ts';
import { statement, type Statements } from '../db/statements.ts';
import type { ClientRow, NewClientRow, UpdateClientRow } from '../db/tables/client.table.ts';
import type { TokenFormat } from '../db/tables/resource.table.ts';

/** Everything the token path needs to authenticate and authorize one client, read in one query. */
export interface ClientAccess {
  client: ClientRow;
  secretHashes: string[];
  grants: { resource: string; scopes: string[]; tokenTtl: number; tokenFormat: TokenFormat }[];
  introspects: string[];
  /** `client.version` when this was read (a string: bigint). */
  version: string;
  /** When the first of these secrets expires: what was read stops being true then. */
  validUntil: Date | undefined;
}

export async function findClientAccess(
  db: Db,
  clientId: string,
  now: Date,
): Promise<ClientAccess | undefined> {
  const row = await db
    .selectFrom('client as c')
    .selectAll('c')
    .select((eb) => [
      jsonArrayFrom(
        eb
          .selectFrom('client_secret as s')
          .select(['s.secret_hash', 's.expires_at'])
          .whereRef('s.client_id', '=', 'c.id')
          .where((w) => w.or([w('s.expires_at', 'is', null), w('s.expires_at', '>', now)])),
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
  // Inside JSON the expiry is text.
  const expiries = secrets
    .map((s) => (s.expires_at === null ? undefined : Date.parse(s.expires_at)))
    .filter((at) => at !== undefined);
  return {
    client,
    secretHashes: secrets.map((s) => s.secret_hash),
    grants,
    introspects: introspects.map((i) => i.identifier),
    version: String(client.version),
    validUntil: expiries.length ? new Date(Math.min(...expiries)) : undefined,
  };
}

/** What each request checks about a client: whether what was read about it is still current, and whether it is live. */
export interface ClientState {
  /** `client.version` (a string: bigint). */
  version: string;
  disabledAt: Date | null;
  tokensNotBefore: Date | null;
}

const FIND_STATES = statement(
  'find_client_states',
  'select id, version, disabled_at, tokens_not_before from client where id = any($1::text[])',
);

/** For each id, in order, the client's state; undefined for a client that does not exist. One statement. */
export async function findClientStates(
  statements: Statements,
  clientIds: readonly string[],
): Promise<(ClientState | undefined)[]> {
  const rows = await statements.query<{
    id: string;
    version: string | number;
    disabled_at: Date | null;
    tokens_not_before: Date | null;
  }>(FIND_STATES, [[...new Set(clientIds)]]);
  const states = new Map(
    rows.map((row) => [
      row.id,
      { version: String(row.version), disabledAt: row.disabled_at, tokensNotBefore: row.tokens_not_before },
    ]),
  );
  return clientIds.map((id) => states.get(id));
}

/**
 * True while the client exists, is enabled, and has not been disabled since the token was issued: a token dies
 * with its client and stays dead when the client is enabled again. The same rule as ownsLiveTokensIssuedAt.
 */
export function ownsLiveTokens(state: ClientState | undefined, issuedAt: Date): boolean {
  return (
    state !== undefined &&
    state.disabledAt === null &&
    (state.tokensNotBefore === null || state.tokensNotBefore.getTime() <= issuedAt.getTime())
  );
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

/** The condition shared by every check of a token's owner: enabled, and not disabled since `issuedAt`. */
function ownsLiveTokensIssuedAt(issuedAt: Date) {
  return (eb: ExpressionBuilder<Database & { c: Database['client'] }, 'c'>) =>
    eb.and([
      eb('c.disabled_at', 'is', null),
      eb.or([eb('c.tokens_not_before', 'is', null), eb('c.tokens_not_before', '<=', issuedAt)]),
    ]);
}

/** A client as the admin plane shows it: its grants and introspection rights by resource identifier, and the
 * secrets that still work (metadata only — a hash never leaves the repository). */
export interface ClientDetail {
  client: ClientRow;
  grants: { resource: string; scopes: string[] }[];
  introspects: string[];
  secrets: { id: string; created_at: Date; expires_at: Date | null }[];
}

function selectClientDetails(db: Db, now: Date) {
  return db
    .selectFrom('client as c')
    .selectAll('c')
    .select((eb: ExpressionBuilder<Database & { c: Database['client'] }, 'c'>) => [
      jsonArrayFrom(
        eb
          .selectFrom('client_grant as g')
          .innerJoin('resource as r', 'r.id', 'g.resource_id')
          .select(['r.identifier as resource', 'g.scopes'])
          .whereRef('g.client_id', '=', 'c.id')
          .orderBy('r.identifier'),
      ).as('grants'),
      jsonArrayFrom(
        eb
          .selectFrom('client_introspection as i')
          .innerJoin('resource as r', 'r.id', 'i.resource_id')
          .select('r.identifier')
          .whereRef('i.client_id', '=', 'c.id')
          .orderBy('r.identifier'),
      ).as('introspects'),
      jsonArrayFrom(
        eb
          .selectFrom('client_secret as s')
          .select(['s.id', 's.created_at', 's.expires_at'])
          .whereRef('s.client_id', '=', 'c.id')
          .where((w) => w.or([w('s.expires_at', 'is', null), w('s.expires_at', '>', now)]))
          .orderBy('s.created_at'),
      ).as('secrets'),
    ]);
}

type ClientDetailRow = Awaited<ReturnType<ReturnType<typeof selectClientDetails>['executeTakeFirstOrThrow']>>;

function toClientDetail(row: ClientDetailRow): ClientDetail {
  const { grants, introspects, secrets, ...client } = row;
  return {
    client,
    grants,
    introspects: introspects.map((i) => i.identifier),
    // json_agg returns timestamps as text.
    secrets: secrets.map((s) => ({
      id: s.id,
      created_at: new Date(s.created_at),
      expires_at: s.expires_at === null ? null : new Date(s.expires_at),
    })),
  };
}

export async function findClientDetail(
  db: Db,
  clientId: string,
  now: Date,
): Promise<ClientDetail | undefined> {
  const row = await selectClientDetails(db, now).where('c.id', '=', clientId).executeTakeFirst();
  return row && toClientDetail(row);
}

export interface ClientFilter {
  /** Case-insensitive substring of the name. */
  name?: string | undefined;
  status?: 'enabled' | 'disabled' | undefined;
  /** Clients holding a grant on, or introspecting, this resource identifier. */
  resource?: string | undefined;
  authMethod?: string | undefined;
}

/** Keyset pagination in (name, id) order. */
export async function listClientDetails(
  db: Db,
  filter: ClientFilter,
  page: { limit: number; after?: readonly [name: string, id: string] | undefined },
  now: Date,
): Promise<ClientDetail[]> {
  let query = selectClientDetails(db, now).orderBy('c.name').orderBy('c.id').limit(page.limit);
  if (page.after) {
    const [name, id] = page.after;
    query = query.where((w) =>
      w.or([w('c.name', '>', name), w.and([w('c.name', '=', name), w('c.id', '>', id)])]),
    );
  }
  if (filter.name !== undefined) {
    const pattern = `%${filter.name.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
    query = query.where('c.name', 'ilike', pattern);
  }
  if (filter.status === 'enabled') query = query.where('c.disabled_at', 'is', null);
  if (filter.status === 'disabled') query = query.where('c.disabled_at', 'is not', null);
  if (filter.authMethod !== undefined)
    query = query.where('c.auth_method', '=', filter.authMethod as ClientRow['auth_method']);
  const resource = filter.resource;
  if (resource !== undefined) {
    query = query.where((w) =>
      w.or([
        w.exists(
          w
            .selectFrom('client_grant as fg')
            .innerJoin('resource as fr', 'fr.id', 'fg.resource_id')
            .select('fg.client_id')
            .whereRef('fg.client_id', '=', 'c.id')
            .where('fr.identifier', '=', resource),
        ),
        w.exists(
          w
            .selectFrom('client_introspection as fi')
            .innerJoin('resource as fr', 'fr.id', 'fi.resource_id')
            .select('fi.client_id')
            .whereRef('fi.client_id', '=', 'c.id')
            .where('fr.identifier', '=', resource),
        ),
      ]),
    );
  }
  return (await query.execute()).map(toClientDetail);
}

export async function updateClientRow(
  db: Db,
  clientId: string,
  changes: UpdateClientRow,
  now: Date,
): Promise<ClientRow | undefined> {
  return db
    .updateTable('client')
    .set({ ...changes, updated_at: now })
    .where('id', '=', clientId)
    .returningAll()
    .executeTakeFirst();
}

export async function deleteClientRow(db: Db, clientId: string): Promise<void> {
  await db.deleteFrom('client').where('id', '=', clientId).execute();
}

export async function deleteClientGrants(db: Db, clientId: string): Promise<void> {
  await db.deleteFrom('client_grant').where('client_id', '=', clientId).execute();
}

export async function deleteClientIntrospections(db: Db, clientId: string): Promise<void> {
  await db.deleteFrom('client_introspection').where('client_id', '=', clientId).execute();
}

/** Secrets that would outlive `at` stop working at `at`; a secret already ending sooner keeps its own end. */
export async function expireClientSecrets(db: Db, clientId: string, at: Date): Promise<void> {
  await db
    .updateTable('client_secret')
    .set({ expires_at: at })
    .where('client_id', '=', clientId)
    .where((w) => w.or([w('expires_at', 'is', null), w('expires_at', '>', at)]))
    .execute();
}

/** Whether a client not managed by `manager` has this name, ignoring case. */
export async function hasClientNamedOutside(db: Db, name: string, manager: string): Promise<boolean> {
  const row = await db
    .selectFrom('client')
    .select('id')
    .where((eb) => eb(eb.fn('lower', ['name']), '=', eb.fn('lower', [eb.val(name)])))
    .where((eb) => eb.or([eb('managed_by', 'is', null), eb('managed_by', '!=', manager)]))
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Whether any client, enabled or not, holds a grant on the resource. */
export async function hasGrantOn(db: Db, identifier: string): Promise<boolean> {
  const row = await db
    .selectFrom('client_grant as g')
    .innerJoin('resource as r', 'r.id', 'g.resource_id')
    .select('g.client_id')
    .where('r.identifier', '=', identifier)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Locks the client row until the transaction ends: concurrent changes to one client run one after another. */
export async function lockClient(db: Db, clientId: string): Promise<boolean> {
  const row = await db
    .selectFrom('client')
    .select('id')
    .where('id', '=', clientId)
    .forUpdate()
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * The scopes the client holds now on a resource, if the client is active for a token issued at `issuedAt`
 * (see ownsLiveTokens); undefined when it is not. One query.
 */
export async function findActiveOwnerScopes(
  db: Db,
  clientId: string,
  issuedAt: Date,
  resource: string,
): Promise<string[] | undefined> {
  const row = await db
    .selectFrom('client as c')
    .leftJoin('resource as r', (join) => join.on('r.identifier', '=', resource))
    .leftJoin('client_grant as g', (join) =>
      join.onRef('g.client_id', '=', 'c.id').onRef('g.resource_id', '=', 'r.id'),
    )
    .select('g.scopes')
    .where('c.id', '=', clientId)
    .where(ownsLiveTokensIssuedAt(issuedAt))
    .executeTakeFirst();
  return row && (row.scopes ?? []);
}

/** Enabled clients (other than `exceptClientId`) holding `scope` on a reserved resource: the admin API's. */
export async function countAdminWriters(
  db: Db,
  scope: string,
  exceptClientId: string | undefined,
): Promise<number> {
  let query = db
    .selectFrom('client_grant as g')
    .innerJoin('resource as r', 'r.id', 'g.resource_id')
    .innerJoin('client as c', 'c.id', 'g.client_id')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('r.reserved', '=', true)
    .where('c.disabled_at', 'is', null)
    .where(sql<boolean>`${scope} = any(g.scopes)`);
  if (exceptClientId !== undefined) query = query.where('g.client_id', '<>', exceptClientId);
  const row = await query.executeTakeFirstOrThrow();
  return Number(row.count);
}
