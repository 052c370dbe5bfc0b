import { randomBytes } from 'node:crypto';

import type { AdapterPayload } from 'oidc-provider';

import type { ClientAccess } from '../clients/client.repository.ts';

/** Mayfly's own view of a client, carried on oidc-provider's client object under the `mayfly` property. */
export interface MayflyClientFacts {
  secretHashes: string[];
  grants: ClientAccess['grants'];
  introspects: string[];
  bearerAllowed: boolean;
  /** Pinned DPoP key thumbprints; empty: any key. */
  dpopJkts: string[];
}

/**
 * The provider insists on a `client_secret` member for secret-based methods, although Mayfly checks secrets
 * against stored hashes (see compareClientSecret). The placeholder is random per process so that it could never
 * be guessed even if that check were bypassed.
 */
const SECRET_PLACEHOLDER = randomBytes(32).toString('base64url');

export function toClientMetadata(access: ClientAccess): AdapterPayload | undefined {
  const { client } = access;
  if (client.disabled_at) return undefined;
  const facts: MayflyClientFacts = {
    secretHashes: access.secretHashes,
    grants: access.grants,
    introspects: access.introspects,
    bearerAllowed: client.bearer_allowed,
    dpopJkts: client.dpop_jkts,
  };
  return {
    client_id: client.id,
    client_name: client.name,
    token_endpoint_auth_method: client.auth_method,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // @see RFC 9449 §5.2: a proof is mandatory unless the client was explicitly created bearer-allowed.
    // A client with pinned keys always proves one of them.
    dpop_bound_access_tokens: !client.bearer_allowed || client.dpop_jkts.length > 0,
    ...(client.auth_method === 'private_key_jwt'
      ? client.jwks
        ? { jwks: client.jwks }
        : { jwks_uri: client.jwks_uri ?? undefined }
      : { client_secret: SECRET_PLACEHOLDER }),
    mayfly: facts,
  };
}

export function clientFacts(client: object): MayflyClientFacts | undefined {
  return (client as { mayfly?: MayflyClientFacts }).mayfly;
}
