import { z } from 'zod';

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
export const ScopeToken = z
  .string()
  .regex(
    /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/,
    'a scope is 1 to 128 printable ASCII characters, no space, quote or backslash',
  );

export const ScopeList = z
  .array(ScopeToken)
  .min(1, 'at least one scope is required')
  .max(100, 'at most 100 scopes')
  .refine((scopes) => new Set(scopes).size === scopes.length, 'scopes must not repeat');

/** RFC 8707 §2: an absolute URI without a fragment. */
export const ResourceIdentifier = z
  .string()
  .max(2048, 'at most 2048 characters')
  // RFC 3986 URIs are printable ASCII; spaces and control characters are never part of one.
  .regex(/^[\x21-\x7E]*$/, 'a URI has no spaces, control or non-ASCII characters (percent-encode them)')
  // RFC 3986 §2: unreserved, reserved and percent-encoded octets only; " < > \\ ^ ` { | } never appear bare.
  .regex(
    /^(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/,
    'a URI has only the characters RFC 3986 allows; percent-encode the others (e.g. %20) and write % as %25',
  )
  .refine((value) => {
    const url = URL.parse(value);
    return url !== null && value.length > 0 && !value.includes('#') && url.href.length > 0;
  }, 'expected an absolute URI without a fragment, e.g. https://api.example.com')
  .meta({ format: 'uri', example: 'https://api.example.com' });

const ResourceName = z.string().trim().min(1, 'a name is 1 to 200 characters').max(200);
const TokenTtl = z
  .number({ error: 'expected a number of seconds' })
  .int('expected whole seconds')
  .positive('expected a positive number of seconds')
  .meta({ description: 'Access token lifetime in seconds; at most MAYFLY_MAX_TOKEN_TTL.' });
/** Who manages an object declaratively; `mayfly apply --prune` deletes only what it manages. */
export const ManagedBy = z
  .string({ error: 'expected a short label such as policy' })
  .regex(/^[A-Za-z0-9._:/-]{1,100}$/, 'expected 1 to 100 letters, digits or . _ : / -')
  .nullable()
  .meta({ description: 'Who manages this object declaratively (e.g. policy); null: managed by hand.' });

const TokenFormat = z.enum(['jwt', 'opaque'], { error: 'expected jwt or opaque' });

export const ResourceInput = z
  .strictObject({
    identifier: ResourceIdentifier,
    name: ResourceName.optional(),
    scopes: ScopeList,
    token_ttl: TokenTtl.optional(),
    token_format: TokenFormat.default('jwt'),
    managed_by: ManagedBy.optional(),
  })
  .meta({ id: 'ResourceInput' });
export type ResourceInput = z.input<typeof ResourceInput>;

export const ResourceUpdate = z
  .strictObject({
    name: ResourceName.nullable().optional(),
    scopes: ScopeList.optional(),
    token_ttl: TokenTtl.optional(),
    token_format: TokenFormat.optional(),
    managed_by: ManagedBy.optional(),
  })
  .refine(
    (update) => Object.keys(update).length > 0,
    'nothing to update: name, scopes, token_ttl or token_format',
  )
  .meta({ id: 'ResourceUpdate' });
export type ResourceUpdate = z.input<typeof ResourceUpdate>;

export const Resource = z
  .object({
    id: z.uuid(),
    identifier: z.string(),
    name: z.string().nullable(),
    scopes: z.array(z.string()),
    token_ttl: z.number().int(),
    token_format: TokenFormat,
    managed_by: z.string().nullable(),
    reserved: z.boolean().meta({ description: 'The admin API resource; not editable here.' }),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'Resource' });
export type Resource = z.output<typeof Resource>;
