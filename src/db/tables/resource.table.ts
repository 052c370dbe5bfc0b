import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

export type TokenFormat = 'jwt' | 'opaque';

export interface ResourceTable {
  id: Generated<string>;
  /** Absolute URI a client names in the `resource` parameter (RFC 8707); the token's `aud`. */
  identifier: string;
  name: string | null;
  scopes: string[];
  token_ttl: number;
  token_format: TokenFormat;
  /** The admin API's own resource: not editable through the admin plane. */
  reserved: ColumnType<boolean, boolean | undefined, never>;
  /** Who manages it declaratively (e.g. `policy`); null: managed by hand. */
  managed_by: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: ColumnType<Date, never, never>;
  updated_at: ColumnType<Date, never, Date>;
}

export type ResourceRow = Selectable<ResourceTable>;
export type NewResourceRow = Insertable<ResourceTable>;
export type UpdateResourceRow = Omit<Updateable<ResourceTable>, 'id' | 'identifier' | 'updated_at'>;
