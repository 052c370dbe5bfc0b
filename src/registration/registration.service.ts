import type { ChangeDeps } from '../audit/audit-trail.ts';
import type { Client } from '../clients/client.schemas.ts';
import { matchesSecretHash } from '../clients/client-secret.ts';
import { findClientAccess, hasClientNamedOutside } from '../clients/client.repository.ts';
import { createClient, deleteClient, getClient, updateClient } from '../clients/client.service.ts';
import { findResourcesByIdentifiers } from '../clients/resource.repository.ts';
import type { Db } from '../db/connect.ts';
import type { ClientAuthMethod } from '../db/tables/client.table.ts';
import type { RegistrationResourceCap } from '../db/tables/registration.table.ts';
import { MayflyError } from '../errors.ts';
import { invalidMetadata, invalidToken, RegistrationError } from './registration-error.ts';
import {
  consumeRegistrationToken,
  findRegistrationTokenByHash,
  insertClientRegistration,
  rotateRegistrationAccessToken,
} from './registration.repository.ts';
import { ClientMetadata } from './registration.schemas.ts';
import { generateRegistrationAccessToken, hashRegistrationToken } from './registration-token.ts';

/** Clients created here are marked so, in the admin API and CLI as in `mayfly apply --prune`'s eyes. */
export const REGISTRATION_MANAGER = 'registration';

export interface RegistrationDeps extends ChangeDeps {
  /** Base of `registration_client_uri`. */
  issuer: string;
}

/** What an initial access token allows, copied onto each client it registers. */
export interface RegistrationCaps {
  resources: RegistrationResourceCap[];
  authMethods: ClientAuthMethod[];
  maxTokenTtl: number | null;
}

/** Why a presented initial access token was refused: for the audit line only, never for the caller. */
export type TokenRefusal = 'unknown' | 'expired' | 'used_up';

export class RefusedToken extends Error {
  override name = 'RefusedToken';
  readonly reason: TokenRefusal;
  readonly tokenId: string | undefined;

  constructor(reason: TokenRefusal, tokenId: string | undefined) {
    super(`initial access token refused: ${reason}`);
    this.reason = reason;
    this.tokenId = tokenId;
  }
}

/** Client metadata as registered: RFC 7591 §3.2.1, plus Mayfly's extensions. */
export type RegisteredMetadata = Record<string, unknown>;

const DEFAULT_NAME = 'registered client';

/**
 * A registrant chooses the name of its client (RFC 7591 §2 client_name), so a registered client may not take the
 * name of a client the operators keep: one a policy manages (`mayfly apply` knows its clients by name), one made
 * by hand (an admin client, or one `apply --adopt` may take over) or one another manager labels. Names are
 * compared ignoring case, as the client list searches them, so that no one reading it mistakes the one for the
 * other. Registered clients may share names among themselves: none of them is the operators'.
 * @see RFC 7591 §3.2.2
 */
async function refuseOperatorsName(db: Db, name: string, defaulted: boolean): Promise<void> {
  if (await hasClientNamedOutside(db, name, REGISTRATION_MANAGER)) {
    throw invalidMetadata(
      `client_name: ${JSON.stringify(name)}${defaulted ? ' (the default)' : ''} is the name of a client ` +
        "this server's operators manage (names compare ignoring case), and a registered client may not take " +
        'it: choose another client_name',
    );
  }
}

/**
 * Checks the request for what this server never accepts before its members are parsed, so that the error code
 * is the specific one RFC 7591 §3.2.2 defines.
 */
export function parseClientMetadata(body: unknown): ClientMetadata {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidMetadata('the request body must be a JSON object of client metadata (RFC 7591 §2)');
  }
  const raw = body as Record<string, unknown>;
  if (raw.software_statement !== undefined) {
    throw new RegistrationError(
      'unapproved_software_statement',
      'software_statement: software statements are not supported by this server',
    );
  }
  const redirects = raw.redirect_uris;
  if (redirects !== undefined && !(Array.isArray(redirects) && redirects.length === 0)) {
    throw new RegistrationError(
      'invalid_redirect_uri',
      'redirect_uris: must be empty or absent: registered clients use client_credentials, which redirects nowhere',
    );
  }
  const parsed = ClientMetadata.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw invalidMetadata(
    parsed.error.issues
      .map((issue) => (issue.path.length ? `${formatPath(issue.path)}: ${issue.message}` : issue.message))
      .join('; '),
  );
}

