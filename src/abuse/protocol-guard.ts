import { setTimeout as sleep } from 'node:timers/promises';

import type { Context, Next } from 'koa';

import type { ClientAccessCache } from '../clients/client-access-cache.ts';
import { basicUser } from '../http/basic-auth.ts';
import { readHandedOverBody, replaceRequestBody } from '../http/request-body.ts';
import type { Audit } from '../observability/audit.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { authenticatedClient, whenClientAuthenticates } from '../oidc/client-authentication.ts';
import { recordClaimedClient, recordProtocolError } from '../oidc/protocol-audit.ts';
import { ROUTES } from '../oidc/protocol-routes.ts';
import type { LimitName, RateLimits, Refusal } from './rate-limits.ts';

/** The provider reads at most this much of a form body; a larger one is refused by it, not read here. */
const BODY_LIMIT = 56 * 1024;

type Route = 'token' | 'introspection' | 'revocation';

export interface ObservedRequest {
  route: Route;
  authenticated: string | undefined;
  claimed: string | undefined;
  address: string;
}
const GUARDED = new Map<string, Route>([
  [ROUTES.token, 'token'],
  [ROUTES.introspection, 'introspection'],
  [ROUTES.revocation, 'revocation'],
]);

export interface GuardDependencies {
  limits: RateLimits;
  clients: ClientAccessCache;
  audit: Audit;
  metrics: Metrics;
  log: Logger;
  /**
   * Told about every guarded request once answered (anomaly detection): the client it authenticated as, if it
   * did, and the client it named.
   */
  observe?: (ctx: Context, request: ObservedRequest) => void;
}

/**
 * Rate limits and authentication-failure backoff for the token, introspection and revocation endpoints, decided
 * before the provider does any work: no signature is verified, no secret compared and no token signed for a
 * refused request.
 *
 * - Token and revocation requests count per client and per source address; introspection per resource server
 *   and per address. A client may carry its own limits. The address limit is spent before anything else; the
 *   client's own only once the request has authenticated as that client (oidc/client-authentication.ts), so
 *   nobody spends another client's budget without its credentials.
 * - Failed client authentication is counted per (claimed client id, address), whether or not such a client
 *   exists (so the answers reveal nothing about which ids are real): after `slowAfter` failures each failure is
 *   answered late, after `blockAfter` that client id is refused from that address for a while. The client
 *   itself, calling from its own addresses, is not affected.
 * - Headers of client authentication methods Mayfly does not offer are refused before anything is counted.
 *
 * The client a request names is read without trusting it (Basic user, client_id, or the `sub` of a client
 * assertion): it only chooses which failure counter to use.
 */
