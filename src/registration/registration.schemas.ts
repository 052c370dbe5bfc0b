import { z } from 'zod';

import { Jwks } from '../clients/client.schemas.ts';
import { ResourceIdentifier, ScopeList } from '../clients/resource.schemas.ts';

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;
const AuthMethod = z.enum(AUTH_METHODS, {
  error: 'expected client_secret_basic, client_secret_post or private_key_jwt',
});

const ResourceCap = z.strictObject({ resource: ResourceIdentifier, scopes: ScopeList }).meta({
  id: 'RegistrationResourceCap',
  description: 'Scopes a registered client may hold on one resource.',
});

const ResourceCaps = z
  .array(ResourceCap)
  .min(1, 'at least one resource is required')
  .max(100, 'at most 100 resources')
  .refine(
    (caps) => new Set(caps.map((c) => c.resource)).size === caps.length,
    'a resource may appear only once',
  );

/** What an admin sends to mint an initial access token. */
export const RegistrationTokenInput = z
  .strictObject({
    resources: ResourceCaps.meta({ description: 'The most a registered client may be granted.' }),
    auth_methods: z
      .array(AuthMethod)
      .min(1, 'at least one method is required')
      .refine((list) => new Set(list).size === list.length, 'methods must not repeat')
      .optional()
      .meta({
        description: 'Client authentication methods a registered client may use; default: all three.',
      }),
    max_token_ttl: z
      .number({ error: 'expected a number of seconds' })
      .int('expected whole seconds')
      .min(1, 'expected at least 1 second')
      .optional()
      .meta({
        description:
          'Only resources whose tokens live at most this long (seconds) may be granted; default: any.',
      }),
    expires_in: z
      .number({ error: 'expected a number of seconds' })
      .int('expected whole seconds')
      .min(60, 'expected at least 60 seconds')
      .max(30 * 86_400, 'at most 30 days (2592000 seconds)')
      .meta({ description: 'Seconds until the token stops working.' }),
    uses: z
      .number({ error: 'expected a whole number of registrations' })
      .int('expected a whole number of registrations')
      .min(1, 'expected at least 1')
      .max(10_000, 'at most 10000')
      .default(1)
      .meta({ description: 'Registrations the token allows (default 1).' }),
  })
  .meta({ id: 'RegistrationTokenInput' });
export type RegistrationTokenInput = z.input<typeof RegistrationTokenInput>;

export const RegistrationToken = z
  .object({
    id: z.uuid(),
    resources: z.array(ResourceCap),
    auth_methods: z.array(AuthMethod),
    max_token_ttl: z.number().nullable(),
    uses: z.number(),
    uses_left: z.number(),
    status: z.enum(['active', 'used', 'expired']),
    created_by: z.string(),
    created_at: z.iso.datetime(),
    expires_at: z.iso.datetime(),
  })
  .meta({ id: 'RegistrationToken', description: 'An initial access token (RFC 7591 §3); never its value.' });
export type RegistrationToken = z.output<typeof RegistrationToken>;

export const RegistrationTokenWithValue = RegistrationToken.extend({
  token: z
    .string()
    .meta({ description: 'The token, shown this once: present it as `Authorization: Bearer`.' }),
}).meta({ id: 'RegistrationTokenWithValue' });
export type RegistrationTokenWithValue = z.output<typeof RegistrationTokenWithValue>;

/** A SHA-256 JWK thumbprint, base64url without padding. @see RFC 7638 §3 */
const DpopThumbprint = z
  .string({ error: 'expected a JWK thumbprint (43 base64url characters)' })
  .regex(/^[A-Za-z0-9_-]{43}$/, 'expected a SHA-256 JWK thumbprint: 43 base64url characters (RFC 7638)');

/**
 * RFC 7591 §2 client metadata as Mayfly understands it, plus two extensions: `mayfly_grants` (the resources and
 * scopes asked for) and `dpop_jkts` (pinned DPoP keys). Members it does not know are dropped, as §2 asks.
 */
export const ClientMetadata = z.object({
  client_name: z
    .string({ error: 'expected a string' })
    .trim()
    .min(1, 'must not be empty')
    .max(200, 'at most 200 characters')
    .optional(),
  token_endpoint_auth_method: AuthMethod.optional(),
  jwks: Jwks.optional(),
  jwks_uri: z
    .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
    .max(2048, 'at most 2048 characters')
    .optional(),
  grant_types: z
    .array(z.string({ error: 'expected grant type strings' }), { error: 'expected an array' })
    .refine(
      (list) => list.length === 1 && list[0] === 'client_credentials',
      'only ["client_credentials"] is supported: a registered client obtains tokens for itself',
    )
    .optional(),
  response_types: z
    .array(z.unknown(), { error: 'expected an array' })
    .max(0, 'must be empty: no grant of this server uses the authorization endpoint')
    .optional(),
  scope: z.string({ error: 'expected space-separated scopes' }).max(10_000, 'too long').optional(),
  mayfly_grants: z
    .array(ResourceCap, { error: 'expected an array of {resource, scopes}' })
    .min(1, 'at least one grant is required')
    .max(100, 'at most 100 grants')
    .refine(
      (grants) => new Set(grants.map((g) => g.resource)).size === grants.length,
      'a resource may appear in only one grant',
    )
    .optional(),
  dpop_bound_access_tokens: z
    .literal(true, {
      error: 'must be true: every token of a registered client is DPoP-bound (RFC 9449 §5.2)',
    })
    .optional(),
  dpop_jkts: z
    .array(DpopThumbprint, { error: 'expected an array of JWK thumbprints' })
    .max(50, 'at most 50 keys')
    .refine((list) => new Set(list).size === list.length, 'thumbprints must not repeat')
    .optional(),
});
export type ClientMetadata = z.output<typeof ClientMetadata>;
