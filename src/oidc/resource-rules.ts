import {
  errors,
  type AsymmetricSigningAlgorithm,
  type Client,
  type KoaContextWithOIDC,
  type ResourceServer,
} from 'oidc-provider';

import { clientFacts } from './client-metadata.ts';
import { requirePinnedDpopKey } from './dpop-pinning.ts';

/**
 * Every token names exactly one audience, so `resource` is mandatory: a request without it fails rather than
 * falling back to a default the client did not choose.
 * @see RFC 8707 §2
 */
export function requireResource(): never {
  throw new errors.InvalidTarget(
    'the resource parameter is required: name the resource server the token is for (RFC 8707)',
  );
}

/**
 * Least privilege per client and per resource. An ungranted resource and an unknown one get the same answer, so
 * the error reveals nothing about which resources exist. A requested scope the client does not hold there fails
 * the whole request (never silently narrowed); no scope at all means every scope the client holds there.
 * @see RFC 6749 §3.3, RFC 8707 §2
 */
export function resolveResourceServer(
  ctx: KoaContextWithOIDC,
  resource: string,
  client: Client,
  maxTtl: number,
  /** The algorithm of the key signing now. */
  signingAlg: AsymmetricSigningAlgorithm,
): ResourceServer {
  requirePinnedDpopKey(ctx, client);
  const params = ctx.oidc.params as { scope?: string; resource?: unknown } | undefined;
  if (Array.isArray(params?.resource) && params.resource.length > 1) {
    throw new errors.InvalidTarget('exactly one resource per request: a token has a single audience');
  }
  const grant = clientFacts(client)?.grants.find((g) => g.resource === resource);
  if (!grant) {
    throw new errors.InvalidTarget(`this client holds no grant for the resource ${resource}`);
  }
  const requested = params?.scope?.split(' ').filter(Boolean) ?? [];
  const notGranted = requested.filter((scope) => !grant.scopes.includes(scope));
  if (notGranted.length) {
    throw new errors.InvalidScope(
      `scope not granted to this client for ${resource}: ${notGranted.join(' ')}`,
      notGranted.join(' '),
    );
  }
  if (params && requested.length === 0) params.scope = grant.scopes.join(' ');
  return {
    scope: grant.scopes.join(' '),
    audience: resource,
    accessTokenTTL: Math.min(grant.tokenTtl, maxTtl),
    accessTokenFormat: grant.tokenFormat,
    jwt: { sign: { alg: signingAlg } },
  };
}

/** The audience of an access token: client_credentials tokens carry exactly one (see above). */
export function tokenAudience(token: object | undefined): string | undefined {
  const aud = (token as { aud?: unknown } | undefined)?.aud;
  if (Array.isArray(aud)) return typeof aud[0] === 'string' ? aud[0] : undefined;
  return typeof aud === 'string' ? aud : undefined;
}
