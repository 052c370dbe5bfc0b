import Provider, {
  errors,
  type AsymmetricSigningAlgorithm,
  type Client,
  type Configuration,
  type KoaContextWithOIDC,
} from 'oidc-provider';

import { createAdapterFactory } from '../adapter/adapter.ts';
import type { Clock } from '../clock.ts';
import { findClientAccess, isTokenOwnerActive } from '../clients/client.repository.ts';
import { matchesSecretHash } from '../clients/client-secret.ts';
import type { Config } from '../config/config.ts';
import type { Secrets } from '../config/secrets.ts';
import type { Db } from '../db/connect.ts';
import { SIGNING_ALG, type SigningKeySet } from '../keys/signing-keys.ts';
import type { Logger } from '../observability/logger.ts';
import { clientFacts, toClientMetadata } from './client-metadata.ts';
import { recordPolicyDecision, recordProtocolError, type ProtocolError } from './protocol-audit.ts';
import { ROUTES } from './protocol-routes.ts';
import { requireResource, resolveResourceServer, tokenAudience } from './resource-rules.ts';

/** Asymmetric algorithms only: never `none` or an HMAC. @see RFC 9449 §4.3 (step 5), RFC 7523 §3 */
export const ASYMMETRIC_ALGS: AsymmetricSigningAlgorithm[] = [
  'ES256',
  'ES384',
  'ES512',
  'Ed25519',
  'EdDSA',
  'PS256',
  'PS384',
  'PS512',
  'RS256',
];

/** oidc-provider accepts a DPoP proof whose `iat` is within this many seconds of now (either side). */
const DPOP_IAT_WINDOW = 300;

export interface ProviderDependencies {
  config: Config;
  secrets: Secrets;
  keys: SigningKeySet;
  db: Db;
  clock: Clock;
  log: Logger;
}

export function buildProvider({ config, secrets, keys, db, clock, log }: ProviderDependencies): Provider {
  const configuration: Configuration = {
    adapter: createAdapterFactory({
      db,
      clock,
      findClientMetadata: async (clientId) => {
        const access = await findClientAccess(db, clientId, clock.now());
        return access && toClientMetadata(access);
      },
      // A proof is accepted while its iat is within the window either side of now: keep its marker for both
      // halves plus a margin, longer than the provider's own suggestion.
      replayWindowSeconds: 2 * DPOP_IAT_WINDOW + 60,
    }),
    jwks: keys.privateJwks,
    clients: [],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'private_key_jwt',
      id_token_signed_response_alg: SIGNING_ALG,
      dpop_bound_access_tokens: true,
    },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    extraClientMetadata: { properties: ['mayfly'] },
    clockTolerance: 5,
    // Machine clients call from servers, never from browsers.
    clientBasedCORS: () => false,
    responseTypes: [],
    scopes: [],
    routes: {
      token: ROUTES.token,
      introspection: ROUTES.introspection,
      revocation: ROUTES.revocation,
      jwks: ROUTES.jwks,
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ASYMMETRIC_ALGS,
      dPoPSigningAlgValues: ASYMMETRIC_ALGS,
      idTokenSigningAlgValues: [SIGNING_ALG],
    },
    formats: { bitsOfOpaqueRandomness: 256 },
    // The provider refuses to fetch a client's jwks_uri from special-use addresses (SSRF protection); an operator
    // whose clients publish keys on a private network opts out explicitly.
    ...(config.jwksUriAllowPrivate
      ? {
          fetch: (input: string | URL | Request, init?: RequestInit) => {
            const { dispatcher: _ssrfGuard, ...rest } = (init ?? {}) as RequestInit & {
              dispatcher?: unknown;
            };
            return fetch(input, rest);
          },
        }
      : {}),
    ttl: {
      // Synchronous by contract; the resource rules have already clamped the lifetime to the server maximum.
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.tokens.defaultTtl,
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // Only a resource server of the token's audience learns anything about it. @see RFC 7662 §4
        allowedPolicy: async (ctx, caller, token) => {
          const audience = tokenAudience(token);
          const introspects = clientFacts(caller)?.introspects ?? [];
          if (audience === undefined || !introspects.includes(audience)) {
            return recordPolicyDecision(ctx, 'caller is not a resource server for the token audience');
          }
          // A token dies with its client: a disabled or deleted client's tokens are inactive at once.
          const ownerActive =
            token.clientId !== undefined &&
            typeof token.iat === 'number' &&
            (await isTokenOwnerActive(db, token.clientId, new Date(token.iat * 1000)));
          return recordPolicyDecision(
            ctx,
            ownerActive ? undefined : 'the client of the token is disabled or deleted',
          );
        },
      },
      revocation: {
        enabled: true,
        // @see RFC 7009 §2.1: a valid token issued to another client is refused with an error, not ignored.
        allowedPolicy: (ctx, caller, token) => {
          const refusal =
            caller.clientId === token.clientId ? undefined : 'this token was not issued to this client';
          if (!recordPolicyDecision(ctx, refusal)) {
            throw new errors.UnauthorizedClient('this token was not issued to the client revoking it');
          }
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: requireResource,
        useGrantedResource: () => false,
        getResourceServerInfo: (ctx, resource, client) =>
          resolveResourceServer(ctx, resource, client, config.tokens.maxTtl),
      },
      dPoP: {
        enabled: true,
        nonceSecret: secrets.dpopNonceSecret,
        requireNonce: () => config.dpop.requireNonce,
      },
    },
  };

  const provider = new Provider(config.issuer, configuration);

  // Secrets are stored as hashes; the provider awaits this comparison.
  provider.Client.prototype.compareClientSecret = function compareClientSecret(
    this: Client,
    candidate: string,
  ) {
    return matchesSecretHash(candidate, clientFacts(this)?.secretHashes ?? []);
  };

  const record = (ctx: KoaContextWithOIDC, error: errors.OIDCProviderError | ProtocolError) => {
    recordProtocolError(ctx, error);
  };
  provider.on('grant.error', record);
  provider.on('introspection.error', record);
  provider.on('revocation.error', record);
  provider.on('server_error', (ctx: KoaContextWithOIDC, error: Error) => {
    record(ctx, error);
    log.error({ err: error }, 'provider server error');
  });
  return provider;
}
