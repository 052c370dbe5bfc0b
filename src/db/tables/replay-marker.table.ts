/**
 * A one-time value already used (a DPoP proof's or a client assertion's `jti`, hashed by the provider with its
 * issuer), kept until it could no longer be accepted anyway.
 */
export interface ReplayMarkerTable {
  id: string;
  expires_at: Date;
}
