import type { ColumnType, Insertable, JSONColumnType, Selectable } from 'kysely';

export type Jwk = Record<string, unknown> & { kid: string; kty: string };

export interface SigningKeyTable {
  kid: string;
  alg: string;
  public_jwk: JSONColumnType<Jwk>;
  private_jwk: JSONColumnType<Jwk>;
  created_at: ColumnType<Date, never, never>;
  activated_at: ColumnType<Date, Date | undefined, Date>;
}

export type SigningKeyRow = Selectable<SigningKeyTable>;
export type NewSigningKeyRow = Insertable<SigningKeyTable>;
