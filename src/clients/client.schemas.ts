import { z } from 'zod';

import { hasPrivateMembers } from '../keys/jwk.ts';

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
export const ScopeToken = z
  .string()
  .regex(
    /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/,
    'a scope is 1 to 128 printable ASCII characters, no space, quote or backslash',
  );

const ScopeList = z
  .array(ScopeToken)
  .min(1, 'at least one scope is required')
  .max(100, 'at most 100 scopes')
  .refine((scopes) => new Set(scopes).size === scopes.length, 'scopes must not repeat');

/** RFC 8707 §2: an absolute URI without a fragment. */
export const ResourceIdentifier = z
  .string()
  .max(2048, 'at most 2048 characters')
  .refine((value) => {
    const url = URL.parse(value);
    return url !== null && value.length > 0 && !value.includes('#') && url.href.length > 0;
  }, 'expected an absolute URI without a fragment, e.g. https://api.example.com');

export const ResourceInput = z.object({
  identifier: ResourceIdentifier,
  name: z.string().trim().min(1).max(200).optional(),
  scopes: ScopeList,
  tokenTtl: z
    .number()
    .int('expected whole seconds')
    .positive('expected a positive number of seconds')
    .optional(),
  tokenFormat: z.enum(['jwt', 'opaque'], { error: 'expected jwt or opaque' }).default('jwt'),
});
export type ResourceInput = z.input<typeof ResourceInput>;

const PublicJwk = z
  .object({ kty: z.enum(['EC', 'RSA', 'OKP'], { error: 'expected an EC, RSA or OKP public key' }) })
  .catchall(z.unknown())
  .refine(
    (jwk) => !hasPrivateMembers(jwk),
    'a JWKS holds public keys only: remove the private members (d, p, q, dp, dq, qi, oth, k)',
  );

export const Jwks = z.object({ keys: z.array(PublicJwk).min(1, 'at least one key is required').max(10) });

export const ClientGrantInput = z.object({
  resource: ResourceIdentifier,
  scopes: ScopeList,
});

export const ClientInput = z
  .object({
    name: z.string().trim().min(1, 'a name is required').max(200),
    authMethod: z
      .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'], {
        error: 'expected client_secret_basic, client_secret_post or private_key_jwt',
      })
      .default('client_secret_basic'),
    jwks: Jwks.optional(),
    jwksUri: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
    grants: z.array(ClientGrantInput).max(100).default([]),
    introspects: z.array(ResourceIdentifier).max(100).default([]),
    bearerAllowed: z.boolean().default(false),
  })
  .superRefine((input, ctx) => {
    if (input.authMethod === 'private_key_jwt') {
      if (!input.jwks === !input.jwksUri) {
        ctx.addIssue({
          code: 'custom',
          path: ['jwks'],
          message: 'private_key_jwt needs exactly one of jwks or jwksUri',
        });
      }
    } else if (input.jwks || input.jwksUri) {
      ctx.addIssue({
        code: 'custom',
        path: [input.jwks ? 'jwks' : 'jwksUri'],
        message: `keys are only used with private_key_jwt, not ${input.authMethod}`,
      });
    }
    const resources = input.grants.map((g) => g.resource);
    if (new Set(resources).size !== resources.length) {
      ctx.addIssue({ code: 'custom', path: ['grants'], message: 'a resource may appear in only one grant' });
    }
  });
export type ClientInput = z.input<typeof ClientInput>;
