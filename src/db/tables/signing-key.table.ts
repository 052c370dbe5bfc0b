import type { ColumnType, Insertable, JSONColumnType, Selectable, Updateable } from 'kysely';

export type Jwk = Record<string, unknown> & { kid: string; kty: string };

export interface SigningKeyTable {
  kid: string;
  alg: string;
  public_jwk: JSONColumnType<Jwk>;
  /** The private JWK sealed under the KEK (see keys/envelope.ts); never in clear. */
  sealed_private_jwk: string | null;
  /** Clear private JWK of keys stored before envelope encryption; sealed and emptied at start-up. */
  private_jwk: ColumnType<Jwk | null, never, null>;
  created_at: ColumnType<Date, never, never>;
  published_at: Date;
  activates_at: Date;
  retires_at: Date | null;
  removes_at: Date | null;
  revoked_at: Date | null;
  recorded_phase: string;
}

export type SigningKeyRow = Selectable<SigningKeyTable>;
export type NewSigningKeyRow = Insertable<SigningKeyTable>;
export type SigningKeyUpdate = Updateable<SigningKeyTable>;
