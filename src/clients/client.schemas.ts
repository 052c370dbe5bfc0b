import { createPublicKey } from 'node:crypto';

import { z } from 'zod';

import { hasPrivateMembers } from '../keys/jwk.ts';
import { ManagedBy, ResourceIdentifier, ScopeList } from './resource.schemas.ts';

const AuthMethod = z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'], {
  error: 'expected client_secret_basic, client_secret_post or private_key_jwt',
});

const PublicJwk = z
  .object({ kty: z.enum(['EC', 'RSA', 'OKP'], { error: 'expected an EC, RSA or OKP public key' }) })
  .catchall(z.unknown())
  .refine(
    (jwk) => !hasPrivateMembers(jwk),
    'a JWKS holds public keys only: remove the private members (d, p, q, dp, dq, qi, oth, k)',
  )
  .refine(isUsablePublicKey, {
    error: 'not a usable public key: check its members (EC: crv, x, y; RSA: n, e; OKP: crv, x)',
    abort: true,
  })
  .refine(hasStrongEnoughModulus, {
    error: 'an RSA key must be at least 2048 bits long (RFC 7518 §3.3)',
    abort: true,
  });

/** Refused here rather than at the first token request, where the client could only learn its keys are bad. */
function isUsablePublicKey(jwk: Record<string, unknown>): boolean {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' }).type === 'public';
  } catch {
    return false;
  }
}

/** Shorter RSA keys can never sign an accepted assertion: RS* and PS* need 2048 bits or more. */
function hasStrongEnoughModulus(jwk: Record<string, unknown>): boolean {
  if (jwk.kty !== 'RSA') return true;
  const bits = createPublicKey({ key: jwk, format: 'jwk' }).asymmetricKeyDetails?.modulusLength ?? 0;
  return bits >= 2048;
}

export const Jwks = z
  .looseObject({ keys: z.array(PublicJwk).min(1, 'at least one key is required').max(10, 'at most 10 keys') })
  .meta({ id: 'Jwks', description: 'Public keys the client signs its client assertions with (RFC 7517).' });

const JwksUri = z
  .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
  .max(2048, 'at most 2048 characters');

const ClientName = z.string().trim().min(1, 'a name is required').max(200, 'at most 200 characters');

export const ClientGrant = z
  .strictObject({ resource: ResourceIdentifier, scopes: ScopeList })
  .meta({ id: 'ClientGrant', description: 'Scopes the client may obtain for one resource.' });

const Grants = z
  .array(ClientGrant)
  .max(100, 'at most 100 grants')
  .refine(
    (grants) => new Set(grants.map((g) => g.resource)).size === grants.length,
    'a resource may appear in only one grant',
  );
const Introspects = z
  .array(ResourceIdentifier)
  .max(100, 'at most 100 resources')
  .refine((list) => new Set(list).size === list.length, 'resources must not repeat')
  .meta({ description: 'Resources whose tokens this client (a resource server) may introspect.' });
const BearerAllowed = z
  .boolean({ error: 'expected true or false' })
  .meta({ description: 'Tokens without DPoP for this client: an exception visible in every audit line.' });

/** A SHA-256 JWK thumbprint, base64url without padding. @see RFC 7638 §3, RFC 9449 §6.1 */
const DpopThumbprint = z
  .string({ error: 'expected a JWK thumbprint (43 base64url characters)' })
  .regex(/^[A-Za-z0-9_-]{43}$/, 'expected a SHA-256 JWK thumbprint: 43 base64url characters (RFC 7638)');
const DpopJkts = z
  .array(DpopThumbprint)
  .max(50, 'at most 50 keys')
  .refine((list) => new Set(list).size === list.length, 'thumbprints must not repeat')
  .meta({
    description:
      'Pinned DPoP keys: RFC 7638 thumbprints of the only keys whose proofs this client may use. Empty: any key.',
  });

const PerMinute = z
  .number({ error: 'expected a whole number of requests per minute, or null for the server default' })
  .int('expected a whole number of requests per minute')
  .min(1, 'expected at least 1 request per minute')
  .max(10_000_000, 'at most 10000000 requests per minute')
  .nullable();

export const ClientRateLimits = z
  .strictObject({
    tokens_per_minute: PerMinute.optional().meta({
      description: 'Token and revocation requests per minute; null: MAYFLY_RATE_LIMIT_TOKEN_PER_CLIENT.',
    }),
    introspections_per_minute: PerMinute.optional().meta({
      description:
        'Introspection requests per minute (a resource server); null: MAYFLY_RATE_LIMIT_INTROSPECTION_PER_CLIENT.',
    }),
  })
  .meta({
    id: 'ClientRateLimits',
    description: 'Limits of this client; a member left out keeps its value (on update) or the default.',
  });

