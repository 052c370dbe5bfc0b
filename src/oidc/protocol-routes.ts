import type { Context, Next } from 'koa';

import type { PublishedKeys } from '../keys/key-ring.ts';

export const ROUTES = {
  token: '/token',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
  jwks: '/jwks',
} as const;

const METADATA_PATHS = new Set([
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
]);
const PROVIDER_METADATA_PATH = '/.well-known/openid-configuration';
const SERVED = new Set<string>([ROUTES.token, ROUTES.introspection, ROUTES.revocation]);

/**
 * Only the endpoints a client_credentials server needs are reachable; the provider's browser-facing endpoints
 * (authorization, end session, …) answer 404 instead of existing unused.
 */
export function restrictToServedEndpoints() {
  return async function servedEndpointsOnly(ctx: Context, next: Next): Promise<void> {
    if (SERVED.has(ctx.path) && ctx.method !== 'POST') {
      ctx.status = 405;
      ctx.set('Allow', 'POST');
      ctx.body = {
        error: 'invalid_request',
        error_description: `${ctx.method} is not allowed at ${ctx.path}: use POST`,
      };
      return;
    }
    if (SERVED.has(ctx.path) || METADATA_PATHS.has(ctx.path)) {
      await next();
      return;
    }
    ctx.status = 404;
    ctx.body = { error: 'not_found', error_description: `no endpoint at ${ctx.path}` };
  };
}

/**
 * Every URL the provider derives from a request (the `htu` a DPoP proof must name, the audiences a client
 * assertion may use, the endpoints in the metadata) is built from the Host header and the request target. Fixing
 * both to the issuer's origin means a proof or assertion made for another server never matches, whatever a
 * request claims:
 * - the Host header is set to the issuer's host (exactly one must be sent: RFC 9112 §3.2);
 * - a request target in absolute form (RFC 9112 §3.2.2) is accepted only for the issuer's own origin, and then
 *   rewritten to origin form (Koa would otherwise take it as the request's URL); authority and asterisk forms
 *   (§3.2.3, §3.2.4), and a path starting with `//` (which URL resolution reads as another host), are refused.
 * @see RFC 9449 §4.3 (step 9), RFC 7523 §3 (aud)
 */
export function pinRequestOrigin(issuer: string, trustProxy: boolean) {
  const origin = new URL(issuer);
  const scheme = origin.protocol.slice(0, -1);
  return async function pinOrigin(ctx: Context, next: Next): Promise<void> {
    const hosts = ctx.req.rawHeaders.filter(
      (_, i) => i % 2 === 0 && /^host$/i.test(ctx.req.rawHeaders[i] ?? ''),
    );
    if (hosts.length > 1 || (hosts.length === 0 && ctx.req.httpVersion === '1.1')) {
      refuseTarget(ctx, 'an HTTP/1.1 request carries exactly one Host header (RFC 9112 §3.2)');
      return;
    }
    const target = originForm(ctx.originalUrl, origin.origin);
    if (target === undefined) {
      refuseTarget(
        ctx,
        `the request target must be a path on this server (origin form), or an absolute URL under ${origin.origin}`,
      );
      return;
    }
    if (target !== ctx.originalUrl) {
      ctx.url = target;
      ctx.originalUrl = target;
      ctx.request.originalUrl = target;
    }
    ctx.req.headers.host = origin.host;
    if (trustProxy) {
      ctx.req.headers['x-forwarded-host'] = origin.host;
      ctx.req.headers['x-forwarded-proto'] = scheme;
    }
    await next();
  };
}

