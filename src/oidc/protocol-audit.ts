import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';

import type { Audit } from '../observability/audit.ts';
import { clientFacts } from './client-metadata.ts';
import { ROUTES } from './protocol-routes.ts';

/** What the provider reports about a failed request; `error_detail` holds the precise reason. */
export interface ProtocolError {
  error?: string | undefined;
  error_description?: string | undefined;
  error_detail?: string | undefined;
  message?: string | undefined;
  cause?: unknown;
}

interface AuditState {
  protocolError?: ProtocolError;
  /** Set by the introspection and revocation policies: whether the caller may act on the token. */
  policyAllowed?: boolean;
}

export function recordProtocolError(ctx: Context, error: ProtocolError): void {
  (ctx.state as AuditState).protocolError = error;
}

export function recordedProtocolError(ctx: Context): ProtocolError | undefined {
  return (ctx.state as AuditState).protocolError;
}

export function recordPolicyDecision(ctx: Context, allowed: boolean): boolean {
  (ctx.state as AuditState).policyAllowed = allowed;
  return allowed;
}

interface TokenEntity {
  clientId?: string;
  aud?: string | string[];
  scope?: string;
  jkt?: string;
  format?: 'jwt' | 'opaque';
  tokenType?: 'DPoP' | 'Bearer';
  expiration?: number;
}

/** The client a failed request claimed to be, from the form or the Basic credentials' user part only. */
function claimedClientId(ctx: Context): string | undefined {
  const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
  const params = oidc?.params as { client_id?: unknown } | undefined;
  if (typeof params?.client_id === 'string') return params.client_id;
  const header = ctx.get('authorization');
  if (!header.toLowerCase().startsWith('basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon));
  } catch {
    return undefined;
  }
}

/** The precise reason, with its underlying cause (a failed jwks_uri fetch, say) when there is one. */
function describeFailure(error: ProtocolError | undefined): string | undefined {
  if (!error) return undefined;
  const reason = error.error_detail ?? error.error_description ?? error.message;
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && cause !== reason ? `${reason ?? 'failed'}: ${cause}` : reason;
}

function single(aud: string | string[] | undefined): string | undefined {
  return Array.isArray(aud) ? aud[0] : aud;
}

/**
 * One audit line per token, introspection and revocation request, written after the provider answered.
 */
export function auditProtocolRequests(audit: Audit) {
  return async function auditProtocolRequest(ctx: Context, next: Next): Promise<void> {
    const route =
      ctx.method !== 'POST'
        ? undefined
        : ctx.path === ROUTES.token
          ? 'token'
          : ctx.path === ROUTES.introspection
            ? 'introspection'
            : ctx.path === ROUTES.revocation
              ? 'revocation'
              : undefined;
    if (!route) {
      await next();
      return;
    }
    // Read before the request is handled: the socket may be gone by the time the answer is written.
    const ip = ctx.ip;
    await next();

    const state = ctx.state as AuditState;
    const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
    const client = oidc?.client;
    const failure = ctx.status >= 400;
    const error = state.protocolError;
    const common = {
      outcome: failure ? ('failure' as const) : ('success' as const),
      client_id: client?.clientId ?? claimedClientId(ctx),
      ip,
      ...(failure
        ? {
            error: (ctx.body as { error?: string } | undefined)?.error ?? error?.error,
            reason: describeFailure(error),
          }
        : {}),
      ...(client && clientFacts(client)?.bearerAllowed ? { bearer_allowed: true as const } : {}),
    };
    const token = oidc?.entities.ClientCredentials as TokenEntity | undefined;
    const params = oidc?.params as { resource?: unknown; scope?: unknown } | undefined;

    if (route === 'token') {
      const requestedScope = typeof params?.scope === 'string' ? params.scope : undefined;
      audit.tokenRequest({
        ...common,
        resource: single(token?.aud) ?? (typeof params?.resource === 'string' ? params.resource : undefined),
        scopes: (failure ? requestedScope : token?.scope)?.split(' ').filter(Boolean),
        jkt: token?.jkt,
        token_type: failure ? undefined : token?.tokenType,
        ...(failure ? {} : { token_format: token?.format, expires_in: token?.expiration }),
      });
    } else if (route === 'introspection') {
      const active = (ctx.body as { active?: unknown } | undefined)?.active === true;
      audit.introspection({
        ...common,
        active,
        token_client_id: token?.clientId,
        resource: single(token?.aud),
        scopes: token?.scope?.split(' ').filter(Boolean),
        jkt: token?.jkt,
        ...(!failure && token && !active && state.policyAllowed === false
          ? { reason: 'caller is not a resource server for the token audience' }
          : {}),
      });
    } else {
      audit.revocation({
        ...common,
        revoked: !failure && token !== undefined && state.policyAllowed === true,
        token_client_id: token?.clientId,
        resource: single(token?.aud),
        scopes: token?.scope?.split(' ').filter(Boolean),
        jkt: token?.jkt,
      });
    }
  };
}