export function guardProtocolRequests(deps: GuardDependencies) {
  const { limits, clients, audit, metrics, log } = deps;
  /** Pairs with recent failures: the request whose turn it is, per pair. */
  const inTurn = new Map<string, Promise<void>>();
  return async function guardProtocolRequest(ctx: Context, next: Next): Promise<void> {
    const route = ctx.method === 'POST' ? GUARDED.get(ctx.path) : undefined;
    if (!route) {
      await next();
      return;
    }
    const unsupported = UNSUPPORTED_AUTHENTICATION.find((header) => ctx.get(header) !== '');
    if (unsupported !== undefined) {
      answerBadRequest(
        ctx,
        'invalid_request',
        `${unsupported}: client attestation is not a client authentication method of this server; ` +
          'use client_secret_basic, client_secret_post or private_key_jwt',
      );
      return;
    }
    const address = ctx.ip;
    const dpop = ctx.req.headers.dpop;
    if (route === 'token' && typeof dpop === 'string' && dpop.trim() === '') {
      answerBadRequest(
        ctx,
        'invalid_dpop_proof',
        'the DPoP header is empty: send one proof JWT, or no DPoP header',
      );
      return;
    }
    const claimed = await claimedClient(ctx, route);
    if ('refused' in claimed) {
      answerBadRequest(ctx, 'invalid_request', claimed.refused);
      return;
    }
    if ('unread' in claimed) {
      ctx.status = claimed.unread === 'too-large' ? 413 : 400;
      ctx.set('Connection', 'close');
      ctx.body = {
        error: 'invalid_request',
        error_description:
          claimed.unread === 'too-large'
            ? 'request body exceeds 56 KiB'
            : 'request body was not received in full',
      };
      recordProtocolError(ctx, ctx.body as { error: string; error_description: string });
      return;
    }
    const clientId = claimed.id;
    if (clientId === undefined) {
      await guarded(ctx, next, route, undefined, address);
      return;
    }
    recordClaimedClient(ctx, clientId);
    // A pair that failed recently is taken one request at a time, so parallel guesses meet the block as soon as
    // it is recorded instead of all passing the check together.
    if (!limits.hasRecentFailures(clientId, addressKey(address))) {
      await guarded(ctx, next, route, clientId, address);
      return;
    }
    const pair = `${clientId}\n${addressKey(address)}`;
    const previous = inTurn.get(pair) ?? Promise.resolve();
    let release: () => void = () => undefined;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const turn = previous.then(() => mine);
    inTurn.set(pair, turn);
    try {
      await previous;
      await guarded(ctx, next, route, clientId, address);
    } finally {
      release();
      if (inTurn.get(pair) === turn) inTurn.delete(pair);
    }
  };

  async function guarded(
    ctx: Context,
    next: Next,
    route: Route,
    clientId: string | undefined,
    address: string,
  ): Promise<void> {
    const counted = addressKey(address);
    const blocked = clientId === undefined ? undefined : await limits.blockedAfterFailures(clientId, counted);
    const refusal = blocked ?? (await consumeAddressLimit(route, address));
    if (refusal) {
      metrics.rateLimited(refusal.limit);
      answerRateLimited(ctx, refusal);
      deps.observe?.(ctx, { route, authenticated: undefined, claimed: clientId, address });
      return;
    }
    whenClientAuthenticates(ctx, async (authenticated) => {
      const overLimit = await consumeClientLimit(clientLimitOf(route, authenticated));
      if (!overLimit) return undefined;
      metrics.rateLimited(overLimit.limit);
      const reason = describeRefusal(overLimit);
      return {
        status: 429,
        error: 'temporarily_unavailable',
        description: `${reason}; retry after ${overLimit.retryAfterSeconds} s`,
        detail: reason,
        retryAfterSeconds: overLimit.retryAfterSeconds,
      };
    });

    await next();

    if (clientId !== undefined && failedAuthentication(ctx)) await backOff(clientId, address);
    deps.observe?.(ctx, { route, authenticated: authenticatedClient(ctx), claimed: clientId, address });
  }

  async function consumeAddressLimit(route: Route, address: string): Promise<Refusal | undefined> {
    const [limit, allowed]: [LimitName, number] =
      route === 'introspection'
        ? ['introspection-address', limits.settings.introspectionPerAddress]
        : ['token-address', limits.settings.tokenPerAddress];
    return consumeOrAllow(() => limits.consume(limit, addressKey(address), allowed));
  }

  /** The client's own limit when this instance knows it; until then the default, counted exactly. */
  function clientLimitOf(route: Route, clientId: string): ClientLimit {
    const own = clients.peek(clientId)?.client;
    const introspection = route === 'introspection';
    const ownLimit = introspection ? own?.introspection_rate_limit : own?.token_rate_limit;
    return {
      limit: introspection ? 'introspection-client' : 'token-client',
      subject: clientId,
      allowed:
        ownLimit ?? (introspection ? limits.settings.introspectionPerClient : limits.settings.tokenPerClient),
      // Leasing a batch under the default could overdraw a client whose own, lower limit is not read yet.
      exact: own === undefined,
    };
  }

  function consumeClientLimit(limit: ClientLimit): Promise<Refusal | undefined> {
    return consumeOrAllow(() =>
      limits.consume(limit.limit, limit.subject, limit.allowed, { exact: limit.exact }),
    );
  }

  async function consumeOrAllow(consume: () => Promise<Refusal | undefined>): Promise<Refusal | undefined> {
    try {
      return await consume();
    } catch (error) {
      // The limiter fell back to memory and that failed too: serve rather than refuse everyone.
      log.warn({ err: error }, 'rate limit check failed; request allowed');
      return undefined;
    }
  }

  async function backOff(clientId: string, address: string): Promise<void> {
    try {
      const outcome = await limits.recordFailure(clientId, addressKey(address));
      if (outcome.crossed) metrics.authFailureBlock();
      if (outcome.blocked) {
        audit.authFailureBackoff({
          step: 'blocked',
          client_id: clientId,
          ip: address,
          failures: outcome.failures,
          blocked_for_s: outcome.blockedForSeconds,
        });
      } else if (outcome.delayMs > 0) {
        audit.authFailureBackoff({
          step: 'slowed',
          client_id: clientId,
          ip: address,
          failures: outcome.failures,
          delay_ms: outcome.delayMs,
        });
      }
      if (outcome.delayMs > 0) await sleep(outcome.delayMs);
    } catch (error) {
      log.warn({ err: error }, 'could not record a failed client authentication');
    }
  }
}

function answerBadRequest(ctx: Context, error: string, description: string): void {
  ctx.status = 400;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error, error_description: description };
  recordProtocolError(ctx, { error, error_detail: description });
}

const DESCRIPTIONS: Record<Refusal['limit'], string> = {
  'token-client': 'too many token requests by this client',
  'token-address': 'too many requests from this address',
  'introspection-client': 'too many introspection requests by this client',
  'introspection-address': 'too many introspection requests from this address',
  'registration-address': 'too many registration requests from this address',
  'registration-token': 'too many registrations with this initial access token',
  'auth-failures': 'too many failed authentications of this client from this address',
  'console-sign-in-user': 'too many console sign-in attempts for this user',
  'console-sign-in-address': 'too many console sign-in attempts from this address',
};

/**
 * 429 with Retry-After and an OAuth error body. OAuth registers no code for rate limiting; temporarily_unavailable
 * is the registered code that tells a client to come back later. @see RFC 6585 §4, RFC 6749 §4.1.2.1
 */
