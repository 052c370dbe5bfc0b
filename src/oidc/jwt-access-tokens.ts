import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { Context, Next } from 'koa';

import {
  runWithPresentedJwt,
  type JwtAccessTokenClaims,
  type PresentedJwt,
} from '../adapter/presented-jwt.ts';
import type { Clock } from '../clock.ts';
import { readHandedOverBody, replaceRequestBody } from '../http/request-body.ts';
import type { VerificationKeys } from '../keys/key-ring.ts';
import { ROUTES } from './protocol-routes.ts';

const BODY_LIMIT = 56 * 1024;
export const PRESENTED_JWT_REFERENCE = 'mayfly:presented-jwt';

export interface JwtPresentationOptions {
  issuer: string;
  clock: Clock;
  /** Read per request: the key set changes when keys rotate. */
  verificationKeys(): VerificationKeys;
}

/**
 * Lets the provider's introspection and revocation endpoints handle Mayfly's JWT access tokens, which the
 * provider alone refuses (`unsupported_token_type`) because it never stored them: the JWT is verified here and
 * replaced by a reference that the adapter resolves to the verified claims (see adapter/presented-jwt.ts).
 * @see RFC 7662 §2.1, RFC 7009 §2.1, RFC 9068 §4
 */
export function presentJwtAccessTokens(options: JwtPresentationOptions) {
  return async function presentJwtAccessToken(ctx: Context, next: Next): Promise<void> {
    const handles = ctx.path === ROUTES.introspection || ctx.path === ROUTES.revocation;
    if (!handles || ctx.method !== 'POST' || !ctx.is('application/x-www-form-urlencoded')) {
      await next();
      return;
    }
    const body = await readHandedOverBody(ctx, BODY_LIMIT);
    if (body === 'too-large' || body === 'aborted') {
      ctx.status = body === 'too-large' ? 413 : 400;
      ctx.set('Connection', 'close');
      ctx.body = {
        error: 'invalid_request',
        error_description:
          body === 'too-large' ? 'request body exceeds 56 KiB' : 'request body was not received in full',
      };
      return;
    }
    // Form bodies are UTF-8 in practice; a body declaring another charset goes to the provider untouched.
    const utf8 = (ctx.request.charset || 'utf-8').toLowerCase().replace('utf8', 'utf-8') === 'utf-8';
    const params = new URLSearchParams(body.toString('utf8'));
    const tokens = params.getAll('token');
    const token = tokens[0];
    if (!utf8 || tokens.length !== 1 || token === undefined || !looksLikeJwt(token)) {
      await next();
      return;
    }
    params.set('token', PRESENTED_JWT_REFERENCE);
    replaceRequestBody(ctx, Buffer.from(params.toString(), 'utf8'));
    const presented: PresentedJwt = {
      reference: PRESENTED_JWT_REFERENCE,
      claims: await verifyAccessToken(token, options),
    };
    await runWithPresentedJwt(presented, next);
  };
}

function looksLikeJwt(token: string): boolean {
  // A compact JWS has three parts; an opaque token has none, and is told apart without decoding (and throwing).
  if (token.split('.', 4).length !== 3) return false;
  try {
    return decodeProtectedHeader(token).alg !== undefined;
  } catch {
    return false;
  }
}

/**
 * Verifies a JWT access token of this server: signature by one of its keys, `typ` at+jwt, issuer, lifetime and
 * the claims Mayfly always sets. Throws jose's errors (or a JWTClaimValidationFailed for a missing claim), so a
 * caller can say why a token was refused.
 * @see RFC 9068 §4
 */
export async function verifyJwtAccessToken(
  token: string,
  options: JwtPresentationOptions & { clockToleranceSeconds?: number },
): Promise<JwtAccessTokenClaims> {
  const verify = (keys: VerificationKeys) =>
    jwtVerify(token, keys.getKey, {
      issuer: options.issuer,
      typ: 'at+jwt',
      algorithms: keys.algorithms,
      currentDate: options.clock.now(),
      clockTolerance: options.clockToleranceSeconds ?? 0,
      requiredClaims: ['jti', 'iat', 'exp', 'client_id', 'aud'],
    });
  const keys = options.verificationKeys();
  // A kid this instance has not seen yet may be one another instance has just created: re-read the keys once.
  const { payload } = await verify(keys).catch(async (error: unknown) => {
    if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
    return verify(await keys.refresh());
  });
  const { jti, iat, exp, client_id: clientId, aud, scope, cnf } = payload as Record<string, unknown>;
  if (
    typeof jti !== 'string' ||
    typeof iat !== 'number' ||
    typeof exp !== 'number' ||
    typeof clientId !== 'string' ||
    typeof aud !== 'string'
  ) {
    throw new joseErrors.JWTClaimValidationFailed('a claim has an unexpected type', payload, 'claims');
  }
  const jkt = (cnf as { jkt?: unknown } | undefined)?.jkt;
  return {
    jti,
    iat,
    exp,
    client_id: clientId,
    aud,
    ...(typeof scope === 'string' ? { scope } : {}),
    ...(typeof jkt === 'string' ? { cnf: { jkt } } : {}),
  };
}

async function verifyAccessToken(
  token: string,
  options: JwtPresentationOptions,
): Promise<JwtAccessTokenClaims | undefined> {
  try {
    return await verifyJwtAccessToken(token, options);
  } catch {
    // Expired, foreign, tampered or malformed: to introspection and revocation, simply not an active token.
    return undefined;
  }
}
