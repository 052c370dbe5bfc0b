import { randomBytes } from 'node:crypto';

import type { z } from 'zod';

import type { Config } from '../config/config.ts';
import type { Db } from '../db/connect.ts';
import type { ClientRow } from '../db/tables/client.table.ts';
import type { ResourceRow } from '../db/tables/resource.table.ts';
import { MayflyError } from '../errors.ts';
import { generateClientSecret, hashClientSecret } from './client-secret.ts';
import {
  insertClient,
  insertClientGrants,
  insertClientIntrospections,
  insertClientSecret,
} from './client.repository.ts';
import { ClientInput, ResourceInput } from './client.schemas.ts';
import { findResourcesByIdentifiers, insertResource } from './resource.repository.ts';

export type TokenLimits = Config['tokens'];

function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.map((issue) => ({
    path: issue.path.join('.'),
    message: issue.message,
  }));
  const summary = details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ');
  throw new MayflyError('invalid_input', summary, details);
}

export async function createResource(
  db: Db,
  input: ResourceInput,
  limits: TokenLimits,
): Promise<ResourceRow> {
  const parsed = parseInput(ResourceInput, input);
  const tokenTtl = parsed.tokenTtl ?? limits.defaultTtl;
  if (tokenTtl > limits.maxTtl) {
    throw new MayflyError(
      'invalid_input',
      `tokenTtl: at most ${limits.maxTtl} seconds (MAYFLY_MAX_TOKEN_TTL)`,
      [{ path: 'tokenTtl', message: `at most ${limits.maxTtl} seconds` }],
    );
  }
  const row = await insertResource(db, {
    identifier: parsed.identifier,
    name: parsed.name ?? null,
    scopes: parsed.scopes,
    token_ttl: tokenTtl,
    token_format: parsed.tokenFormat,
  });
  if (!row)
    throw new MayflyError('resource_exists', `a resource with identifier ${parsed.identifier} exists`);
  return row;
}

export interface CreatedClient {
  client: ClientRow;
  /** Shown once, never stored in clear. */
  clientSecret: string | undefined;
}

export async function createClient(db: Db, input: ClientInput): Promise<CreatedClient> {
  const parsed = parseInput(ClientInput, input);
  return db.transaction().execute(async (trx) => {
    const named = [...new Set([...parsed.grants.map((g) => g.resource), ...parsed.introspects])];
    const found = new Map((await findResourcesByIdentifiers(trx, named)).map((r) => [r.identifier, r]));
    const missing = named.filter((identifier) => !found.has(identifier));
    if (missing.length) {
      throw new MayflyError('resource_not_found', `no resource with identifier ${missing.join(', ')}`);
    }
    const resourceNamed = (identifier: string): ResourceRow => {
      const resource = found.get(identifier);
      // Unreachable after the check above; keeps the lookup typed without a non-null assertion.
      if (!resource) throw new MayflyError('resource_not_found', `no resource with identifier ${identifier}`);
      return resource;
    };
    const grants = parsed.grants.map((grant) => {
      const resource = resourceNamed(grant.resource);
      const undefinedScopes = grant.scopes.filter((scope) => !resource.scopes.includes(scope));
      if (undefinedScopes.length) {
        throw new MayflyError(
          'scope_not_defined',
          `${grant.resource} does not define ${undefinedScopes.join(', ')}; it defines ${resource.scopes.join(' ')}`,
        );
      }
      return { resourceId: resource.id, scopes: grant.scopes };
    });

    const client = await insertClient(trx, {
      id: randomBytes(16).toString('base64url'),
      name: parsed.name,
      auth_method: parsed.authMethod,
      jwks: parsed.jwks ? JSON.stringify(parsed.jwks) : null,
      jwks_uri: parsed.jwksUri ?? null,
      bearer_allowed: parsed.bearerAllowed,
    });
    let clientSecret: string | undefined;
    if (parsed.authMethod !== 'private_key_jwt') {
      clientSecret = generateClientSecret();
      await insertClientSecret(trx, client.id, hashClientSecret(clientSecret));
    }
    await insertClientGrants(trx, client.id, grants);
    await insertClientIntrospections(
      trx,
      client.id,
      parsed.introspects.map((identifier) => resourceNamed(identifier).id),
    );
    return { client, clientSecret };
  });
}