export function answerRateLimited(ctx: Context, refusal: Refusal): void {
  const reason = describeRefusal(refusal);
  ctx.status = 429;
  ctx.set('Retry-After', String(refusal.retryAfterSeconds));
  ctx.set('Cache-Control', 'no-store');
  ctx.body = {
    error: 'temporarily_unavailable',
    error_description: `${reason}; retry after ${refusal.retryAfterSeconds} s`,
  };
  recordProtocolError(ctx, { error: 'temporarily_unavailable', error_detail: reason });
}

export function describeRefusal(refusal: Refusal): string {
  return refusal.limit === 'auth-failures'
    ? `${DESCRIPTIONS[refusal.limit]} (${refusal.allowed} failures)`
    : `${DESCRIPTIONS[refusal.limit]} (limit ${refusal.allowed} per minute)`;
}

/**
 * Request headers of client authentication by attestation (draft-ietf-oauth-attestation-based-client-auth),
 * which Mayfly does not offer. The provider would look the named client up before refusing them.
 */
const UNSUPPORTED_AUTHENTICATION = ['oauth-client-attestation', 'oauth-client-attestation-pop'];

interface ClientLimit {
  limit: LimitName;
  subject: string;
  allowed: number;
  exact: boolean;
}

/**
 * Addresses as counted: IPv4 (and IPv4-mapped IPv6) whole, other IPv6 addresses by their /64, which one
 * subscriber usually holds entirely.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

function failedAuthentication(ctx: Context): boolean {
  return ctx.status === 401 && (ctx.body as { error?: unknown } | undefined)?.error === 'invalid_client';
}

/** Parameters each endpoint reads; others are ignored by the provider (RFC 6749 §3.2). */
const CLIENT_AUTH_PARAMETERS = ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type'];
const KNOWN_PARAMETERS: Record<Route, ReadonlySet<string>> = {
  token: new Set(['grant_type', 'resource', 'scope', ...CLIENT_AUTH_PARAMETERS]),
  introspection: new Set(['token', 'token_type_hint', ...CLIENT_AUTH_PARAMETERS]),
  revocation: new Set(['token', 'token_type_hint', ...CLIENT_AUTH_PARAMETERS]),
};
/** The provider's form parser reads this many parameters and silently drops the rest. */
const PARSED_PARAMETERS = 1000;

type ClaimedClient = { id: string | undefined } | { unread: 'too-large' | 'aborted' } | { refused: string };

/**
 * Reads the form (the provider then parses the same bytes) and the client it names, unverified: the Basic user
 * (RFC 6749 §2.3.1), the client_id parameter, or the `sub` of a client assertion (RFC 7523 §3).
 *
 * A form with more parameters than the provider's parser reads keeps only the ones the endpoint knows, so that
 * no parameter it reads (a repeated grant_type, say) is dropped unseen, and unknown ones are ignored as RFC 6749
 * §3.2 requires.
 */
async function claimedClient(ctx: Context, route: Route): Promise<ClaimedClient> {
  // A body the provider will refuse names no client: it is counted per address only.
  if (!ctx.is('application/x-www-form-urlencoded')) return { id: undefined };
  const basic = basicUser(ctx.get('authorization'));
  // The client is in the header, and a body this short cannot hold more parameters than the provider parses:
  // nothing here needs the body, which the provider reads itself.
  const length = Number(ctx.get('content-length') || Number.NaN);
  if (basic !== undefined && length < PARSED_PARAMETERS) return { id: basic };
  const body = await readHandedOverBody(ctx, BODY_LIMIT);
  if (body === 'too-large' || body === 'aborted') return { unread: body };
  let params: URLSearchParams | undefined;
  if (countParameters(body) > PARSED_PARAMETERS) {
    params = new URLSearchParams(body.toString('utf8'));
    const known = new URLSearchParams();
    for (const [name, value] of params) if (KNOWN_PARAMETERS[route].has(name)) known.append(name, value);
    if ([...known.keys()].length > PARSED_PARAMETERS) {
      return { refused: `more than ${PARSED_PARAMETERS} parameters` };
    }
    params = known;
    replaceRequestBody(ctx, Buffer.from(known.toString(), 'utf8'));
  }
  if (basic !== undefined) return { id: basic };
  params ??= new URLSearchParams(body.toString('utf8'));
  const clientId = params.get('client_id');
  if (clientId) return { id: clientId };
  const assertion = params.get('client_assertion');
  return { id: assertion ? assertionSubject(assertion) : undefined };
}

function countParameters(body: Buffer): number {
  let count = body.length > 0 ? 1 : 0;
  for (let i = body.indexOf(0x26); i !== -1; i = body.indexOf(0x26, i + 1)) count++;
  return count;
}

function assertionSubject(assertion: string): string | undefined {
  const payload = assertion.split('.')[1];
  if (!payload || payload.length > BODY_LIMIT) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' && sub.length > 0 ? sub : undefined;
  } catch {
    return undefined;
  }
}