export const ClientInput = z
  .strictObject({
    name: ClientName,
    auth_method: AuthMethod.default('client_secret_basic'),
    jwks: Jwks.optional(),
    jwks_uri: JwksUri.optional(),
    grants: Grants.default([]),
    introspects: Introspects.default([]),
    bearer_allowed: BearerAllowed.default(false),
    rate_limits: ClientRateLimits.optional(),
    dpop_jkts: DpopJkts.default([]),
    managed_by: ManagedBy.optional(),
  })
  .superRefine((input, ctx) => {
    checkKeys(input.auth_method, input.jwks, input.jwks_uri, ctx);
  })
  .meta({ id: 'ClientInput' });
export type ClientInput = z.input<typeof ClientInput>;

export const ClientUpdate = z
  .strictObject({
    name: ClientName.optional(),
    jwks: Jwks.optional(),
    jwks_uri: JwksUri.optional(),
    grants: Grants.optional().meta({ description: 'Replaces every grant of the client.' }),
    introspects: Introspects.optional(),
    bearer_allowed: BearerAllowed.optional(),
    rate_limits: ClientRateLimits.optional(),
    dpop_jkts: DpopJkts.optional().meta({ description: 'Replaces the pinned keys; [] removes the pinning.' }),
    managed_by: ManagedBy.optional(),
  })
  .refine((update) => Object.keys(update).length > 0, 'nothing to update')
  .refine((update) => !(update.jwks && update.jwks_uri), {
    error: 'give jwks or jwks_uri, not both',
    path: ['jwks'],
  })
  .meta({ id: 'ClientUpdate' });
export type ClientUpdate = z.input<typeof ClientUpdate>;

export const SecretRotation = z
  .strictObject({
    previous_secret_expires_in: z
      .number({ error: 'expected a number of seconds' })
      .int('expected whole seconds')
      .min(0, 'expected 0 (at once) or more seconds')
      .max(30 * 86_400, 'at most 30 days (2592000 seconds)')
      .optional()
      .meta({
        description:
          'Seconds the previous secrets keep working; 0 ends them at once. Default MAYFLY_SECRET_OVERLAP.',
      }),
  })
  .meta({ id: 'SecretRotation' });
export type SecretRotation = z.input<typeof SecretRotation>;

/** private_key_jwt needs exactly one key source; secret methods take none. */
export function checkKeys(
  authMethod: string,
  jwks: unknown,
  jwksUri: unknown,
  ctx: z.core.$RefinementCtx,
): void {
  if (authMethod === 'private_key_jwt') {
    if (!jwks === !jwksUri) {
      ctx.addIssue({
        code: 'custom',
        path: ['jwks'],
        message: 'private_key_jwt needs exactly one of jwks or jwks_uri',
      });
    }
  } else if (jwks || jwksUri) {
    ctx.addIssue({
      code: 'custom',
      path: [jwks ? 'jwks' : 'jwks_uri'],
      message: `keys are only used with private_key_jwt, not ${authMethod}`,
    });
  }
}

export const ClientSecretInfo = z
  .object({ id: z.uuid(), created_at: z.iso.datetime(), expires_at: z.iso.datetime().nullable() })
  .meta({ id: 'ClientSecretInfo', description: 'A secret that still works; never its value.' });

export const Client = z
  .object({
    client_id: z.string(),
    name: z.string(),
    auth_method: AuthMethod,
    jwks: Jwks.nullable(),
    jwks_uri: z.string().nullable(),
    grants: z.array(ClientGrant),
    introspects: z.array(z.string()),
    bearer_allowed: z.boolean(),
    rate_limits: z
      .object({ tokens_per_minute: z.number().nullable(), introspections_per_minute: z.number().nullable() })
      .meta({ description: "The client's own limits per minute; null: the server default applies." }),
    dpop_jkts: z.array(z.string()),
    managed_by: z.string().nullable(),
    status: z.enum(['enabled', 'disabled']),
    disabled_at: z.iso.datetime().nullable(),
    secrets: z.array(ClientSecretInfo),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'Client' });
export type Client = z.output<typeof Client>;

export const ClientWithSecret = Client.extend({
  client_secret: z.string().optional().meta({ description: 'Shown once, at creation or rotation.' }),
}).meta({ id: 'ClientWithSecret' });
export type ClientWithSecret = z.output<typeof ClientWithSecret>;
