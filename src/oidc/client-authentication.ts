import { createHash } from 'node:crypto';

import type { Context } from 'koa';

/**
 * The moment a protocol request's client authentication positively succeeds, and what waits for it. Only from
 * then on is a request the client's own: it spends the client's rate limit, counts in its denial statistics and
 * carries its name in metrics. A request that merely names a client (its id, the Basic user, an assertion's
 * `sub`) and then fails, whatever the error, never does.
 *
 * The provider reports success to nobody, so Mayfly notes it where the provider asks Mayfly's own code: a client
 * secret that matches a stored hash (the provider awaits that comparison), or a client assertion whose signature
 * and claims have been checked and whose `jti` has just been claimed for the first time (the provider's last step
 * of private_key_jwt). @see RFC 6749 §2.3, RFC 7523 §3
 */
interface AuthenticationState {
  clientId?: string;
  /** Told once, at the moment; may refuse the request (a rate limit). */
  listener?: (clientId: string) => Promise<AuthenticationVeto | undefined>;
  /** A verified assertion whose `jti` is about to be claimed, by the replay id the provider will use. */
  assertion?: { replayId: string; clientId: string };
}

/** Why a request whose client authenticated is refused all the same, as an OAuth error. */
export interface AuthenticationVeto {
  status: number;
  error: string;
  description: string;
  /** The reason for the audit line, when it differs from the description. */
  detail?: string;
  retryAfterSeconds?: number;
}

const states = new WeakMap<Context, AuthenticationState>();

function stateOf(ctx: Context): AuthenticationState {
  let state = states.get(ctx);
  if (!state) {
    state = {};
    states.set(ctx, state);
  }
  return state;
}

/** Runs `listener` when (if ever) the request's client authenticates. */
export function whenClientAuthenticates(
  ctx: Context,
  listener: (clientId: string) => Promise<AuthenticationVeto | undefined>,
): void {
  stateOf(ctx).listener = listener;
}

/** The client this request authenticated as; undefined until (and unless) it did. */
export function authenticatedClient(ctx: Context): string | undefined {
  return states.get(ctx)?.clientId;
}

/** Notes that the request authenticated as `clientId`; the veto of whoever waited for it, if any. */
export async function clientAuthenticated(
  ctx: Context,
  clientId: string,
): Promise<AuthenticationVeto | undefined> {
  const state = stateOf(ctx);
  if (state.clientId !== undefined) return undefined;
  state.clientId = clientId;
  return state.listener?.(clientId);
}

/**
 * The id under which the provider records a client assertion's `jti` (its ReplayDetection key: the issuer, that
 * is the client, then the `jti`, hashed).
 */
function assertionReplayId(clientId: string, jti: string): string {
  return createHash('sha256').update(`${clientId}${jti}`, 'utf8').digest('base64url');
}

/** A client assertion passed every check but the single use of its `jti`, which the provider claims next. */
export function assertionVerified(ctx: Context, clientId: string, jti: string): void {
  stateOf(ctx).assertion = { replayId: assertionReplayId(clientId, jti), clientId };
}

/** A one-time value was claimed: if it is the verified assertion's `jti`, the client has now authenticated. */
export async function oneTimeValueClaimed(
  ctx: Context,
  replayId: string,
): Promise<AuthenticationVeto | undefined> {
  const assertion = states.get(ctx)?.assertion;
  if (assertion?.replayId !== replayId) return undefined;
  return clientAuthenticated(ctx, assertion.clientId);
}
