import type { ColumnType, Generated, Insertable, JSONColumnType, Selectable } from 'kysely';

import type { ClientAuthMethod } from './client.table.ts';

/** What an initial access token lets a registered client hold on one resource. */
export interface RegistrationResourceCap {
  resource: string;
  scopes: string[];
}

/** An initial access token (RFC 7591 §3). Only its hash is stored: the value is shown once, when minted. */
export interface RegistrationTokenTable {
  id: Generated<string>;
  /** SHA-256 of the token, base64url. Tokens are 256 random bits, so a fast hash is enough. */
  token_hash: string;
  resources: JSONColumnType<RegistrationResourceCap[]>;
  auth_methods: ClientAuthMethod[];
  /** The longest token lifetime (seconds) a resource granted through this token may issue; null: no cap. */
  max_token_ttl: number | null;
  uses: number;
  uses_left: number;
  /** The admin client that minted it. */
  created_by: string;
  created_at: ColumnType<Date, never, never>;
  expires_at: Date;
}

/** A dynamically registered client's management credential and caps (RFC 7592). */
export interface ClientRegistrationTable {
  client_id: string;
  /** SHA-256 of the current registration access token; replaced on each use. */
  access_token_hash: string;
  /** The initial access token it was registered with (kept after that token is revoked, for the audit trail). */
  registration_token_id: string;
  resources: JSONColumnType<RegistrationResourceCap[]>;
  auth_methods: ClientAuthMethod[];
  max_token_ttl: number | null;
  issued_at: Date;
}

export type RegistrationTokenRow = Selectable<RegistrationTokenTable>;
export type NewRegistrationTokenRow = Insertable<RegistrationTokenTable>;
export type ClientRegistrationRow = Selectable<ClientRegistrationTable>;
export type NewClientRegistrationRow = Insertable<ClientRegistrationTable>;