/** The request target in origin form, or undefined when it names another origin or is not a path at all. */
function originForm(target: string, origin: string): string | undefined {
  if (target.startsWith('/')) return target.startsWith('//') ? undefined : target;
  if (!/^https?:\/\//i.test(target)) return undefined;
  const url = URL.parse(target);
  if (!url || url.origin !== origin || url.username || url.password) return undefined;
  return `${url.pathname}${url.search}`;
}

function refuseTarget(ctx: Context, description: string): void {
  ctx.status = 400;
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Connection', 'close');
  ctx.body = { error: 'invalid_request', error_description: description };
}

/** Members of the provider's metadata that are true of Mayfly; everything else is dropped. */
const ADVERTISED = [
  'issuer',
  'token_endpoint',
  'jwks_uri',
  'introspection_endpoint',
  'revocation_endpoint',
  'token_endpoint_auth_methods_supported',
  'token_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint_auth_methods_supported',
  'introspection_endpoint_auth_signing_alg_values_supported',
  'revocation_endpoint_auth_methods_supported',
  'revocation_endpoint_auth_signing_alg_values_supported',
  'dpop_signing_alg_values_supported',
] as const;

/**
 * RFC 8414 metadata at both well-known paths. The provider renders OpenID Provider metadata; Mayfly keeps what
 * it really supports and states its grant and response types.
 * @see RFC 8414 §2, §3
 */
export function serveServerMetadata(options: { registrationEndpoint?: string | undefined } = {}) {
  return async function serverMetadata(ctx: Context, next: Next): Promise<void> {
    if (!METADATA_PATHS.has(ctx.path) || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) {
      await next();
      return;
    }
    ctx.path = PROVIDER_METADATA_PATH;
    await next();
    const body: unknown = ctx.body;
    if (ctx.status !== 200 || typeof body !== 'object' || body === null) return;
    const full = body as Record<string, unknown>;
    const metadata: Record<string, unknown> = {};
    for (const member of ADVERTISED) if (full[member] !== undefined) metadata[member] = full[member];
    metadata.grant_types_supported = ['client_credentials'];
    // REQUIRED by RFC 8414 §2; no response type is supported since no grant uses the authorization endpoint.
    metadata.response_types_supported = [];
    // Only when dynamic registration is enabled (MAYFLY_REGISTRATION). @see RFC 8414 §2
    if (options.registrationEndpoint) metadata.registration_endpoint = options.registrationEndpoint;
    ctx.body = metadata;
    ctx.set('Cache-Control', 'public, max-age=300');
  };
}

/**
 * Serves the public signing keys from memory with an ETag, so resource servers revalidate cheaply. The max-age
 * is below the key propagation time (checked at start-up), so a cache that honours it holds every key before
 * the key signs.
 */
export function serveJwks(current: () => PublishedKeys, maxAgeSeconds: number) {
  return async function jwks(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== ROUTES.jwks) {
      await next();
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      ctx.body = {
        error: 'invalid_request',
        error_description: `${ctx.method} is not allowed at ${ROUTES.jwks}`,
      };
      return;
    }
    const keys = current();
    ctx.set('Cache-Control', `public, max-age=${maxAgeSeconds}`);
    ctx.set('ETag', keys.etag);
    ctx.type = 'application/jwk-set+json';
    if (matchesEtag(ctx.get('If-None-Match'), keys.etag)) {
      ctx.status = 304;
      return;
    }
    ctx.body = keys.body;
  };
}

/** Weak comparison over the list, as RFC 9110 §13.1.2 prescribes for If-None-Match. */
function matchesEtag(header: string, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag);
}

/**
 * RFC 7662 §2.2 lists `sub`; for client_credentials tokens the subject is the client itself, as in the JWT.
 */
export async function completeIntrospectionResponse(ctx: Context, next: Next): Promise<void> {
  await next();
  if (ctx.path !== ROUTES.introspection || ctx.status !== 200) return;
  const body = ctx.body as Record<string, unknown> | undefined;
  if (body?.active === true && body.sub === undefined) body.sub = body.client_id;
}

/** Set by the provider's server_error listener when the cause was the database being unreachable. */
export function markDatabaseUnavailable(ctx: Context): void {
  (ctx.state as { databaseUnavailable?: boolean }).databaseUnavailable = true;
}

export const TEMPORARILY_UNAVAILABLE = {
  error: 'temporarily_unavailable',
  error_description: 'the authorization server cannot reach its database; retry shortly',
} as const;

/**
 * The provider answers any failure it did not expect with 500 server_error; when the database was unreachable
 * the truth is 503 temporarily_unavailable, which a client may retry. @see RFC 6749 §5.2, §4.1.2.1
 */
export async function answerDatabaseOutages(ctx: Context, next: Next): Promise<void> {
  await next();
  if ((ctx.state as { databaseUnavailable?: boolean }).databaseUnavailable && ctx.status === 500) {
    ctx.status = 503;
    ctx.set('Retry-After', '1');
    ctx.body = { ...TEMPORARILY_UNAVAILABLE };
  }
}

/**
 * While no usable key can sign (the scheduled one does not open with this instance's KEK and the previous one is
 * revoked), token requests are refused rather than signed with a revoked key.
 */
export function haltSigningWhen(problem: () => string | undefined) {
  return async function haltSigning(ctx: Context, next: Next): Promise<void> {
    if (ctx.path === ROUTES.token && problem() !== undefined) {
      ctx.status = 503;
      ctx.set('Retry-After', '5');
      ctx.body = {
        error: 'temporarily_unavailable',
        error_description: 'this instance has no usable signing key; retry shortly',
      };
      return;
    }
    await next();
  };
}