function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`))
    .join('');
}

const quoted = (scopes: readonly string[]) => `"${scopes.join(' ')}"`;
const isOrAre = (list: readonly unknown[]) => (list.length > 1 ? 'are' : 'is');

/**
 * The grants asked for, within the caps. `mayfly_grants` names resources and scopes; without it `scope` picks,
 * on every capped resource, the scopes it allows; with neither, the client gets all the caps allow.
 */
export function resolveGrants(metadata: ClientMetadata, caps: RegistrationCaps): RegistrationResourceCap[] {
  const allowedResources = caps.resources.map((c) => c.resource).join(', ');
  const requestedScopes = metadata.scope?.split(' ').filter(Boolean);
  if (metadata.mayfly_grants) {
    for (const [i, grant] of metadata.mayfly_grants.entries()) {
      const cap = caps.resources.find((c) => c.resource === grant.resource);
      if (!cap) {
        throw invalidMetadata(
          `mayfly_grants[${i}].resource: ${grant.resource} is not allowed by this registration token (allowed: ${allowedResources})`,
        );
      }
      const beyond = grant.scopes.filter((scope) => !cap.scopes.includes(scope));
      if (beyond.length) {
        throw invalidMetadata(
          `mayfly_grants[${i}].scopes: ${quoted(beyond)} ${isOrAre(beyond)} not allowed on ${grant.resource} by this registration token (allowed: ${cap.scopes.join(' ')})`,
        );
      }
    }
    if (requestedScopes?.length) {
      const union = new Set(metadata.mayfly_grants.flatMap((g) => g.scopes));
      if (requestedScopes.length !== union.size || !requestedScopes.every((s) => union.has(s))) {
        throw invalidMetadata(
          `scope: must list exactly the scopes of mayfly_grants (${[...union].join(' ')}), or be left out`,
        );
      }
    }
    return metadata.mayfly_grants;
  }
  if (!requestedScopes?.length)
    return caps.resources.map((c) => ({ resource: c.resource, scopes: [...c.scopes] }));
  const allowed = [...new Set(caps.resources.flatMap((c) => c.scopes))];
  const beyond = [...new Set(requestedScopes.filter((scope) => !allowed.includes(scope)))];
  if (beyond.length) {
    throw invalidMetadata(
      `scope: ${quoted(beyond)} ${isOrAre(beyond)} not allowed by this registration token (allowed: ${allowed.join(' ')})`,
    );
  }
  return caps.resources
    .map((c) => ({
      resource: c.resource,
      scopes: c.scopes.filter((scope) => requestedScopes.includes(scope)),
    }))
    .filter((grant) => grant.scopes.length > 0);
}

function resolveAuthMethod(metadata: ClientMetadata, caps: RegistrationCaps): ClientAuthMethod {
  // RFC 7591 §2: client_secret_basic when left out.
  const method = metadata.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!caps.authMethods.includes(method)) {
    throw invalidMetadata(
      `token_endpoint_auth_method: ${method}${metadata.token_endpoint_auth_method ? '' : ' (the default)'} is not allowed by this registration token (allowed: ${caps.authMethods.join(', ')})`,
    );
  }
  return method;
}

/**
 * The lifetime of a token is the resource's; a registration token with `max_token_ttl` admits only resources
 * whose tokens live no longer.
 */
async function checkTokenLifetimes(
  db: Db,
  metadata: ClientMetadata,
  grants: readonly RegistrationResourceCap[],
  caps: RegistrationCaps,
): Promise<void> {
  const max = caps.maxTokenTtl;
  if (max === null) return;
  const resources = await findResourcesByIdentifiers(
    db,
    grants.map((g) => g.resource),
  );
  for (const [i, grant] of grants.entries()) {
    const ttl = resources.find((r) => r.identifier === grant.resource)?.token_ttl;
    if (ttl !== undefined && ttl > max) {
      const field = metadata.mayfly_grants ? `mayfly_grants[${i}].resource` : 'scope';
      throw invalidMetadata(
        `${field}: tokens for ${grant.resource} live ${ttl} s, longer than this registration token allows (max_token_ttl ${max} s)`,
      );
    }
  }
}

/** The client service names members as the admin API does; the registration endpoint as RFC 7591 does. */
const METADATA_NAMES: Record<string, string> = {
  name: 'client_name',
  auth_method: 'token_endpoint_auth_method',
  grants: 'mayfly_grants',
};

/** A rule the client service enforces (keys, grants on resources changed since the token was minted). */
function asMetadataError(error: unknown): unknown {
  if (!(error instanceof MayflyError)) return error;
  if (error.code === 'invalid_input') {
    const problems = error.details.length
      ? error.details.map((d) => {
          const [head = '', ...rest] = d.path.split('.');
          const path = [METADATA_NAMES[head] ?? head, ...rest].join('.');
          return path ? `${path}: ${d.message}` : d.message;
        })
      : [error.message];
    return invalidMetadata(problems.join('; '));
  }
  if (error.code === 'resource_not_found' || error.code === 'scope_not_defined') {
    return invalidMetadata(`mayfly_grants: ${error.message}`);
  }
  return error;
}

function toMetadata(
  client: Client,
  registration: { accessToken: string; issuer: string },
  clientSecret: string | undefined,
): RegisteredMetadata {
  const keys =
    client.auth_method === 'private_key_jwt'
      ? client.jwks
        ? { jwks: client.jwks }
        : { jwks_uri: client.jwks_uri }
      : {};
  return {
    client_id: client.client_id,
    ...(clientSecret === undefined ? {} : { client_secret: clientSecret, client_secret_expires_at: 0 }),
    client_id_issued_at: Math.floor(Date.parse(client.created_at) / 1000),
    registration_access_token: registration.accessToken,
    registration_client_uri: `${registration.issuer}/register/${encodeURIComponent(client.client_id)}`,
    client_name: client.name,
    token_endpoint_auth_method: client.auth_method,
    ...keys,
    grant_types: ['client_credentials'],
    response_types: [],
    scope: [...new Set(client.grants.flatMap((g) => g.scopes))].join(' '),
    mayfly_grants: client.grants,
    dpop_bound_access_tokens: true,
    dpop_jkts: client.dpop_jkts,
  };
}

/**
 * Registers a client: one use of the initial access token, the client and its registration access token commit
 * together or not at all, so a refused registration leaves the token's use untouched and of two registrations
 * racing for one use exactly one succeeds.
 * @see RFC 7591 §3
 */
export async function registerClient(
  deps: RegistrationDeps,
  initialAccessToken: string,
  body: unknown,
): Promise<{ metadata: RegisteredMetadata; registrationTokenId: string }> {
  const metadata = parseClientMetadata(body);
  const tokenHash = hashRegistrationToken(initialAccessToken);
  const accessToken = generateRegistrationAccessToken();
  return deps.db.transaction().execute(async (trx) => {
    const now = deps.clock.now();
    const iat = await consumeRegistrationToken(trx, tokenHash, now);
    if (!iat) {
      const known = await findRegistrationTokenByHash(trx, tokenHash);
      throw new RefusedToken(!known ? 'unknown' : known.uses_left === 0 ? 'used_up' : 'expired', known?.id);
    }
    const caps: RegistrationCaps = {
      resources: iat.resources,
      authMethods: iat.auth_methods,
      maxTokenTtl: iat.max_token_ttl,
    };
    const authMethod = resolveAuthMethod(metadata, caps);
    const grants = resolveGrants(metadata, caps);
    await checkTokenLifetimes(trx, metadata, grants, caps);
    // Only once the token is proven: a caller without one learns nothing about the names of clients.
    const name = metadata.client_name ?? DEFAULT_NAME;
    await refuseOperatorsName(trx, name, metadata.client_name === undefined);
    const created = await createClient(
      { ...deps, db: trx },
      { id: `registration:${iat.id}` },
      {
        name,
        auth_method: authMethod,
        ...(metadata.jwks ? { jwks: metadata.jwks } : {}),
        ...(metadata.jwks_uri ? { jwks_uri: metadata.jwks_uri } : {}),
        grants,
        bearer_allowed: false,
        dpop_jkts: metadata.dpop_jkts ?? [],
        managed_by: REGISTRATION_MANAGER,
      },
    ).catch((error: unknown) => {
      throw asMetadataError(error);
    });
    await insertClientRegistration(trx, {
      client_id: created.client_id,
      access_token_hash: hashRegistrationToken(accessToken),
      registration_token_id: iat.id,
      resources: JSON.stringify(caps.resources),
      auth_methods: caps.authMethods,
      max_token_ttl: caps.maxTokenTtl,
      issued_at: now,
    });
    const { client_secret: clientSecret, ...client } = created;
    return {
      metadata: toMetadata(client, { accessToken, issuer: deps.issuer }, clientSecret),
      registrationTokenId: iat.id,
    };
  });
}

/**
 * Proves the registration access token and replaces it, in the caller's transaction: the new one is answered,
 * the presented one stops working once that transaction commits.
 * @see RFC 7592 §3
 */
async function rotateAccessToken(
  trx: Db,
  clientId: string,
  presented: string,
): Promise<{ accessToken: string; caps: RegistrationCaps }> {
  const accessToken = generateRegistrationAccessToken();
  const row = await rotateRegistrationAccessToken(
    trx,
    clientId,
    hashRegistrationToken(presented),
    hashRegistrationToken(accessToken),
  );
  if (!row) throw invalidToken('the registration access token is not valid for this client');
  return {
    accessToken,
    caps: { resources: row.resources, authMethods: row.auth_methods, maxTokenTtl: row.max_token_ttl },
  };
}

const managementActor = (clientId: string) => ({ id: `registration-client:${clientId}` });

/**
 * The client, as long as registration still manages it: once an administrator relabelled it (made it theirs by
 * hand, or handed it to a policy), its registrant no longer reads, changes or deletes it, as if it were gone.
 * @see RFC 7592 §2.1
 */
async function getRegisteredClient(deps: RegistrationDeps, trx: Db, clientId: string): Promise<Client> {
  const client = await getClient({ ...deps, db: trx }, clientId);
  if (client.managed_by !== REGISTRATION_MANAGER) {
    throw invalidToken(
      'an administrator took this client over: it is no longer managed through registration',
    );
  }
  return client;
}

/** @see RFC 7592 §2.1 */
export async function readRegistration(
  deps: RegistrationDeps,
  clientId: string,
  presented: string,
): Promise<RegisteredMetadata> {
  return deps.db.transaction().execute(async (trx) => {
    const { accessToken } = await rotateAccessToken(trx, clientId, presented);
    const client = await getRegisteredClient(deps, trx, clientId);
    return toMetadata(client, { accessToken, issuer: deps.issuer }, undefined);
  });
}

/**
 * Replaces the metadata, still within the caps the client was registered with. Members left out take their
 * defaults, as RFC 7592 §2.2 asks; the authentication method and the client secret never change here.
 * @see RFC 7592 §2.2
 */
export async function updateRegistration(
  deps: RegistrationDeps,
  clientId: string,
  presented: string,
  body: unknown,
): Promise<RegisteredMetadata> {
  return deps.db.transaction().execute(async (trx) => {
    const { accessToken, caps } = await rotateAccessToken(trx, clientId, presented);
    const current = await getRegisteredClient(deps, trx, clientId);
    const metadata = parseClientMetadata(body);
    const raw = body as Record<string, unknown>;
    if (raw.client_id !== clientId) {
      throw invalidMetadata(
        'client_id: must be present and equal to the client_id of the registration_client_uri',
      );
    }
    // RFC 7592 §2.2: a client_secret sent back must be the current one; the secret itself never changes here.
    if (raw.client_secret !== undefined) {
      const access = await findClientAccess(trx, clientId, deps.clock.now());
      const secret = raw.client_secret;
      if (typeof secret !== 'string' || !matchesSecretHash(secret, access?.secretHashes ?? [])) {
        throw invalidMetadata(
          'client_secret: does not match the current client secret; leave it out or send it as issued',
        );
      }
    }
    const method = metadata.token_endpoint_auth_method ?? current.auth_method;
    if (method !== current.auth_method) {
      throw invalidMetadata(
        `token_endpoint_auth_method: cannot change from ${current.auth_method} to ${method}; register a new client instead`,
      );
    }
    const grants = resolveGrants(metadata, caps);
    await checkTokenLifetimes(trx, metadata, grants, caps);
    if (method === 'private_key_jwt' && !metadata.jwks === !metadata.jwks_uri) {
      throw invalidMetadata('jwks: private_key_jwt needs exactly one of jwks or jwks_uri');
    }
    // Only a new name is checked: a client keeps the one it has, even if an operator's client took it since.
    const name = metadata.client_name ?? DEFAULT_NAME;
    if (name !== current.name) await refuseOperatorsName(trx, name, metadata.client_name === undefined);
    const client = await updateClient({ ...deps, db: trx }, managementActor(clientId), clientId, {
      name,
      ...(metadata.jwks ? { jwks: metadata.jwks } : {}),
      ...(metadata.jwks_uri ? { jwks_uri: metadata.jwks_uri } : {}),
      grants,
      dpop_jkts: metadata.dpop_jkts ?? [],
    }).catch((error: unknown) => {
      throw asMetadataError(error);
    });
    return toMetadata(client, { accessToken, issuer: deps.issuer }, undefined);
  });
}

/** Deletes the client, as an admin would: its secrets, grants and tokens go at once. @see RFC 7592 §2.3 */
export async function deleteRegistration(
  deps: RegistrationDeps,
  clientId: string,
  presented: string,
): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    await rotateAccessToken(trx, clientId, presented);
    await getRegisteredClient(deps, trx, clientId);
    await deleteClient({ ...deps, db: trx }, managementActor(clientId), clientId);
  });
}
