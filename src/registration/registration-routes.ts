import type { Context, Next } from 'koa';

import { addressKey, answerRateLimited, describeRefusal } from '../abuse/protocol-guard.ts';
import type { RateLimits, Refusal } from '../abuse/rate-limits.ts';
import { containsNul } from '../errors.ts';
import { readRequestBody } from '../http/request-body.ts';
import type { Logger } from '../observability/logger.ts';
import { invalidMetadata, invalidToken, RegistrationError } from './registration-error.ts';
import {
  deleteRegistration,
  readRegistration,
  RefusedToken,
  registerClient,
  updateRegistration,
  type RegistrationDeps,
} from './registration.service.ts';
import { hashRegistrationToken } from './registration-token.ts';

export const REGISTRATION_PATH = '/register';

/** Client metadata is a few hundred bytes; a JWKS of ten RSA keys stays far below this. */
const MAX_BODY_BYTES = 64 * 1024;

export interface RegistrationRouteOptions {
  deps: RegistrationDeps;
  limits: RateLimits;
  /** Audit lines: who registered or managed what, and why a token was refused; never a token value. */
  log: Logger;
}

/**
 * The registration endpoint (RFC 7591 §3) and the client configuration endpoint (RFC 7592 §2), served by Mayfly
 * itself rather than by the provider: registered clients live in Mayfly's own tables, like every other.
 */
export function serveRegistration(options: RegistrationRouteOptions) {
  const { deps, limits, log } = options;
  return async function registration(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== REGISTRATION_PATH && !ctx.path.startsWith(`${REGISTRATION_PATH}/`)) {
      await next();
      return;
    }
    // Credentials travel in these answers: never cached (RFC 7591 §3.2.1, RFC 6749 §5.1).
    ctx.set('Cache-Control', 'no-store');
    const refusal = await limitRequest(ctx);
    if (refusal) {
      answerRateLimited(ctx, refusal);
      logFailure(ctx, 'temporarily_unavailable', describeRefusal(refusal));
      return;
    }
    try {
      await route(ctx);
    } catch (error) {
      if (error instanceof RefusedToken) {
        log.warn(
          {
            event: 'registration',
            outcome: 'failure',
            ip: ctx.ip,
            error: 'invalid_token',
            reason: error.reason,
            registration_token_id: error.tokenId,
          },
          'registration failure',
        );
        answer(ctx, invalidToken('the initial access token is unknown, expired or used up'));
        return;
      }
      if (!(error instanceof RegistrationError)) throw error;
      logFailure(ctx, error.code, error.message);
      answer(ctx, error);
    }
  };

  function logFailure(ctx: Context, error: string, reason: string): void {
    log.warn(
      {
        event: 'registration',
        outcome: 'failure',
        ip: ctx.ip,
        method: ctx.method,
        path: ctx.path,
        error,
        reason,
      },
      'registration failure',
    );
  }

  /**
   * Registration costs a transaction and answers with credentials: requests are limited per address before
   * anything is read, and registrations per initial access token (keyed by its hash; a made-up token gets a
   * counter of its own and names nobody else's).
   */
  async function limitRequest(ctx: Context): Promise<Refusal | undefined> {
    try {
      const { registrationPerAddress, registrationPerToken } = limits.settings;
      const byAddress = await limits.consume(
        'registration-address',
        addressKey(ctx.ip),
        registrationPerAddress,
        {
          exact: true,
        },
      );
      if (byAddress || ctx.path !== REGISTRATION_PATH || ctx.method !== 'POST') return byAddress;
      const token = /^Bearer +([\x21-\x7E]+) *$/i.exec(ctx.get('Authorization'))?.[1];
      if (token === undefined) return undefined;
      return await limits.consume('registration-token', hashRegistrationToken(token), registrationPerToken, {
        exact: true,
      });
    } catch (error) {
      // The limiter fell back to memory and that failed too: serve rather than refuse everyone.
      log.warn({ err: error }, 'registration rate limit check failed; request allowed');
      return undefined;
    }
  }

  async function route(ctx: Context): Promise<void> {
    if (ctx.path === REGISTRATION_PATH) {
      if (ctx.method !== 'POST') {
        refuseMethod(ctx, 'POST');
        return;
      }
      const token = bearerToken(ctx, 'an initial access token is required: Authorization: Bearer <token>');
      const body = await readJson(ctx);
      const { metadata, registrationTokenId } = await registerClient(deps, token, body);
      log.info(
        {
          event: 'registration',
          outcome: 'success',
          ip: ctx.ip,
          action: 'register',
          client_id: metadata.client_id,
          registration_token_id: registrationTokenId,
        },
        'registration success',
      );
      ctx.status = 201;
      ctx.body = metadata;
      return;
    }
    const clientId = decodeClientId(ctx.path.slice(REGISTRATION_PATH.length + 1));
    if (clientId === undefined) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', error_description: `no endpoint at ${ctx.path}` };
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'PUT' && ctx.method !== 'DELETE') {
      refuseMethod(ctx, 'GET, PUT, DELETE');
      return;
    }
    const token = bearerToken(ctx, 'a registration access token is required: Authorization: Bearer <token>');
    if (ctx.method === 'GET') {
      ctx.body = await readRegistration(deps, clientId, token);
    } else if (ctx.method === 'PUT') {
      ctx.body = await updateRegistration(deps, clientId, token, await readJson(ctx));
    } else {
      await deleteRegistration(deps, clientId, token);
      ctx.status = 204;
    }
    log.info(
      {
        event: 'registration',
        outcome: 'success',
        ip: ctx.ip,
        action: ctx.method.toLowerCase(),
        client_id: clientId,
      },
      'registration success',
    );
  }
}

function answer(ctx: Context, error: RegistrationError): void {
  ctx.status = error.status;
  for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
  ctx.body = error.toJSON();
}

function refuseMethod(ctx: Context, allow: string): void {
  ctx.status = 405;
  ctx.set('Allow', allow);
  ctx.body = { error: 'invalid_request', error_description: `${ctx.method} is not allowed at ${ctx.path}` };
}

/** A client id is a single path segment; a malformed or empty one names no registration. */
function decodeClientId(segment: string): string | undefined {
  if (!segment || segment.includes('/')) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** @see RFC 6750 §2.1 */
function bearerToken(ctx: Context, missing: string): string {
  const match = /^Bearer +([\x21-\x7E]+) *$/i.exec(ctx.get('Authorization'));
  if (!match?.[1]) {
    throw new RegistrationError('invalid_token', missing, 401, { 'WWW-Authenticate': 'Bearer' });
  }
  return match[1];
}

/** RFC 7591 §3.1: the metadata is a JSON object. */
async function readJson(ctx: Context): Promise<unknown> {
  if (!ctx.is('application/json')) {
    throw new RegistrationError(
      'invalid_request',
      'send the client metadata as Content-Type: application/json (RFC 7591 §3.1)',
      415,
    );
  }
  const bytes = await readRequestBody(ctx.req, MAX_BODY_BYTES);
  if (bytes === 'too-large') {
    throw new RegistrationError('invalid_request', `the body is larger than ${MAX_BODY_BYTES} bytes`, 413);
  }
  if (bytes === 'aborted')
    throw new RegistrationError('invalid_request', 'the request body was not received');
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalidMetadata('the body is not valid JSON');
  }
  if (containsNul(body)) {
    throw invalidMetadata(
      'the metadata must not contain NUL characters, unpaired surrogates or deep nesting',
    );
  }
  return body;
}
