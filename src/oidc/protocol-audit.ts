import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';

import { basicUser } from '../http/basic-auth.ts';
import type { Audit } from '../observability/audit.ts';
import type { Metrics } from '../observability/metrics.ts';
import { authenticatedClient } from './client-authentication.ts';
import { clientFacts } from './client-metadata.ts';
import { ROUTES } from './protocol-routes.ts';
import { tokenAudience } from './resource-rules.ts';

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
  /** Why the policy said no, for the audit line. */
  policyRefusal?: string;
  /** The client the request named, read before the provider ran (it may never run: rate limits). */
  claimedClientId?: string;
}

/** Whatever a request claims goes to the audit line, cut to the longest client id Mayfly accepts. */
export function recordClaimedClient(ctx: Context, clientId: string): void {
  (ctx.state as AuditState).claimedClientId = clientId.slice(0, 255);
}

export function recordProtocolError(ctx: Context, error: ProtocolError): void {
  (ctx.state as AuditState).protocolError = error;
}

export function recordedProtocolError(ctx: Context): ProtocolError | undefined {
  return (ctx.state as AuditState).protocolError;
}

/** Records what an access policy decided; `refusal` is the reason when it said no. */
export function recordPolicyDecision(ctx: Context, refusal: string | undefined): boolean {
  const allowed = refusal === undefined;
  const state = ctx.state as AuditState;
  state.policyAllowed = allowed;
  if (refusal !== undefined) state.policyRefusal = refusal;
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

/** The DPoP key thumbprint an issued token is bound to. */
export function issuedTokenJkt(ctx: Context): string | undefined {
  const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
  return (oidc?.entities.ClientCredentials as TokenEntity | undefined)?.jkt;
}

/** The client a failed request claimed to be, from the form or the Basic credentials' user part only. */
function claimedClientId(ctx: Context): string | undefined {
  const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
  const params = oidc?.params as { client_id?: unknown } | undefined;
  if (typeof params?.client_id === 'string') return params.client_id;
  return basicUser(ctx.get('authorization'));
}

/** The precise reason, with its underlying cause (a failed jwks_uri fetch, say) when there is one. */
function describeFailure(error: ProtocolError | undefined): string | undefined {
  if (!error) return undefined;
  const reason = error.error_detail ?? error.error_description ?? error.message;
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && cause !== reason ? `${reason ?? 'failed'}: ${cause}` : reason;
}

/**
 * One audit line per token, introspection and revocation request, written after the provider answered.
 */
export function auditProtocolRequests(audit: Audit, metrics: Metrics) {
  return async function auditProtocolRequest(ctx: Context, next: Next): Promise<void> {
    const route = ctx.method === 'POST' ? AUDITED_ROUTES.get(ctx.path) : undefined;
    if (!route) {
      await next();
      return;
    }
    // Read before the request is handled: the socket may be gone by the time the answer is written.
    const ip = ctx.ip;
    try {
      await next();
    } catch (thrown) {
      // Still one audit line for the attempt; the error boundary answers it.
      recordProtocolError(ctx, {
        error: 'server_error',
        message: thrown instanceof Error ? thrown.message : 'failed',
      });
      ctx.status = 500;
      throw thrown;
    } finally {
      writeAuditLine(audit, metrics, ctx, route, ip);
    }
  };
}

const AUDITED_ROUTES = new Map<string, 'token' | 'introspection' | 'revocation'>([
  [ROUTES.token, 'token'],
  [ROUTES.introspection, 'introspection'],
  [ROUTES.revocation, 'revocation'],
]);

function writeAuditLine(
  audit: Audit,
  metrics: Metrics,
  ctx: Context,
  route: 'token' | 'introspection' | 'revocation',
  ip: string,
): void {
  const state = ctx.state as AuditState;
  const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
  const client = oidc?.client;
  const failure = ctx.status >= 400;
  const error = state.protocolError;
  const common = {
    outcome: failure ? ('failure' as const) : ('success' as const),
    client_id: client?.clientId ?? state.claimedClientId ?? claimedClientId(ctx),
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
    // Labelled with a client only once the request authenticated as it, never with one it merely named.
    metrics.tokenRequest(authenticatedClient(ctx), common.outcome, common.error);
    const requestedScope = typeof params?.scope === 'string' ? params.scope : undefined;
    audit.tokenRequest({
      ...common,
      resource: tokenAudience(token) ?? (typeof params?.resource === 'string' ? params.resource : undefined),
      scopes: (failure ? requestedScope : token?.scope)?.split(' ').filter(Boolean),
      jkt: token?.jkt,
      token_type: failure ? undefined : token?.tokenType,
      ...(failure ? {} : { token_format: token?.format, expires_in: token?.expiration }),
    });
  } else if (route === 'introspection') {
    const active = (ctx.body as { active?: unknown } | undefined)?.active === true;
    metrics.introspection(common.outcome, active);
    audit.introspection({
      ...common,
      active,
      token_client_id: token?.clientId,
      resource: tokenAudience(token),
      scopes: token?.scope?.split(' ').filter(Boolean),
      jkt: token?.jkt,
      ...(!failure && token && !active && state.policyRefusal ? { reason: state.policyRefusal } : {}),
    });
  } else {
    audit.revocation({
      ...common,
      revoked: !failure && token !== undefined && state.policyAllowed === true,
      token_client_id: token?.clientId,
      resource: tokenAudience(token),
      scopes: token?.scope?.split(' ').filter(Boolean),
      jkt: token?.jkt,
    });
  }
}
