import type { ColumnType, Generated, Insertable, JSONColumnType, Selectable, Updateable } from 'kysely';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export interface PublicJwks {
  keys: Record<string, unknown>[];
}

export interface ClientTable {
  id: string;
  name: string;
  auth_method: ClientAuthMethod;
  jwks: JSONColumnType<PublicJwks | null, string | null, string | null>;
  jwks_uri: string | null;
  /** The one exception to DPoP: tokens without a proof. Visible in every audit line of this client. */
  bearer_allowed: ColumnType<boolean, boolean | undefined, boolean>;
  disabled_at: Date | null;
  /** Tokens issued before this instant are inactive (set on disable, so enabling does not revive them). */
  tokens_not_before: ColumnType<Date | null, Date | null | undefined, Date | null>;
  created_at: ColumnType<Date, never, never>;
  updated_at: ColumnType<Date, never, Date>;
  /** Who manages it declaratively (e.g. `policy`); null: managed by hand. */
  managed_by: ColumnType<string | null, string | null | undefined, string | null>;
  /** RFC 7638 thumbprints of the only keys its DPoP proofs may use; empty: any key. */
  dpop_jkts: ColumnType<string[], string[] | undefined, string[]>;
  /** Token requests per minute this client may make; null: the server default. */
  token_rate_limit: ColumnType<number | null, number | null | undefined, number | null>;
  /** Introspection requests per minute this client (a resource server) may make; null: the server default. */
  introspection_rate_limit: ColumnType<number | null, number | null | undefined, number | null>;
  /** Bumped by triggers on any change the token path would see (see the client-version migration). */
  version: ColumnType<string | number, never, never>;
}

export interface ClientSecretTable {
  id: Generated<string>;
  client_id: string;
  /** SHA-256 of the secret, base64url. Secrets are 256 random bits, so a fast hash is enough. */
  secret_hash: string;
  created_at: ColumnType<Date, never, never>;
  expires_at: Date | null;
}

export interface ClientGrantTable {
  client_id: string;
  resource_id: string;
  scopes: string[];
}

/** A client listed here acts as a resource server: it may introspect tokens issued for that resource. */
export interface ClientIntrospectionTable {
  client_id: string;
  resource_id: string;
}

export type ClientRow = Selectable<ClientTable>;
export type NewClientRow = Insertable<ClientTable>;
export type ClientSecretRow = Selectable<ClientSecretTable>;
export type UpdateClientRow = Omit<Updateable<ClientTable>, 'id' | 'auth_method' | 'updated_at'>;
