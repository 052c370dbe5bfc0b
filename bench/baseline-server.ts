/**
 * The baseline: plain oidc-provider 9 with its in-memory adapter and the token configuration Mayfly uses
 * (client_credentials, resource indicators, DPoP-bound ES256 JWT or opaque tokens, introspection), so that the
 * runner can measure both with one load generator. Not part of Mayfly.
 *
 *   PORT=… BASELINE_SEED='{"secretClient":…,"keyClient":…,"resourceServer":…}' node bench/baseline-server.ts
 */
import { randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { type Configuration } from 'oidc-provider';

interface BaselineSeed {
  secretClient: { id: string; secret: string };
  keyClient: { id: string; publicJwk: JWK };
  resourceServer: { id: string; secret: string };
  resources: { jwt: string; opaque: string };
}

const port = Number(process.env.PORT);
const seed = JSON.parse(process.env.BASELINE_SEED ?? '{}') as BaselineSeed;
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'baseline', alg: 'ES256', use: 'sig' };
const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  id_token_signed_response_alg: 'ES256' as const,
};

const configuration: Configuration = {
  jwks: { keys: [signingKey] },
  clients: [
    {
      ...common,
      client_id: seed.secretClient.id,
      client_secret: seed.secretClient.secret,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      ...common,
      client_id: seed.keyClient.id,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [seed.keyClient.publicJwk] },
    },
    {
      ...common,
      client_id: seed.resourceServer.id,
      client_secret: seed.resourceServer.secret,
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  clientDefaults: { ...common, dpop_bound_access_tokens: true },
  clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
  responseTypes: [],
  scopes: ['read', 'write'],
  routes: { token: '/token', introspection: '/token/introspection', jwks: '/jwks' },
  enabledJWA: { dPoPSigningAlgValues: ['ES256'], clientAuthSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => seed.resources.jwt,
      useGrantedResource: () => false,
      getResourceServerInfo: (_ctx, resource) => ({
        audience: resource,
        scope: 'read write',
        accessTokenTTL: 300,
        accessTokenFormat: resource === seed.resources.opaque ? 'opaque' : 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
};

const provider = new Provider(issuer, configuration);
provider.use(async (ctx, next) => {
  if (ctx.path === '/healthz') {
    ctx.body = { status: 'ok' };
    return;
  }
  await next();
});
// The provider warns that the memory adapter is for development: here it is the point of comparison.
const server = provider.listen(port, '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
