import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * oidc-provider does not store JWT access tokens and refuses them at introspection and revocation. Mayfly
 * verifies such a JWT before the provider sees the request, then hands the provider a reference instead of the
 * token; when the provider looks the reference up, the adapter answers from the verified claims. Client
 * authentication, the access policy, events and the response shape all stay the provider's own.
 */
export interface PresentedJwt {
  /** What the provider sees as the token value. Never a valid opaque token id (those have no ':'). */
  reference: string;
  /** Verified claims, or undefined when the JWT was not a valid access token of this server. */
  claims: JwtAccessTokenClaims | undefined;
}

export interface JwtAccessTokenClaims {
  jti: string;
  iat: number;
  exp: number;
  client_id: string;
  aud: string;
  scope?: string;
  cnf?: { jkt?: string };
}

const storage = new AsyncLocalStorage<PresentedJwt>();

export function runWithPresentedJwt<T>(presented: PresentedJwt, fn: () => Promise<T>): Promise<T> {
  return storage.run(presented, fn);
}

export function currentPresentedJwt(): PresentedJwt | undefined {
  return storage.getStore();
}
